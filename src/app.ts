/**
 * Builds the Hono app: the HTTP plumbing in order, then the feature routers, then the 404/405
 * fallbacks. Exported separately from the Worker entry so tests can compose the same app.
 */
import { Hono } from 'hono';
import type { AppEnv } from './env';
import { cors } from './http/cors';
import { csrfGuard } from './http/csrf';
import { handleError } from './errors';
import { installFallbacks } from './http/fallbacks';
import { noStore } from './http/no-store';
import { requestContext } from './http/request-context';
import { devD1Delay, devD1Queries } from './dev/d1-delay';
import { health } from './health/routes';
import { analytics } from './http/analytics';
import { admin, adminOnly } from './admin/routes';
import { archiveAdmin } from './archive/admin';
import { workspaceExport } from './archive/routes';
import { forkAdmin } from './archive/fork';
import { basicAuth, session } from './auth/routes';
import { setup } from './setup/routes';
import { accountAdmin, accountSelf, passwordReset } from './accounts/routes';
import { or3WorkspaceAdmin } from './accounts/or3-workspace-admin';
import { defaultStorageDeps, type StorageDeps } from './storage/policy';
import { storageRoutes } from './storage/routes';
import { sync } from './sync/routes';
import { workspaces } from './workspaces/routes';
import { webhookRoutes } from './webhooks/routes';
import { serviceApi, serviceBearer, servicePush, serviceTokenRoutes } from './service/routes';
import { syncFailed } from './events/deployment';

/** Paths authenticated by a signed URL rather than cookies (binary bodies by design). */
const isSignedUrlPath = (path: string) => path.startsWith('/api/storage/blob/');

export interface AppOptions {
  /** Storage hooks and the upload provider (docs/storage.md "Hooks"); the built-in ones by default. */
  storage?: Partial<StorageDeps>;
  /** Mounts more routes before the fallbacks (tests exercise the plumbing through a probe route). */
  mountExtra?: (app: Hono<AppEnv>) => void;
}

export function createApp(options: AppOptions = {}) {
  const { mountExtra } = options;
  const storage = { ...defaultStorageDeps(), ...options.storage };
  const app = new Hono<AppEnv>();
  app.onError(handleError);

  app.use('*', requestContext());
  app.use('*', devD1Delay()); // development only: the bench's far-away D1 (src/dev/)
  app.use('*', analytics()); // optional Analytics Engine points (docs/operations.md "Metrics")
  app.use('*', cors());
  // Health is public; blob downloads set their own `Cache-Control: private`.
  app.use(
    '/api/*',
    noStore((path) => path === '/api/health' || isSignedUrlPath(path)),
  );
  app.use('/api/*', csrfGuard(isSignedUrlPath));

  app.route('/api/health', health);
  app.get('/api/dev/d1-queries', devD1Queries()); // development only (404 otherwise): the bench's D1 count
  app.route('/api/basic-auth', basicAuth);
  app.route('/api/basic-auth', passwordReset);
  app.route('/api/auth', session);
  app.route('/api/auth', accountSelf);
  app.route('/api/setup', setup);
  app.route('/api/workspaces', workspaces);
  app.route('/api/workspaces', workspaceExport);
  app.route('/api/workspaces/:id/webhooks', webhookRoutes('workspace'));
  app.route('/api/workspaces/:id/service-tokens', serviceTokenRoutes);
  app.route('/api/admin/webhooks', webhookRoutes('deployment'));
  app.route('/api/admin', or3WorkspaceAdmin); // before `admin`: workspace owners may use these too
  app.route('/api/admin', admin);
  // Other rooms' admin routes, behind the same check: the admin room imports none of them.
  app.route('/api/admin', adminOnly(accountAdmin));
  app.route('/api/admin', adminOnly(archiveAdmin));
  app.route('/api/admin', adminOnly(forkAdmin));
  // A sync request the server failed tells the deployment admins' hooks (docs/webhooks.md).
  app.use('/api/sync/*', async (c, next) => {
    await next();
    if (c.res.status < 500) return;
    const body = await c.res
      .clone()
      .json<{ error?: unknown }>()
      .catch(() => null);
    syncFailed(c, c.res.status, typeof body?.error === 'string' ? body.error : 'internal_error');
  });
  // A service token's push (docs/service-api.md) takes the service path into the same engine: the
  // sync room stays unaware of service tokens.
  app.use('/api/sync/push', async (c, next) => {
    if (c.req.method === 'POST' && serviceBearer(c)) return servicePush(c);
    await next();
  });
  app.route('/api/sync', sync);
  app.route('/api/service', serviceApi);
  app.route('/api/storage', storageRoutes(storage));
  mountExtra?.(app);

  installFallbacks(app);
  return app;
}
