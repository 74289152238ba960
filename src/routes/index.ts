export { distributionRoutes } from './distribution/index.js';
