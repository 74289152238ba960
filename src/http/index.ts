export { createHttpServer } from './server.js';
export { handleError, handleClientError, envelope } from './error-handler.js';
export { clientInfo, readBounded } from './request.js';
