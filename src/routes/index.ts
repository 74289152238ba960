export { distributionRoutes } from './distribution/index.js';
export { oauthRoutes } from './oauth/index.js';
