export { OPTIONS, parseAddress, parseListener, type Config, type OptionSpec } from './schema.js';
export { loadConfig, ConfigError, type LoadSources } from './load.js';
export { renderConfigDocs } from './docs.js';
