/**
 * `admin.sync.error` from the socket path (docs/webhooks.md "Deployment events"): a sync message
 * on a workspace's socket that the server fails raises the deployment event as an HTTP sync
 * request does, with the same payload and the same throttle (once per code per isolate per
 * minute). Its own file: the throttle is per isolate, and the HTTP test (routes.test.ts) raises
 * the same code.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bindings } from '../../src/env';
import type { WorkspaceDO } from '../../src/workspace-db/object';
import { api } from '../helpers';
import { call, signedInUser, type SignedIn } from '../auth/helpers';
import { message, op, openSocket, syncUser } from '../sync/helpers';

let admin: SignedIn;
beforeAll(async () => {
  admin = await signedInUser({ isAdmin: true });
});

async function deploymentDeliveries(hookId: string, n: number): Promise<any[]> {
  for (let i = 0; ; i++) {
    const { deliveries } = await (await call('GET', `/api/admin/webhooks/${hookId}/deliveries`, admin.headers)).json<any>();
    if (deliveries.length >= n || i >= 50) return deliveries;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const eventBody = (eventId: string) =>
  runInDurableObject(
    env.WORKSPACE.getByName('__deployment__'),
    (_, state) => state.storage.sql.exec<{ body: string }>('SELECT body FROM webhook_events WHERE id = ?', eventId).toArray()[0]?.body,
  );

describe('admin.sync.error over the socket', () => {
  it('a socket message the server fails raises it once per code per minute, with the message named', async () => {
    const intent = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    const { webhook } = await (
      await call('POST', '/api/admin/webhooks', intent, { url: 'https://ops.example.com/sync', events: ['admin.sync.error'] })
    ).json<any>();
    const u = await syncUser();
    const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
    await socket.next((m) => m.type === 'hello');
    // A real failure: the object forgets what it knew of the user (as after a sign-out) and
    // cannot reach the user's object to learn it again, so the next message is answered 503.
    const stub = env.WORKSPACE.getByName(u.workspaceId);
    const users = await runInDurableObject(stub, (instance: WorkspaceDO) => {
      const objectEnv = (instance as unknown as { env: Bindings }).env;
      const real = objectEnv.USER_DB;
      objectEnv.USER_DB = {
        getByName: () => ({ check: () => Promise.reject(new Error('the user object is unreachable')) }),
      } as unknown as Bindings['USER_DB'];
      instance.forget({ userId: u.id });
      return real;
    });
    socket.send({ type: 'push', id: 'p1', ops: [op('messages', 'm1', message('m1'))] });
    expect(await socket.next((m) => m.id === 'p1')).toMatchObject({ type: 'error', status: 503, error: 'auth_unavailable' });
    socket.send({ type: 'pull', id: 'p2', cursor: 0 });
    expect(await socket.next((m) => m.id === 'p2')).toMatchObject({ type: 'error', status: 503 }); // held back: the same code within the minute
    // The objects of this isolate share one env: give the binding back before asking the deployment's object.
    await runInDurableObject(stub, (instance) => {
      (instance as unknown as { env: Bindings }).env.USER_DB = users;
    });
    await deploymentDeliveries(webhook.id, 1);
    await new Promise((r) => setTimeout(r, 300)); // a second delivery, were there one, would be logged by now
    const deliveries = await deploymentDeliveries(webhook.id, 0);
    expect(deliveries.map((d) => d.event)).toEqual(['admin.sync.error']);
    expect(JSON.parse((await eventBody(deliveries[0].eventId))!).data).toEqual({
      status: 503,
      error: 'auth_unavailable',
      method: 'WEBSOCKET',
      path: '/api/sync/ws',
      request_id: 'p1',
      socket_message: 'push',
      suppressed_since_last: 0,
    });
    // With the user's object reachable again, the socket works again.
    socket.send({ type: 'push', id: 'p3', ops: [op('messages', 'm1', message('m1'))] });
    expect(await socket.next((m) => m.id === 'p3')).toMatchObject({ type: 'push-result', serverVersion: 1 });
    socket.ws.close();
    expect((await call('DELETE', `/api/admin/webhooks/${webhook.id}`, intent)).status).toBe(200);
  });
});
