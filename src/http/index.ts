export { createHttpServer } from './server.js';
export { handleError, envelope } from './error-handler.js';
