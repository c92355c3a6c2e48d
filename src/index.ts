/**
 * Worker entry: composes the app and exports the Durable Object class. Nothing else lives here.
 */
import { createApp } from './app';

export { WorkspaceDO } from './workspace-db/object';
export { AuditLogDO } from './audit/object';

export default createApp();
