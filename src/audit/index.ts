export { EventBus, type RegistryEvent, type RegistryEventType, type ClientInfo, type EventListener } from './events.js';
export { AuditLog } from './audit-log.js';
