/**
 * Worker entry: composes the app, exports the Durable Object classes and the Queue consumer
 * (webhook deliveries, src/webhooks/deliver.ts). Nothing else lives here.
 */
import { createApp } from './app';
import type { Bindings } from './env';
import { handleWebhookBatch } from './webhooks/deliver';

export { WorkspaceDO } from './workspace-db/object';
export { AuditLogDO } from './audit/object';
export { UserDO } from './user-db/object';
export { LoginAttemptsDO } from './login-attempts/object';
export { IdentityDO } from './identity-db/object';

const app = createApp();

export default {
  fetch: app.fetch,
  queue: (batch, env) => handleWebhookBatch(batch, env),
} satisfies ExportedHandler<Bindings>;
