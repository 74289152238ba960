export { loadGatewayConfig, parseGatewayConfig, GatewayConfigError, type GatewayConfig, type WafRule, type Condition } from './config.js';
export { startGateway, type RunningGateway } from './gateway.js';
export { HeaderRewriter, type Rewritten } from './rewrite.js';
export { Waf, type WafRequest, type WafVerdict } from './waf.js';

