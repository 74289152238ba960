export { distributionRoutes } from './distribution/index.js';
export { oauthRoutes } from './oauth/index.js';
export { adminRoutes } from './admin/index.js';
export { createDataEndpoint, dataEndpointKind, dataUrlRedirect } from './data/index.js';
