/**
 * Webhook management (docs/webhooks.md "Managing webhooks") through the real Worker in its
 * production configuration: who may manage hooks, what a hook may point at, bad input, and the
 * deployment admins' hooks. Delivery itself is tested end to end with a real receiver in
 * tools/webhooks/test.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bindings } from '../../src/env';
import { syncUser } from '../sync/helpers';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { apiWithEnv } from '../helpers';
import { call, signedInUser, type SignedIn } from '../auth/helpers';

let owner: SignedIn;
let editor: SignedIn;
let viewer: SignedIn;
let outsider: SignedIn;
let admin: SignedIn;

beforeAll(async () => {
  [owner, editor, viewer, outsider, admin] = await Promise.all([
    signedInUser(),
    signedInUser(),
    signedInUser(),
    signedInUser(),
    signedInUser({ isAdmin: true }),
  ]);
});

async function team() {
  const id = await createOwnedWorkspace(env, owner.id, 'Hooks', null);
  await upsertMember(env, id, editor.id, 'editor');
  await upsertMember(env, id, viewer.id, 'viewer');
  return id;
}

const hook = (url = 'https://hooks.example.com/or3', extra: Record<string, unknown> = {}) => ({ url, events: ['message.created'], enabled: false, ...extra });

describe('workspace webhooks', () => {
  it('owners manage them; editors, viewers and outsiders get 403; no credentials 401', async () => {
    const id = await team();
    for (const [user, status] of [
      [editor, 403],
      [viewer, 403],
      [outsider, 403],
    ] as const) {
      expect((await call('POST', `/api/workspaces/${id}/webhooks`, user.headers, hook())).status).toBe(status);
      expect((await call('GET', `/api/workspaces/${id}/webhooks`, user.headers)).status).toBe(status);
    }
    expect((await call('POST', `/api/workspaces/${id}/webhooks`, {}, hook())).status).toBe(401);
    expect((await call('GET', `/api/workspaces/${id}/webhooks`, {})).status).toBe(401);

    const created = await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, hook());
    expect(created.status).toBe(200);
    const body = await created.json<any>();
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(body.webhook).toMatchObject({ url: 'https://hooks.example.com/or3', events: ['message.created'], enabled: false, disabledReason: null });
    const hookId = body.webhook.id;
    // The secret is shown once: never in a listing or a read.
    const listed = await (await call('GET', `/api/workspaces/${id}/webhooks`, owner.headers)).json<any>();
    expect(JSON.stringify(listed)).not.toContain(body.secret);
    expect(listed.webhooks.map((w: any) => w.id)).toEqual([hookId]);
    for (const user of [editor, viewer, outsider]) {
      expect((await call('PATCH', `/api/workspaces/${id}/webhooks/${hookId}`, user.headers, { enabled: true })).status).toBe(403);
      expect((await call('DELETE', `/api/workspaces/${id}/webhooks/${hookId}`, user.headers)).status).toBe(403);
      expect((await call('GET', `/api/workspaces/${id}/webhooks/${hookId}/deliveries`, user.headers)).status).toBe(403);
      expect((await call('POST', `/api/workspaces/${id}/webhooks/${hookId}/rotate`, user.headers, {})).status).toBe(403);
    }
    const patched = await call('PATCH', `/api/workspaces/${id}/webhooks/${hookId}`, owner.headers, { events: ['thread.*', 'message.created'] });
    expect((await patched.json<any>()).webhook.events).toEqual(['thread.*', 'message.created']);
    expect(await (await call('GET', `/api/workspaces/${id}/webhooks/${hookId}/deliveries`, owner.headers)).json()).toEqual({ deliveries: [] });
    expect((await call('DELETE', `/api/workspaces/${id}/webhooks/${hookId}`, owner.headers)).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${id}/webhooks/${hookId}`, owner.headers)).status).toBe(404);
  });

  it('production refuses private, loopback and link-local targets, plain http, local names and credentials', async () => {
    const id = await team();
    const refused = [
      'http://hooks.example.com/x',
      'http://127.0.0.1:8080/x',
      'https://127.0.0.1/x',
      'https://0x7f.0.0.1/x',
      'https://2130706433/x',
      'https://10.1.2.3/x',
      'https://172.16.0.1/x',
      'https://192.168.1.1/x',
      'https://169.254.169.254/latest/meta-data',
      'https://100.64.0.1/x',
      'https://0.0.0.0/x',
      'https://[::1]/x',
      'https://[::ffff:127.0.0.1]/x',
      'https://[fd00::1]/x',
      'https://[fe80::1]/x',
      'https://localhost/x',
      'https://localhost:8443/x',
      'https://printer.local/x',
      'https://intranet/x',
      'https://user:pw@hooks.example.com/x',
      'not a url',
      `https://hooks.example.com/${'a'.repeat(2100)}`,
    ];
    for (const url of refused) {
      const res = await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, hook(url));
      expect(res.status, url).toBe(400);
      expect((await res.json<any>()).error, url).toMatch(/invalid_url|invalid_body/);
    }
    for (const url of ['https://hooks.example.com/x', 'https://8.8.8.8/x', 'https://[2606:4700::1111]/x']) {
      expect((await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, hook(url))).status, url).toBe(200);
    }
    // A PATCH is checked the same way.
    const { webhook } = await (await call('GET', `/api/workspaces/${id}/webhooks`, owner.headers)).json<any>().then((b) => ({ webhook: b.webhooks[0] }));
    expect((await call('PATCH', `/api/workspaces/${id}/webhooks/${webhook.id}`, owner.headers, { url: 'https://10.0.0.1/' })).status).toBe(400);
  });

  it('OR3_WEBHOOK_ALLOW_LOOPBACK is refused in production; in development it allows http://127.0.0.1:<port> and localhost', async () => {
    const res = await apiWithEnv({ OR3_WEBHOOK_ALLOW_LOOPBACK: 'true' }, '/api/health');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'misconfigured' });

    const id = await team();
    const dev = { ENVIRONMENT: 'development', OR3_ALLOWED_ORIGINS: '' };
    const post = (vars: Record<string, string>, url: string) =>
      apiWithEnv({ ...dev, ...vars }, `/api/workspaces/${id}/webhooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...owner.headers },
        body: JSON.stringify(hook(url)),
      });
    expect((await post({}, 'http://127.0.0.1:4000/hook')).status).toBe(400);
    expect((await post({ OR3_WEBHOOK_ALLOW_LOOPBACK: 'true' }, 'http://127.0.0.1:4000/hook')).status).toBe(200);
    expect((await post({ OR3_WEBHOOK_ALLOW_LOOPBACK: 'true' }, 'http://localhost:4000/any/path')).status).toBe(200);
    expect((await post({ OR3_WEBHOOK_ALLOW_LOOPBACK: 'true' }, 'http://10.0.0.1:4000/hook')).status).toBe(400);
  });

  it('bad input is a 400 naming the problem; unknown hooks and deliveries are 404', async () => {
    const id = await team();
    const bad = [
      { url: 'https://hooks.example.com', events: ['message.exploded'] },
      { url: 'https://hooks.example.com', events: [] },
      { url: 'https://hooks.example.com', events: ['*'], secret: 'mine' },
      { url: 'https://hooks.example.com', events: ['admin.user.created'] },
      { url: 42, events: ['*'] },
      { events: ['*'] },
    ];
    for (const body of bad) expect((await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, body)).status, JSON.stringify(body)).toBe(400);
    const missing = crypto.randomUUID();
    expect((await call('GET', `/api/workspaces/${id}/webhooks/${missing}`, owner.headers)).status).toBe(404);
    expect((await call('POST', `/api/workspaces/${id}/webhooks/${missing}/test`, owner.headers, {})).status).toBe(404);
    expect((await call('POST', `/api/workspaces/${id}/webhooks/${missing}/deliveries/x/redeliver`, owner.headers, {})).status).toBe(404);
    expect((await call('POST', `/api/workspaces/${id}/webhooks/${missing}/rotate`, owner.headers, { graceSeconds: -1 })).status).toBe(400);
    // Another workspace's hook is not this workspace's.
    const other = await team();
    const created = await (await call('POST', `/api/workspaces/${other}/webhooks`, owner.headers, hook())).json<any>();
    expect((await call('GET', `/api/workspaces/${id}/webhooks/${created.webhook.id}`, owner.headers)).status).toBe(404);
    expect((await call('DELETE', `/api/workspaces/${id}/webhooks/${created.webhook.id}`, owner.headers)).status).toBe(404);
  });

  it('at most 20 hooks per workspace', async () => {
    const id = await team();
    for (let i = 0; i < 20; i++) expect((await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, hook())).status).toBe(200);
    expect((await call('POST', `/api/workspaces/${id}/webhooks`, owner.headers, hook())).status).toBe(409);
  });
});

/** A deployment hook's delivery log, once it holds at least `n` entries (polled, up to 5 s). */
async function deploymentDeliveries(hookId: string, n: number): Promise<any[]> {
  for (let i = 0; ; i++) {
    const { deliveries } = await (await call('GET', `/api/admin/webhooks/${hookId}/deliveries`, admin.headers)).json<any>();
    if (deliveries.length >= n || i >= 50) return deliveries;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('deployment webhooks', () => {
  it('deployment admins only, with the intent header for changes, and deployment events only', async () => {
    const body = { url: 'https://ops.example.com/or3', events: ['admin.user.created'], enabled: false };
    expect((await call('GET', '/api/admin/webhooks', owner.headers)).status).toBe(403);
    expect((await call('POST', '/api/admin/webhooks', owner.headers, body)).status).toBe(403);
    expect((await call('POST', '/api/admin/webhooks', {}, body)).status).toBe(401);
    expect((await call('POST', '/api/admin/webhooks', admin.headers, body)).status).toBe(403); // no intent header
    const intent = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    expect((await call('POST', '/api/admin/webhooks', intent, { ...body, events: ['message.created'] })).status).toBe(400);
    const created = await call('POST', '/api/admin/webhooks', intent, body);
    expect(created.status).toBe(200);
    const { webhook } = await created.json<any>();
    const list = await (await call('GET', '/api/admin/webhooks', admin.headers)).json<any>();
    expect(list.webhooks.some((w: any) => w.id === webhook.id)).toBe(true);
    expect((await call('DELETE', `/api/admin/webhooks/${webhook.id}`, intent)).status).toBe(200);
  });

  it('deployment events reach the deployment hooks that take them: a workspace created and deleted', async () => {
    const intent = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    const created = await call('POST', '/api/admin/webhooks', intent, { url: 'https://ops.example.com/ws', events: ['admin.workspace.*'] });
    const { webhook } = await created.json<any>();
    const res = await call('POST', '/api/workspaces', owner.headers, { name: 'Watched' });
    const { id } = await res.json<any>();
    expect((await call('DELETE', `/api/workspaces/${id}`, owner.headers)).status).toBe(200);
    const events = (await deploymentDeliveries(webhook.id, 2)).map((d) => d.event);
    expect([...events].sort()).toEqual(['admin.workspace.created', 'admin.workspace.deleted']);
    expect((await call('DELETE', `/api/admin/webhooks/${webhook.id}`, intent)).status).toBe(200);
    expect((await call('GET', `/api/admin/webhooks/${webhook.id}`, admin.headers)).status).toBe(404);
  });
  it('a user disabled and deleted by an admin reach the hooks that take admin.user.*', async () => {
    const intent = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    const { webhook } = await (
      await call('POST', '/api/admin/webhooks', intent, { url: 'https://ops.example.com/users', events: ['admin.user.*'] })
    ).json<any>();
    const target = await signedInUser();
    expect((await call('POST', `/api/admin/users/${target.id}/disable`, intent)).status).toBe(200);
    expect((await call('DELETE', `/api/admin/users/${target.id}`, intent, { delete: true })).status).toBe(200);
    const events = (await deploymentDeliveries(webhook.id, 2)).map((d) => d.event);
    expect([...events].sort()).toEqual(['admin.user.deleted', 'admin.user.disabled']);
    expect((await call('DELETE', `/api/admin/webhooks/${webhook.id}`, intent)).status).toBe(200);
  });

  it('a sync request the server fails raises admin.sync.error, once per code per minute', async () => {
    const intent = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    const { webhook } = await (
      await call('POST', '/api/admin/webhooks', intent, { url: 'https://ops.example.com/sync', events: ['admin.sync.error'] })
    ).json<any>();
    // A real failure: the workspace's object cannot reach the user's object to learn who this new session is (503).
    const u = await syncUser();
    const objectEnv = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (instance) => (instance as unknown as { env: Bindings }).env);
    const users = objectEnv.USER_DB;
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (instance) => {
      (instance as unknown as { env: Bindings }).env.USER_DB = {
        getByName: () => ({ check: () => Promise.reject(new Error('the user object is unreachable')) }),
      } as unknown as Bindings['USER_DB'];
    });
    const pull = () => call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 });
    const first = await pull();
    expect(first.status).toBe(503);
    const requestId = first.headers.get('x-request-id');
    expect((await pull()).status).toBe(503); // held back: the same code within the minute
    // The objects of this isolate share one env: give the binding back before asking the deployment's object.
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (instance) => {
      (instance as unknown as { env: Bindings }).env.USER_DB = users;
    });
    await deploymentDeliveries(webhook.id, 1);
    await new Promise((r) => setTimeout(r, 300)); // a second delivery, were there one, would be logged by now
    const deliveries = await deploymentDeliveries(webhook.id, 0);
    expect(deliveries.map((d) => d.event)).toEqual(['admin.sync.error']);
    const body = await runInDurableObject(
      env.WORKSPACE.getByName('__deployment__'),
      (_, state) => state.storage.sql.exec<{ body: string }>('SELECT body FROM webhook_events WHERE id = ?', deliveries[0].eventId).toArray()[0]?.body,
    );
    expect(JSON.parse(body!).data).toMatchObject({
      status: 503,
      error: 'auth_unavailable',
      method: 'POST',
      path: '/api/sync/pull',
      request_id: requestId,
      suppressed_since_last: 0,
    });
    expect((await call('DELETE', `/api/admin/webhooks/${webhook.id}`, intent)).status).toBe(200);
  });
});
