/** Realtime: WebSocket pokes after commits, across hibernation, and closed on revoked access. */
import { env } from 'cloudflare:workers';
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { removeMember, upsertMember } from '../../src/workspace-records/member-writes';
import { SOCKET_REVERIFY_MS } from '../../src/workspace-db/sockets';
import { call, PASSWORD, signedInUser, signInBearer } from '../auth/helpers';
import { api } from '../helpers';
import { message, op, openSocket as open, pull, pushOk, syncUser, thread, type TestSocket } from './helpers';

async function connect(path: string, headers: Record<string, string> = {}): Promise<TestSocket> {
  return open(await api(path, { headers: { upgrade: 'websocket', ...headers } }));
}

describe('GET /api/sync/ws', () => {
  it('says hello with the current version, then pokes after every commit that allocated versions', async () => {
    const u = await syncUser();
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, u.headers);
    expect(await socket.next((m) => m.type === 'hello')).toEqual({ type: 'hello', serverVersion: 0 });
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    expect(await socket.next((m) => m.type === 'poke')).toMatchObject({ type: 'poke', serverVersion: 1 });
    socket.ws.close();
  });

  it("a poke carries its commit's changes, exactly as a pull from fromVersion returns them", async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1'))]);
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, u.headers);
    await socket.next((m) => m.type === 'hello');
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1')),
      op('messages', 'm2', message('m2')),
      op('messages', 'm1', undefined, { operation: 'delete', clock: 2 }),
    ]);
    const poke = await socket.next((m) => m.type === 'poke');
    expect(poke).toMatchObject({ type: 'poke', serverVersion: 4, fromVersion: 1 });
    expect(poke.changes).toEqual((await pull(u, u.workspaceId, 1)).changes);
    // Compacted like a pull: m1's put was superseded by its delete in the same commit.
    expect(poke.changes.map((c: any) => [c.serverVersion, c.pk, c.op])).toEqual([
      [3, 'm2', 'put'],
      [4, 'm1', 'delete'],
    ]);
    socket.ws.close();
  });

  it("another member's poke leaves out notifications that are not theirs; a large commit pokes without changes", async () => {
    const u = await syncUser();
    const other = await signedInUser();
    await upsertMember(env, u.workspaceId, other.id, 'editor');
    const mine = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, u.headers);
    const theirs = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, other.headers);
    await Promise.all([mine.next((m) => m.type === 'hello'), theirs.next((m) => m.type === 'hello')]);
    const note = { id: 'n1', user_id: 'x', type: 'info', title: 'private', read_at: null, deleted: false, created_at: 1, updated_at: 1, clock: 1 };
    await pushOk(u, u.workspaceId, [op('notifications', 'n1', note), op('messages', 'm1', message('m1'))]);
    const [a, b] = await Promise.all([mine.next((m) => m.type === 'poke'), theirs.next((m) => m.type === 'poke')]);
    expect(a.changes.map((c: any) => c.pk)).toEqual(['n1', 'm1']);
    expect(b).toMatchObject({ serverVersion: 2, fromVersion: 0 });
    expect(b.changes.map((c: any) => c.pk)).toEqual(['m1']);
    expect(JSON.stringify(b)).not.toContain('private');
    // Over the size a poke carries: clients are told to pull instead.
    const big = Array.from({ length: 3 }, (_, i) => op('messages', `big${i}`, message(`big${i}`, { data: 'x'.repeat(30_000) })));
    await pushOk(u, u.workspaceId, big);
    expect(await mine.next((m) => m.type === 'poke' && m.serverVersion === 5)).toEqual({ type: 'poke', serverVersion: 5 });
    mine.ws.close();
    theirs.ws.close();
  });

  it('authorizes the upgrade at the object: a user who is not a member gets 403 and no socket', async () => {
    const u = await syncUser();
    const gone = await signedInUser();
    // Whatever the Worker checked, the object decides from its own facts.
    const caller = {
      workspaceId: u.workspaceId,
      credential: { kind: 'ticket', userId: gone.id, sessionId: null, expiresAt: Date.now() + 60_000 },
      permission: 'read',
      cacheTtlMs: 60_000,
      autoProvision: false,
    };
    const res = await env.WORKSPACE.getByName(u.workspaceId).fetch(`https://edge.test/api/sync/ws?workspaceId=${u.workspaceId}`, {
      headers: { upgrade: 'websocket', 'x-or3-caller': JSON.stringify(caller) },
    });
    expect(res.status).toBe(403);
    expect(res.webSocket).toBeNull();
    expect(await res.json()).toMatchObject({ error: 'not_member' });
  });

  it('a socket not confirmed for a while gets pokes without changes until D1 confirms it again; a removed user is then closed', async () => {
    const u = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, u.workspaceId, member.id, 'viewer');
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, member.headers);
    await socket.next((m) => m.type === 'hello');
    const age = (ms: number) =>
      runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
        for (const ws of state.getWebSockets()) ws.serializeAttachment({ ...ws.deserializeAttachment(), verifiedAt: Date.now() - ms });
      });
    await age(SOCKET_REVERIFY_MS + 1000);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    expect(await socket.next((m) => m.type === 'poke' && m.serverVersion === 1)).toEqual({ type: 'poke', serverVersion: 1 });
    // That poke also started a re-confirmation; once it is in, pokes carry changes again.
    const confirmedAt = () =>
      runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
        Math.min(...state.getWebSockets().map((ws) => ws.deserializeAttachment().verifiedAt as number)),
      );
    for (let i = 0; i < 100 && Date.now() - (await confirmedAt()) > SOCKET_REVERIFY_MS; i++) await new Promise((r) => setTimeout(r, 20));
    await pushOk(u, u.workspaceId, [op('messages', 'm2', message('m2'))]);
    expect(await socket.next((m) => m.type === 'poke' && m.serverVersion === 2)).toMatchObject({
      fromVersion: 1,
      changes: [expect.objectContaining({ pk: 'm2' })],
    });
    // Removed in D1 without the object being told (say closeSockets failed): once the cached
    // membership is past its bound (here: a bound of 0), the next re-confirmation closes the
    // socket, and no change reaches it meanwhile.
    await removeMember(env, u.workspaceId, member.id);
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ ...ws.deserializeAttachment(), cacheTtlMs: 0 });
    });
    await age(SOCKET_REVERIFY_MS + 1000);
    await pushOk(u, u.workspaceId, [op('messages', 'secret', message('secret'))]);
    expect((await socket.closed).code).toBe(4003);
    expect(JSON.stringify(socket.messages)).not.toContain('secret');
  });

  it('keeps poking after the object is evicted (hibernation)', async () => {
    const u = await syncUser();
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, u.headers);
    await socket.next((m) => m.type === 'hello');
    await evictDurableObject(env.WORKSPACE.getByName(u.workspaceId));
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1')), op('messages', 'm2', message('m2'))]);
    expect(await socket.next((m) => m.type === 'poke')).toMatchObject({ type: 'poke', serverVersion: 2, fromVersion: 0 });
    socket.ws.close();
  });

  it('closes the socket of a member who is removed', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, owner.workspaceId, member.id, 'viewer');
    const socket = await connect(`/api/sync/ws?workspaceId=${owner.workspaceId}`, member.headers);
    await socket.next((m) => m.type === 'hello');
    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await socket.closed).code).toBe(4003);
  });

  it('sign-out closes the sockets of that session only (4001), and its tickets stop working', async () => {
    const u = await syncUser();
    const other = await signInBearer(u.email); // a second session (another device)
    const path = `/api/sync/ws?workspaceId=${u.workspaceId}`;
    const mine = await connect(path, u.headers);
    const theirs = await connect(path, other.headers);
    await Promise.all([mine.next((m) => m.type === 'hello'), theirs.next((m) => m.type === 'hello')]);
    const { ticket } = await (await call('POST', '/api/sync/ws-ticket', u.headers, { workspaceId: u.workspaceId })).json<{ ticket: string }>();
    expect((await call('POST', '/api/basic-auth/sign-out', u.headers, {})).status).toBe(200);
    expect((await mine.closed).code).toBe(4001);
    // The other session's socket is untouched: it still hears commits.
    await pushOk({ headers: other.headers }, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    expect(await theirs.next((m) => m.type === 'poke')).toMatchObject({ type: 'poke', serverVersion: 1 });
    // A ticket issued to the ended session, still within its 60 s, no longer opens a socket.
    expect((await api(`${path}&ticket=${encodeURIComponent(ticket)}`, { headers: { upgrade: 'websocket' } })).status).toBe(401);
    theirs.ws.close();
  });

  it("a password change closes every socket of the user with 4001, the changing session's too; it re-dials with its new token (SECURITY.md §7 case 49)", async () => {
    const u = await syncUser();
    const other = await signInBearer(u.email);
    const path = `/api/sync/ws?workspaceId=${u.workspaceId}`;
    const current = await connect(path, u.headers);
    const stale = await connect(path, other.headers);
    await Promise.all([current.next((m) => m.type === 'hello'), stale.next((m) => m.type === 'hello')]);
    const res = await call(
      'POST',
      '/api/basic-auth/change-password',
      { ...u.headers, 'x-or3-token-transport': 'bearer' },
      { currentPassword: PASSWORD, newPassword: 'a brand new passphrase 42', confirmNewPassword: 'a brand new passphrase 42' },
    );
    expect(res.status).toBe(200);
    // Not left open answering every push and pull `unauthorized` (which stopped the SDK's loop).
    expect((await current.closed).code).toBe(4001);
    expect((await stale.closed).code).toBe(4001);
    const renewed = { authorization: `Bearer ${(await res.json<{ accessToken: string }>()).accessToken}` };
    const redialed = await connect(path, renewed);
    await redialed.next((m) => m.type === 'hello');
    redialed.send({ type: 'push', id: 'after', ops: [op('messages', 'm1', message('m1'))] });
    expect(await redialed.next((m) => m.id === 'after')).toMatchObject({ type: 'push-result', serverVersion: 1 });
    redialed.ws.close();
  });

  it('refuses non-members, anonymous callers, foreign origins and plain GETs', async () => {
    const u = await syncUser();
    const stranger = await signedInUser();
    const path = `/api/sync/ws?workspaceId=${u.workspaceId}`;
    expect((await api(path, { headers: { upgrade: 'websocket', ...stranger.headers } })).status).toBe(403);
    expect((await api(path, { headers: { upgrade: 'websocket' } })).status).toBe(401);
    expect((await api(path, { headers: { upgrade: 'websocket', ...u.headers, origin: 'https://evil.example.net' } })).status).toBe(403);
    expect((await api(path, { headers: u.headers })).status).toBe(426);
    expect((await api('/api/sync/ws', { headers: { upgrade: 'websocket', ...u.headers } })).status).toBe(400);
  });

  it('ignores internal x-or3-* headers sent by a client', async () => {
    const u = await syncUser();
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}`, {
      ...u.headers,
      'x-or3-ticket-nonce': 'forged',
      'x-or3-ticket-expires': '9e15',
      'x-or3-user-id': 'someone-else',
    });
    await socket.next((m) => m.type === 'hello');
    const { runInDurableObject } = await import('cloudflare:test');
    const tickets = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      state.storage.sql.exec('SELECT * FROM ws_tickets').toArray(),
    );
    expect(tickets).toEqual([]);
    const owners = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => state.getWebSockets('user:someone-else').length);
    expect(owners).toBe(0);
    socket.ws.close();
  });

  it('accepts a short-lived ticket once, for its workspace only', async () => {
    const u = await syncUser();
    const other = await syncUser();
    const { ticket, expiresAt } = await (
      await call('POST', '/api/sync/ws-ticket', u.headers, { workspaceId: u.workspaceId })
    ).json<{ ticket: string; expiresAt: string }>();
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(60_000);
    expect(
      (await api(`/api/sync/ws?workspaceId=${other.workspaceId}&ticket=${encodeURIComponent(ticket)}`, { headers: { upgrade: 'websocket' } })).status,
    ).toBe(401);
    const socket = await connect(`/api/sync/ws?workspaceId=${u.workspaceId}&ticket=${encodeURIComponent(ticket)}`);
    await socket.next((m) => m.type === 'hello');
    expect((await api(`/api/sync/ws?workspaceId=${u.workspaceId}&ticket=${encodeURIComponent(ticket)}`, { headers: { upgrade: 'websocket' } })).status).toBe(
      403,
    );
    const [body, mac] = ticket.split('.');
    expect((await api(`/api/sync/ws?workspaceId=${u.workspaceId}&ticket=${body}x.${mac}`, { headers: { upgrade: 'websocket' } })).status).toBe(401);
    socket.ws.close();
  });
});
