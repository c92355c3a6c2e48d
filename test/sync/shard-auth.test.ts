/**
 * Authorization at the shard (docs/architecture.md): the workspace's object decides from facts it
 * caches, so a steady stream of sync and storage requests makes no D1 query at all — neither in
 * the Worker nor in the object — for cookie, bearer and federated principals alike; revocations
 * through the API are immediate, and one the object never hears of ends within the bound.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Bindings } from '../../src/env';
import { PASSWORD, call, signInBearer, signInCookies, signedInUser } from '../auth/helpers';
import { apiWithEnv, countingDb } from '../helpers';
import { bytesOf, sha256 } from '../storage/helpers';
import { message, op, syncUser } from './helpers';
import { createWorkspace } from '../../src/workspace-records/store';

describe('no central query on the hot path in steady state', () => {
  it('push, pull, snapshot, update-cursor, gc, presign, usage: 0 D1 queries in the Worker and in the object once warm', async () => {
    const u = await syncUser();
    const worker = countingDb(env.DB);
    const vars = { DB: worker.db };
    const req = (path: string, body?: unknown, method = 'POST') =>
      apiWithEnv(vars, path, {
        method,
        headers: { ...u.headers, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const objectCalls = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (instance) => {
      const objectEnv = (instance as unknown as { env: Bindings & { __counter?: { calls: number } } }).env;
      const { db, counter } = countingDb(objectEnv.DB);
      objectEnv.DB = db;
      objectEnv.__counter = counter;
      return counter.calls;
    });
    expect(objectCalls).toBe(0);
    const readObjectCalls = () =>
      runInDurableObject(
        env.WORKSPACE.getByName(u.workspaceId),
        (instance) => (instance as unknown as { env: { __counter: { calls: number } } }).env.__counter.calls,
      );

    // Warm-up: the first request of this session fills the object's cache: the session from the
    // user's object, the role from the workspace's own members (seeded when it was created): no D1.
    expect((await req('/api/sync/pull', { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(200);
    const warm = await readObjectCalls();
    expect(warm).toBe(0);
    worker.counter.calls = 0;

    const hash = await sha256(bytesOf('steady'));
    for (let round = 0; round < 3; round++) {
      expect((await req('/api/sync/push', { scope: { workspaceId: u.workspaceId }, ops: [op('messages', `m${round}`, message(`m${round}`))] })).status).toBe(
        200,
      );
      expect((await req('/api/sync/pull', { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(200);
      expect((await req('/api/sync/snapshot', { scope: { workspaceId: u.workspaceId } })).status).toBe(200);
      expect((await req('/api/sync/update-cursor', { scope: { workspaceId: u.workspaceId }, deviceId: 'dev-steady', version: round + 1 })).status).toBe(200);
      expect((await req('/api/sync/gc-tombstones', { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 })).status).toBe(200);
      const presign = await req('/api/storage/presign-upload', { workspace_id: u.workspaceId, hash, mime_type: 'image/png', size_bytes: 6 });
      expect(presign.status).toBe(200);
      expect((await req('/api/storage/presign-download', { workspace_id: u.workspaceId, hash })).status).toBe(404);
      expect((await req(`/api/storage/usage?workspace_id=${u.workspaceId}`, undefined, 'GET')).status).toBe(200);
    }
    expect(worker.counter.calls).toBe(0);
    expect(await readObjectCalls()).toBe(warm);
  });

  it('cookie principals: 0 D1 queries once warm', async () => {
    const u = await syncUser();
    const { access } = await signInCookies(u.email);
    const worker = countingDb(env.DB);
    const pull = () =>
      apiWithEnv({ DB: worker.db }, '/api/sync/pull', {
        method: 'POST',
        headers: { cookie: `or3_access=${access}`, 'content-type': 'application/json' },
        body: JSON.stringify({ scope: { workspaceId: u.workspaceId }, cursor: 0 }),
      });
    expect((await pull()).status).toBe(200);
    worker.counter.calls = 0;
    for (let i = 0; i < 5; i++) expect((await pull()).status).toBe(200);
    expect(worker.counter.calls).toBe(0);
  });
});

describe('federated principals at the shard', () => {
  const ISSUER = 'https://idp.example.com';
  let key: CryptoKey;
  let vars: Record<string, string>;
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
    vars = { OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([{ id: 'idp', issuer: ISSUER, audience: 'or3', jwks: { keys: [jwk] } }]) };
  });
  const token = (sub: string) =>
    new SignJWT({ email: `${sub}@example.com` })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience('or3')
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key);

  it('a federated user syncs with 0 D1 queries in the Worker once the object knows them', async () => {
    const sub = `fed-${crypto.randomUUID()}`;
    const headers = { authorization: `Bearer ${await token(sub)}`, 'content-type': 'application/json' };
    // First sight provisions the user and their default workspace (a rare route, D1 allowed).
    const session = await (await apiWithEnv(vars, '/api/auth/session', { headers })).json<any>();
    const workspaceId = session.session.workspace.id as string;
    const worker = countingDb(env.DB);
    const sync = (path: string, body: unknown) => apiWithEnv({ ...vars, DB: worker.db }, path, { method: 'POST', headers, body: JSON.stringify(body) });
    expect((await sync('/api/sync/pull', { scope: { workspaceId }, cursor: 0 })).status).toBe(200);
    worker.counter.calls = 0;
    const note = { id: 'n1', user_id: 'x', type: 'info', title: 'Hi', deleted: false, created_at: 1, updated_at: 1, clock: 1 };
    const pushed = await sync('/api/sync/push', { scope: { workspaceId }, ops: [op('messages', 'f1', message('f1')), op('notifications', 'n1', note)] });
    expect(pushed.status).toBe(200);
    const page = await (await sync('/api/sync/pull', { scope: { workspaceId }, cursor: 0 })).json<any>();
    expect(page.changes.map((c: any) => c.pk)).toEqual(['f1', 'n1']);
    // The notification belongs to the federated user's own id.
    expect(page.changes[1].payload.user_id).toBe(session.session.user.id);
    expect(worker.counter.calls).toBe(0);
  });
});

describe('revocation', () => {
  it('revocations made through the API are immediate: sign-out, password change, member removal', async () => {
    const u = await syncUser();
    const pull = (headers: Record<string, string>, workspaceId = u.workspaceId) =>
      call('POST', '/api/sync/pull', headers, { scope: { workspaceId }, cursor: 0 });
    expect((await pull(u.headers)).status).toBe(200);
    expect((await call('POST', '/api/basic-auth/sign-out', u.headers)).status).toBe(200);
    expect((await pull(u.headers)).status).toBe(401);

    // Password change: the other sessions' tokens (older token version) stop at once.
    const v = await syncUser();
    const second = await signInBearer(v.email);
    expect((await pull(second.headers, v.workspaceId)).status).toBe(200);
    const changed = await call('POST', '/api/basic-auth/change-password', v.headers, {
      currentPassword: PASSWORD,
      newPassword: 'another long passphrase',
      confirmNewPassword: 'another long passphrase',
    });
    expect(changed.status).toBe(200);
    expect((await pull(second.headers, v.workspaceId)).status).toBe(401);

    const owner = await syncUser();
    const member = await signedInUser();
    const { inviteToken } = await (await call('POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.headers, { role: 'editor' })).json<any>();
    // Refused before joining (the object caches "not a member")…
    expect((await call('POST', '/api/sync/pull', member.headers, { scope: { workspaceId: owner.workspaceId }, cursor: 0 })).status).toBe(403);
    // …and admitted on the very next request after accepting the invite.
    expect((await call('POST', '/api/workspaces/invites/accept', member.headers, { inviteToken })).status).toBe(200);
    expect((await call('POST', '/api/sync/pull', member.headers, { scope: { workspaceId: owner.workspaceId }, cursor: 0 })).status).toBe(200);
    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await call('POST', '/api/sync/pull', member.headers, { scope: { workspaceId: owner.workspaceId }, cursor: 0 })).status).toBe(403);
  });

  it('fills need no D1 (cached and fresh sessions sync while D1 is unreachable); a workspace never seeded fails closed with 503', async () => {
    const cached = await syncUser();
    const fresh = await syncUser();
    const unseeded = { ...fresh, workspaceId: await createWorkspace(env.DB, fresh.id, 'never used', null) };
    const pull = (u: { headers: Record<string, string>; workspaceId: string }) =>
      call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 });
    expect((await pull(cached)).status).toBe(200);
    const broken = {
      prepare: () => {
        throw new Error('D1 is unreachable');
      },
      batch: () => Promise.reject(new Error('D1 is unreachable')),
    } as unknown as D1Database;
    for (const u of [cached, fresh, unseeded]) {
      await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (instance) => {
        (instance as unknown as { env: Bindings }).env.DB = broken;
      });
    }
    expect((await pull(cached)).status).toBe(200);
    expect((await pull(fresh)).status).toBe(200);
    const res = await pull(unseeded);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'auth_unavailable' });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
