/**
 * The bound on a revocation the workspace's object never hears of (docs/security.md): the object
 * trusts what it cached for OR3_AUTH_CACHE_TTL_SECONDS, read from its own configuration, so these
 * tests run in the `worker-limits` project, whose runtime sets it to 1 s (vitest.config.ts).
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, oidcProvider, signedInUser, userRows } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { message, op, openSocket, pushOk, syncUser } from '../sync/helpers';
import { upsertMember } from '../../src/workspace-records/member-writes';

describe('open sockets and out-of-band revocations (SECURITY.md §7 cases 42, 43)', () => {
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const connect = async (u: { headers: Record<string, string> }, workspaceId: string, vars: Record<string, string> = {}, query = '') => {
    const socket = await openSocket(
      await apiWithEnv(vars, `/api/sync/ws?workspaceId=${workspaceId}&deviceId=d-${crypto.randomUUID().slice(0, 8)}${query}`, {
        headers: { upgrade: 'websocket', ...u.headers },
      }),
    );
    await socket.next((m) => m.type === 'hello');
    return socket;
  };

  it('a member removed in the workspace object, a user disabled or a session revoked in the user object without telling the access cache hears no poke with data and no presence past the bound, and is closed', async () => {
    const owner = await syncUser();
    const [removed, disabled, revoked] = [await signedInUser(), await signedInUser(), await signedInUser()];
    for (const u of [removed, disabled, revoked]) await upsertMember(env, owner.workspaceId, u.id, 'editor');
    const sockets = [await connect(removed, owner.workspaceId), await connect(disabled, owner.workspaceId), await connect(revoked, owner.workspaceId)];
    const watcher = await connect(owner, owner.workspaceId);
    // Everyone hears data and presence while access holds.
    await pushOk(owner, owner.workspaceId, [op('messages', 'open', message('open'))]);
    for (const s of sockets) expect(await s.next((m) => m.type === 'poke' && m.changes?.[0]?.pk === 'open')).toBeTruthy();
    sockets[0]!.send({ type: 'presence', state: { typing: true } });
    await watcher.next((m) => m.type === 'presence' && m.userId === removed.id);

    // Revoked behind the workspace object's back (the invalidation lost): no message reaches it.
    await runInDurableObject(env.WORKSPACE.getByName(owner.workspaceId), (_i, state) => {
      state.storage.sql.exec('DELETE FROM roster_members WHERE user_id = ?', removed.id);
    });
    await userRows(disabled.id, 'UPDATE facts SET disabled = 1');
    await userRows(revoked.id, 'UPDATE sessions SET revoked_at = ?', Date.now());
    await wait(1_100);
    // Presence from a revoked socket is not heard; the owner's presence and data do not reach them.
    sockets[2]!.send({ type: 'presence', state: { secret: 'from-revoked' } });
    watcher.send({ type: 'presence', state: { secret: 'presence-after' } });
    await pushOk(owner, owner.workspaceId, [op('messages', 'secret', message('secret'))]);
    const codes = await Promise.all(sockets.map((s) => s.closed));
    expect(codes.map((c) => c.code)).toEqual([4003, 4001, 4001]);
    for (const s of sockets) {
      const heard = JSON.stringify(s.messages);
      expect(heard).not.toContain('"secret"');
      expect(heard).not.toContain('presence-after');
    }
    await wait(200);
    expect(JSON.stringify(watcher.messages)).not.toContain('from-revoked');
    watcher.ws.close();
  });

  it("a disabled federated user's ticket socket is refused within the bound: pushes fail and the socket closes", async () => {
    const idp = await oidcProvider('https://idp.ticket.example.com');
    const vars = idp.vars;
    const jwt = await idp.token(`fed-${crypto.randomUUID()}`);
    const headers = { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' };
    const { session } = await (await apiWithEnv(vars, '/api/auth/session', { headers })).json<any>();
    const workspaceId = session.workspace.id as string;
    const { ticket } = await (await apiWithEnv(vars, '/api/sync/ws-ticket', { method: 'POST', headers, body: JSON.stringify({ workspaceId }) })).json<any>();
    // The ticket socket carries no other credential (a browser's WebSocket cannot set headers).
    const socket = await connect({ headers: {} }, workspaceId, vars, `&ticket=${encodeURIComponent(ticket)}`);
    socket.send({ type: 'push', id: 'p1', ops: [op('messages', 'before', message('before'))] });
    expect(await socket.next((m) => m.id === 'p1')).toMatchObject({ type: 'push-result' });

    // Disabled in the user's object without it telling the workspace (the invalidation lost).
    await userRows(session.user.id, 'UPDATE facts SET disabled = 1');
    await wait(1_100);
    socket.send({ type: 'push', id: 'p2', ops: [op('messages', 'after', message('after'))] });
    expect(await socket.next((m) => m.id === 'p2')).toMatchObject({ type: 'error', error: 'unauthorized' });
    // And the next thing the workspace delivers closes it instead.
    const other = await syncUser();
    await upsertMember(env, workspaceId, other.id, 'editor');
    await pushOk(other, workspaceId, [op('messages', 'later', message('later'))]);
    expect((await socket.closed).code).toBe(4001);
    expect(JSON.stringify(socket.messages)).not.toContain('"later"');
  });
});

describe('revocation within the bound', () => {
  it('a revocation the workspace object never hears of (made in the user object directly) stops a cached session within the bound, and not before', async () => {
    const u = await syncUser();
    const pull = () => call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 });
    expect((await pull()).status).toBe(200);
    await userRows(u.id, 'UPDATE sessions SET revoked_at = ?', Date.now());
    // Still trusted from the cache: the object was not told.
    expect((await pull()).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await pull()).status).toBe(401);
  });

  it('a demotion the access cache never hears of (written to the members directly): access ends within the bound', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    const admin = await signedInUser({ isAdmin: true });
    const adminPut = (role: string, overrides: Record<string, unknown> = {}) =>
      apiWithEnv(overrides, `/api/admin/workspaces/${owner.workspaceId}/members/${member.id}`, {
        method: 'PUT',
        headers: { ...admin.headers, 'x-or3-admin-intent': 'admin', 'content-type': 'application/json' },
        body: JSON.stringify({ role }),
      });
    expect((await adminPut('editor')).status).toBe(200);
    const push = () =>
      apiWithEnv({}, '/api/sync/push', {
        method: 'POST',
        headers: { ...member.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ scope: { workspaceId: owner.workspaceId }, ops: [op('messages', crypto.randomUUID(), undefined, { operation: 'delete' })] }),
      });
    expect((await push()).status).toBe(200);
    // Demoted to viewer in the members' table itself, behind the cache's back.
    await runInDurableObject(env.WORKSPACE.getByName(owner.workspaceId), (_i, state) => {
      state.storage.sql.exec("UPDATE roster_members SET role = 'viewer' WHERE user_id = ?", member.id);
    });
    expect((await push()).status).toBe(200); // the object still trusts what it cached
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await push()).status).toBe(403);
  });
});
