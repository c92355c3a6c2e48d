import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
/** docs/sync.md "Sync over the socket": push and pull as messages on the workspace's WebSocket, with the HTTP routes' rules. */
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser } from '../auth/helpers';
import { api } from '../helpers';
import { message, op, openSocket as open, pull, syncUser } from './helpers';

const connect = async (u: { headers: Record<string, string>; workspaceId: string }) => {
  const socket = await open(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
  await socket.next((m) => m.type === 'hello');
  return socket;
};

describe('push over the socket', () => {
  it('answers push-result with one result per op, as HTTP does; a replay returns the original versions', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    const ops = [
      op('threads', 't1', { id: 't1', status: 'ready', deleted: false, pinned: false, created_at: 1, updated_at: 1, clock: 1 }),
      op('messages', 'm1', message('m1')),
    ];
    socket.send({ type: 'push', id: 'p1', ops });
    const reply = await socket.next((m) => m.type === 'push-result' && m.id === 'p1');
    expect(reply).toEqual({
      type: 'push-result',
      id: 'p1',
      results: ops.map((o, i) => ({ opId: o.stamp.opId, success: true, serverVersion: i + 1, applied: true })),
      serverVersion: 2,
    });
    socket.send({ type: 'push', id: 'p2', ops });
    expect(await socket.next((m) => m.id === 'p2')).toMatchObject({
      type: 'push-result',
      serverVersion: 2,
      results: [{ serverVersion: 1 }, { serverVersion: 2 }],
    });
    // The same data HTTP sees.
    expect((await pull(u, u.workspaceId, 0)).changes.map((c) => c.pk)).toEqual(['t1', 'm1']);
    socket.ws.close();
  });

  it('takes a larger batch than HTTP (150 ops) but refuses more than 1000, and validates like HTTP', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    socket.send({ type: 'push', id: 'big', ops: Array.from({ length: 150 }, (_, i) => op('messages', `b${i}`, message(`b${i}`))) });
    expect(await socket.next((m) => m.id === 'big')).toMatchObject({ type: 'push-result', serverVersion: 150 });
    socket.send({ type: 'push', id: 'huge', ops: Array.from({ length: 1001 }, (_, i) => op('messages', `h${i}`, message(`h${i}`))) });
    expect(await socket.next((m) => m.id === 'huge')).toMatchObject({
      type: 'error',
      status: 400,
      error: 'invalid_body',
      message: expect.stringContaining('at most 1000 ops'),
    });
    socket.send({ type: 'push', id: 'bad', ops: [op('messages', 'x', { id: 'x' })] });
    expect(await socket.next((m) => m.id === 'bad')).toMatchObject({
      type: 'error',
      error: 'invalid_payload',
      message: expect.stringMatching(/^Invalid payload for messages: /),
    });
    socket.send({ type: 'push', id: 'uuid', ops: [op('messages', 'y', message('y'), { opId: 'not-a-uuid' })] });
    expect(await socket.next((m) => m.id === 'uuid')).toMatchObject({ type: 'error', error: 'invalid_body' });
    socket.send({ type: 'wat', id: 'x' });
    // Nothing of the refused batches was stored, and the socket is still up.
    expect((await pull(u, u.workspaceId, 150)).changes).toEqual([]);
    socket.send({ type: 'push', id: 'after', ops: [op('messages', 'z', message('z'))] });
    expect(await socket.next((m) => m.id === 'after')).toMatchObject({ type: 'push-result', serverVersion: 151 });
    socket.ws.close();
  });
});

describe('pull over the socket', () => {
  it('streams compacted pages until the head, never more than `window` ahead of the last ack', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    const pk = (i: number) => `m${String(i).padStart(2, '0')}`;
    socket.send({ type: 'push', id: 'seed', ops: Array.from({ length: 25 }, (_, i) => op('messages', pk(i), message(pk(i)))) });
    expect(await socket.next((m) => m.id === 'seed')).toMatchObject({ type: 'push-result', serverVersion: 25 });
    // m00 edited twice more: one change for it, at its last version.
    socket.send({
      type: 'push',
      id: 'edits',
      ops: [1, 2].map((c) => op('messages', 'm00', message('m00', { data: `edit ${c}`, clock: c + 1 }), { clock: c + 1 })),
    });
    await socket.next((m) => m.id === 'edits');
    socket.send({ type: 'pull', id: 's1', cursor: 0, limit: 5, window: 2 });
    const pages = () => socket.messages.filter((m) => m.type === 'changes' && m.id === 's1');
    const settle = () => new Promise((r) => setTimeout(r, 200));
    await socket.next(() => pages().length === 2, 'two pages');
    await settle();
    expect(pages()).toHaveLength(2); // the window is full until the client acknowledges
    socket.send({ type: 'ack', id: 's1', cursor: pages()[0].nextCursor });
    await socket.next(() => pages().length === 3);
    await settle();
    expect(pages()).toHaveLength(3); // one page acknowledged, one more sent
    while (pages().at(-1).hasMore) {
      const seen = pages().length;
      socket.send({ type: 'ack', id: 's1', cursor: pages().at(-1).nextCursor });
      await socket.next(() => pages().length > seen);
    }
    expect(pages().at(-1)).toMatchObject({ requiresSnapshot: false, oldestRetainedVersion: 1, nextCursor: 27 });
    // The same changes, in the same order, as HTTP pull serves them.
    const streamed = pages().flatMap((p) => p.changes);
    const viaHttp = (await pull(u, u.workspaceId, 0, { limit: 1000 })).changes;
    expect(streamed).toEqual(viaHttp);
    expect(streamed.filter((c: any) => c.pk === 'm00')).toEqual([
      expect.objectContaining({ serverVersion: 27, payload: expect.objectContaining({ data: 'edit 2' }) }),
    ]);
    socket.ws.close();
  });
});

describe('per-socket memory (SECURITY.md §7 case 45)', () => {
  it('re-sending pull never resets what the socket owes: past 16 MiB of unacknowledged pages the socket is closed (1008)', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    const big = 'x'.repeat(250_000);
    socket.send({ type: 'push', id: 'seed', ops: Array.from({ length: 20 }, (_, i) => op('messages', `b${i}`, message(`b${i}`, { data: big }))) });
    expect(await socket.next((m) => m.id === 'seed')).toMatchObject({ type: 'push-result', serverVersion: 20 });
    // A client that never acknowledges and keeps asking again: each pull would fill a new window.
    for (let i = 0; i < 8; i++) socket.send({ type: 'pull', id: `again-${i}`, cursor: 0, limit: 1, window: 16 });
    expect((await socket.closed).code).toBe(1008);
    const pages = socket.messages.filter((m) => m.type === 'changes');
    const bytes = pages.reduce((n, p) => n + JSON.stringify(p).length, 0);
    // Bounded by the cap plus one page, whatever the number of pulls.
    expect(bytes).toBeLessThanOrEqual(16 * 1024 * 1024 + 300_000);
    expect(pages.length).toBeLessThan(8 * 16);
  });

  it('a well-behaved stream that acknowledges is never closed, however much it pulls', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    const big = 'y'.repeat(250_000);
    socket.send({ type: 'push', id: 'seed', ops: Array.from({ length: 20 }, (_, i) => op('messages', `c${i}`, message(`c${i}`, { data: big }))) });
    await socket.next((m) => m.id === 'seed');
    for (let round = 0; round < 6; round++) {
      const id = `round-${round}`;
      socket.send({ type: 'pull', id, cursor: 0, limit: 1, window: 4 });
      for (;;) {
        const seen = socket.messages.filter((m) => m.id === id).length;
        const page = await socket.next((m) => m.id === id && socket.messages.filter((x) => x.id === id).indexOf(m) === seen, `page ${seen} of ${id}`);
        if (!page.hasMore) break;
        socket.send({ type: 'ack', id, cursor: page.nextCursor });
      }
    }
    socket.send({ type: 'push', id: 'still', ops: [op('messages', 'still', message('still'))] });
    expect(await socket.next((m) => m.id === 'still')).toMatchObject({ type: 'push-result' });
    socket.ws.close();
  });
});

describe('large frames are screened before they are parsed (SECURITY.md §7 case 48)', () => {
  // A frame that would take work to parse: the answer shows whether the object checked who and
  // how often first (a parse would answer invalid_body; the screen answers with the role or rate).
  const heavy = (id: string) => `{"type":"push","id":"${id}","ops":[${'{"x":1},'.repeat(20_000)}{"unterminated":`;

  it("a viewer's large frame is refused for the role, unparsed, with its id, and ends the socket (1008)", async () => {
    const owner = await syncUser();
    const viewer = await signedInUser();
    await upsertMember(env, owner.workspaceId, viewer.id, 'viewer');
    const socket = await connect({ headers: viewer.headers, workspaceId: owner.workspaceId });
    // Small frames are parsed and answered; a small refused push leaves the socket up.
    socket.send({ type: 'push', id: 'small-push', ops: [op('messages', 's1', message('s1'))] });
    expect(await socket.next((m) => m.id === 'small-push')).toMatchObject({ type: 'error', status: 403, error: 'insufficient_role' });
    socket.send({ type: 'pull', id: 'small', cursor: 0 });
    expect(await socket.next((m) => m.id === 'small')).toMatchObject({ type: 'changes' });
    // A large one is answered, then the socket is closed: one such frame per socket, not a stream.
    socket.send(heavy('big-1'));
    socket.send(heavy('big-2'));
    expect(await socket.next((m) => m.type === 'error' && m.id === 'big-1')).toMatchObject({ status: 403, error: 'insufficient_role' });
    expect((await socket.closed).code).toBe(1008);
    expect(socket.messages.filter((m) => m.id === 'big-2')).toEqual([]);
  });
});

describe('authorization and limits per message', () => {
  it('a viewer may pull but not push; a role change through the API applies to the very next message', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    const { inviteToken } = await (await call('POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.headers, { role: 'editor' })).json<any>();
    expect((await call('POST', '/api/workspaces/invites/accept', member.headers, { inviteToken })).status).toBe(200);
    const socket = await connect({ headers: member.headers, workspaceId: owner.workspaceId });
    socket.send({ type: 'push', id: 'e1', ops: [op('messages', 'a', message('a'))] });
    expect(await socket.next((m) => m.id === 'e1')).toMatchObject({ type: 'push-result' });
    expect((await call('PUT', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers, { role: 'viewer' })).status).toBe(200);
    socket.send({ type: 'push', id: 'v1', ops: [op('messages', 'b', message('b'))] });
    expect(await socket.next((m) => m.id === 'v1')).toMatchObject({ type: 'error', status: 403, error: 'insufficient_role' });
    socket.send({ type: 'pull', id: 'v2', cursor: 0 });
    expect(await socket.next((m) => m.id === 'v2')).toMatchObject({ type: 'changes', changes: [expect.objectContaining({ pk: 'a' })] });
    // Removed: the socket is closed (4003); nothing more is served.
    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await socket.closed).code).toBe(4003);
  });
});

describe('the device cursor over the socket', () => {
  const cursors = (workspaceId: string) =>
    runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_o, state) =>
      state.storage.sql.exec<{ device_id: string; user_id: string; version: number }>('SELECT device_id, user_id, version FROM device_cursors').toArray(),
    );

  it("records it as HTTP update-cursor does: a viewer may, another user's device is refused with its status, bad input is 400", async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, owner.workspaceId, member.id, 'viewer');
    const mine = await connect(owner);
    mine.send({ type: 'cursor', id: 'c1', deviceId: 'laptop', version: 0 });
    expect(await mine.next((m) => m.id === 'c1')).toEqual({ type: 'cursor-result', id: 'c1' });
    const theirs = await connect({ headers: member.headers, workspaceId: owner.workspaceId });
    theirs.send({ type: 'cursor', id: 'c2', deviceId: 'phone', version: 0 });
    expect(await theirs.next((m) => m.id === 'c2')).toEqual({ type: 'cursor-result', id: 'c2' });
    theirs.send({ type: 'cursor', id: 'c3', deviceId: 'laptop', version: 0 });
    expect(await theirs.next((m) => m.id === 'c3')).toMatchObject({ type: 'error', status: 403, error: 'device_owned' });
    for (const [id, bad] of [
      ['b1', { deviceId: '', version: 1 }],
      ['b2', { deviceId: 'laptop', version: -1 }],
      ['b3', { deviceId: 'laptop' }],
      ['b4', { deviceId: 'laptop', version: 1, scope: { workspaceId: owner.workspaceId } }],
    ] as const) {
      mine.send({ type: 'cursor', id, ...bad });
      expect(await mine.next((m) => m.id === id)).toMatchObject({ type: 'error', status: 400, error: 'invalid_body' });
    }
    expect((await cursors(owner.workspaceId)).sort((a, b) => a.device_id.localeCompare(b.device_id))).toEqual([
      { device_id: 'laptop', user_id: owner.id, version: 0 },
      { device_id: 'phone', user_id: member.id, version: 0 },
    ]);
    mine.ws.close();
    theirs.ws.close();
  }, 30_000); // two users, two sockets, eight requests: more than the default 5 s on a loaded machine
});
