/**
 * Service tokens (docs/service-api.md): who may manage them, what they may reach, scopes,
 * revocation and expiry at once, another workspace unreachable, server stamps, per-token rate
 * limits and the audit trail. Production configuration, through the real Worker.
 */
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser, type SignedIn } from '../auth/helpers';
import { message, op, pull, pushOk, syncUser, thread, type SyncUser } from '../sync/helpers';
import { bearer, createToken, messages, servicePut } from './helpers';

let owner: SyncUser;
let editor: SignedIn;
let outsider: SignedIn;
let admin: SignedIn;

beforeAll(async () => {
  owner = await syncUser();
  [editor, outsider, admin] = await Promise.all([signedInUser(), signedInUser(), signedInUser({ isAdmin: true })]);
  await upsertMember(env, owner.workspaceId, editor.id, 'editor');
});

const servicePush = (token: string, workspaceId: string, ops: unknown[]) => call('POST', '/api/sync/push', bearer(token), { scope: { workspaceId }, ops });
const bare = (tableName: string, pk: string, payload: Record<string, unknown>) => ({ tableName, operation: 'put', pk, payload });

describe('managing tokens', () => {
  it('owners and deployment admins create, list and revoke; editors and outsiders 403; no credentials 401; the token is shown once', async () => {
    const path = `/api/workspaces/${owner.workspaceId}/service-tokens`;
    const body = { name: 'indexer', scopes: ['read'], expiresInSeconds: 600 };
    expect((await call('POST', path, editor.headers, body)).status).toBe(403);
    expect((await call('POST', path, outsider.headers, body)).status).toBe(403);
    expect((await call('GET', path, editor.headers)).status).toBe(403);
    expect((await call('POST', path, {}, body)).status).toBe(401);
    const created = await call('POST', path, owner.headers, body);
    expect(created.status).toBe(200);
    const { token, serviceToken } = await created.json<any>();
    expect(token).toMatch(/^or3st_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect(serviceToken).toMatchObject({ name: 'indexer', scopes: ['read'], lastUsedAt: null });
    const listed = await (await call('GET', path, owner.headers)).json<any>();
    expect(listed.serviceTokens.map((t: any) => t.name)).toContain('indexer');
    // The secret is everything after `or3st_<id>_` (43 base64url characters, which may hold '_' themselves).
    expect(token.slice('or3st_'.length + 33)).toHaveLength(43);
    expect(JSON.stringify(listed)).not.toContain(token.slice('or3st_'.length + 33));
    expect((await call('POST', path, owner.headers, body)).status).toBe(409); // a live token has that name
    // A deployment admin who is not a member.
    const byAdmin = await call('POST', path, admin.headers, { ...body, name: 'ops' });
    expect(byAdmin.status).toBe(200);
    expect((await call('DELETE', `${path}/${serviceToken.id}`, editor.headers)).status).toBe(403);
    expect((await call('DELETE', `${path}/${serviceToken.id}`, owner.headers)).status).toBe(200);
    expect((await call('DELETE', `${path}/${serviceToken.id}`, owner.headers)).status).toBe(404);
    // The name is free again once revoked.
    expect((await call('POST', path, owner.headers, body)).status).toBe(200);
  });

  it('bad input is a 400', async () => {
    const path = `/api/workspaces/${owner.workspaceId}/service-tokens`;
    for (const body of [
      { name: 'has space', scopes: ['read'], expiresInSeconds: 60 },
      { name: 'x', scopes: [], expiresInSeconds: 60 },
      { name: 'x', scopes: ['admin'], expiresInSeconds: 60 },
      { name: 'x', scopes: ['read'], expiresInSeconds: 0 },
      { name: 'x', scopes: ['read'], expiresInSeconds: 1.5 },
      { name: 'x', scopes: ['read'] },
      { name: 'x', scopes: ['read'], expiresInSeconds: 60, userId: 'me' },
    ]) {
      expect((await call('POST', path, owner.headers, body)).status, JSON.stringify(body)).toBe(400);
    }
  });

  it('a service token is not a user: account, workspace, admin routes and device sync answer 401', async () => {
    const { token } = await createToken(owner, owner.workspaceId);
    for (const [method, path] of [
      ['GET', '/api/workspaces'],
      ['GET', `/api/workspaces/${owner.workspaceId}/members`],
      ['GET', `/api/workspaces/${owner.workspaceId}/service-tokens`],
      ['GET', `/api/workspaces/${owner.workspaceId}/webhooks`],
      ['GET', '/api/admin/users'],
      ['POST', '/api/basic-auth/change-password'],
    ] as const) {
      expect((await call(method, path, bearer(token), method === 'POST' ? {} : undefined)).status, path).toBe(401);
    }
    expect((await call('POST', '/api/sync/pull', bearer(token), { scope: { workspaceId: owner.workspaceId }, cursor: 0 })).status).toBe(401);
    const session = await (await call('GET', '/api/auth/session', bearer(token))).json<any>();
    expect(session.session?.authenticated ?? false).toBe(false);
  });
});

describe('using tokens', () => {
  it('a write token pushes through the engine with the server’s stamps; devices pull it', async () => {
    const { token, serviceToken } = await createToken(owner, owner.workspaceId, { name: 'agent' });
    await pushOk(owner, owner.workspaceId, [op('messages', 'sm1', message('sm1', { thread_id: 'st', clock: 1 }), { clock: 4 })]);
    const res = await servicePush(token, owner.workspaceId, [bare('messages', 'sm1', message('sm1', { thread_id: 'st', data: 'from the agent' }))]);
    expect(res.status).toBe(200);
    const body = await res.json<any>();
    expect(body.results[0]).toMatchObject({ success: true });
    const page = await pull(owner, owner.workspaceId, 0);
    const change = page.changes.find((c) => c.pk === 'sm1');
    expect(change.payload.data).toBe('from the agent'); // clock 5: the row's clock + 1 wins
    expect(change.stamp).toMatchObject({ deviceId: `service:${serviceToken.name}`, clock: 5 });
    expect(change.stamp.hlc).toMatch(new RegExp(`^\\d{15}:\\d{6}:service:${serviceToken.name}$`));
    // A given stamp is used (the device id never is); a replay of it (same opId, hlc, clock) allocates nothing.
    const opId = crypto.randomUUID();
    const hlc = `${String(Date.now()).padStart(15, '0')}:000000:agent`;
    const given = { ...bare('threads', 'st', thread('st')), stamp: { opId, hlc, clock: 9, deviceId: 'spoofed' } };
    const first = await (await servicePush(token, owner.workspaceId, [given])).json<any>();
    const again = await (await servicePush(token, owner.workspaceId, [given])).json<any>();
    expect(again.results[0].serverVersion).toBe(first.results[0].serverVersion);
    const threadChange = (await pull(owner, owner.workspaceId, 0)).changes.find((c) => c.pk === 'st');
    expect(threadChange.stamp).toMatchObject({ deviceId: `service:${serviceToken.name}`, opId, hlc, clock: 9 });
    // Bad input is the same 400 as a device gets; notifications are not a service's to write.
    expect((await servicePush(token, owner.workspaceId, [bare('messages', 'bad', { id: 'bad' })])).status).toBe(400);
    expect((await servicePush(token, owner.workspaceId, [bare('notifications', 'n1', { id: 'n1' })])).status).toBe(400);
  });

  it('a read token cannot push (403) and reads; a garbage or unknown token is 401', async () => {
    const { token } = await createToken(owner, owner.workspaceId, { scopes: ['read'] });
    const res = await servicePush(token, owner.workspaceId, [bare('threads', 'ro', thread('ro'))]);
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'insufficient_scope' });
    expect((await servicePut(token, owner.workspaceId, 'threads', 'ro', { payload: thread('ro') })).status).toBe(403);
    expect((await messages(token, owner.workspaceId, 'st')).status).toBe(200);
    const fake = `or3st_${'0'.repeat(32)}_${'A'.repeat(43)}`;
    expect((await messages(fake, owner.workspaceId, 'st')).status).toBe(401);
    expect((await messages(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), owner.workspaceId, 'st')).status).toBe(401);
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/threads/st/messages`, {})).status).toBe(401);
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/threads/st/messages`, owner.headers)).status).toBe(401);
  });

  it('revoked or expired: 401 at once, mid-stream too', async () => {
    const { token, serviceToken } = await createToken(owner, owner.workspaceId);
    for (let i = 0; i < 3; i++)
      expect((await servicePut(token, owner.workspaceId, 'messages', 'rv', { payload: message('rv', { data: 'x'.repeat(i + 1) }) })).status).toBe(200);
    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/service-tokens/${serviceToken.id}`, owner.headers)).status).toBe(200);
    expect((await servicePut(token, owner.workspaceId, 'messages', 'rv', { payload: message('rv', { data: 'late' }) })).status).toBe(401);
    expect((await messages(token, owner.workspaceId, 'st')).status).toBe(401);
    expect((await servicePush(token, owner.workspaceId, [bare('threads', 'rv', thread('rv'))])).status).toBe(401);

    const short = await createToken(owner, owner.workspaceId, { expiresInSeconds: 1 });
    expect((await messages(short.token, owner.workspaceId, 'st')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await messages(short.token, owner.workspaceId, 'st')).status).toBe(401);
    expect((await servicePush(short.token, owner.workspaceId, [bare('threads', 'ex', thread('ex'))])).status).toBe(401);
  });

  it('another workspace is unreachable', async () => {
    const other = await createOwnedWorkspace(env, owner.id, 'Other', null);
    await pushOk(owner, other, [op('messages', 'secret', message('secret', { thread_id: 'ot' }))]);
    const { token } = await createToken(owner, owner.workspaceId);
    expect((await messages(token, other, 'ot')).status).toBe(401);
    expect((await call('GET', `/api/service/workspaces/${other}/rows/messages/secret`, bearer(token))).status).toBe(401);
    expect((await servicePush(token, other, [bare('threads', 'x', thread('x'))])).status).toBe(401);
    expect((await servicePut(token, other, 'threads', 'x', { payload: thread('x') })).status).toBe(401);
  });

  it('one row by key; absent, deleted and notification rows are refused', async () => {
    const { token } = await createToken(owner, owner.workspaceId);
    await pushOk(owner, owner.workspaceId, [op('threads', 'one', thread('one', { title: 'One' }))]);
    const res = await call('GET', `/api/service/workspaces/${owner.workspaceId}/rows/threads/one`, bearer(token));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ row: { id: 'one', title: 'One' }, serverVersion: expect.any(Number) });
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/rows/threads/none`, bearer(token))).status).toBe(404);
    await pushOk(owner, owner.workspaceId, [op('threads', 'one', undefined, { operation: 'delete', clock: 2 })]);
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/rows/threads/one`, bearer(token))).status).toBe(404);
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/rows/notifications/n`, bearer(token))).status).toBe(400);
    expect((await call('GET', `/api/service/workspaces/${owner.workspaceId}/rows/nope/n`, bearer(token))).status).toBe(400);
  });
});
