export { closeAsIdle, connectionsCheckingIntervalMs, createHttpServer } from './server.js';
export { handleError, handleClientError, answerClientError, envelope } from './error-handler.js';
export { clientInfo, clientAddressOf, readBounded, setClientAddress, verifiedClientCertificate } from './request.js';
