/**
 * Sync's per-user rate limits over HTTP and the socket (docs/sync.md "Limits"). The workspace's
 * object reads them from its own configuration, so this project's runtime sets small ones for
 * everyone: push 2, pull 2 and update-cursor 1 per minute (vitest.config.ts, `worker-rates`).
 * Fixed windows: at a minute's edge a count may reset once, which each test allows for.
 */
import { describe, expect, it } from 'vitest';
import { api } from '../helpers';
import { message, op, openSocket, syncUser } from '../sync/helpers';

const connect = async (u: { headers: Record<string, string>; workspaceId: string }) => {
  const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
  await socket.next((m) => m.type === 'hello');
  return socket;
};

/** A push frame above the screening size (64 KiB) that is not valid JSON. */
const heavy = (id: string) => `{"type":"push","id":"${id}","ops":[${'{"x":1},'.repeat(20_000)}{"unterminated":`;

describe('sync rate limits from the configuration', () => {
  it('HTTP pull: OR3_RATE_LIMIT_OVERRIDES_JSON applies, the first two pass and then 429 with retry-after', async () => {
    const u = await syncUser();
    const pullOnce = () =>
      api('/api/sync/pull', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ scope: { workspaceId: u.workspaceId }, cursor: 0 }),
      });
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await pullOnce());
    expect(replies.slice(0, 2).map((r) => r.status)).toEqual([200, 200]);
    const limited = replies.find((r) => r.status === 429);
    expect(limited).toBeDefined();
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited?.json()).toMatchObject({ error: 'rate_limited' });
  });

  it('socket pushes count against the same per-minute limit as HTTP, answering rate_limited with retryAfter', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    for (const id of ['r1', 'r2', 'r3']) socket.send({ type: 'push', id, ops: [op('messages', id, message(id))] });
    const third = await socket.next((m) => m.id === 'r3');
    if (third.type !== 'error') {
      socket.send({ type: 'push', id: 'r4', ops: [op('messages', 'r4', message('r4'))] });
      socket.send({ type: 'push', id: 'r5', ops: [op('messages', 'r5', message('r5'))] });
    }
    const refused = third.type === 'error' ? third : await socket.next((m) => m.type === 'error');
    expect(refused).toMatchObject({ status: 429, error: 'rate_limited', message: expect.stringMatching(/^Rate limit exceeded\. Retry after \d+s$/) });
    expect(refused.retryAfter).toBeGreaterThan(0);
    socket.ws.close();
  });

  it("a rate-limited user's large frame is refused for the rate, unparsed; within the rate it is parsed (and refused as invalid)", async () => {
    const u = await syncUser();
    const socket = await connect(u);
    socket.send(heavy('first'));
    expect(await socket.next((m) => m.id === 'first')).toMatchObject({ type: 'error', error: 'invalid_body' });
    // Use up the rate with small pushes (the unparsable frame above counted nothing or one).
    for (let i = 0; i < 4; i++) {
      const id = `small-${i}`;
      socket.send({ type: 'push', id, ops: [op('messages', id, message(id))] });
      if ((await socket.next((m) => m.id === id)).type === 'error') break;
    }
    socket.send(heavy('second'));
    expect(await socket.next((m) => m.id === 'second')).toMatchObject({ type: 'error', error: 'rate_limited' });
    socket.ws.close();
  });

  it('socket cursor messages count against the update-cursor limit, as HTTP does', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    for (const id of ['k1', 'k2', 'k3']) socket.send({ type: 'cursor', id, deviceId: 'laptop', version: 0 });
    const replies = [await socket.next((m) => m.id === 'k1'), await socket.next((m) => m.id === 'k2'), await socket.next((m) => m.id === 'k3')];
    expect(replies.filter((r) => r.type === 'error')).toEqual(expect.arrayContaining([expect.objectContaining({ status: 429, error: 'rate_limited' })]));
    socket.ws.close();
  });

  it('a socket pull stream counts once against the pull limit, however many pages it takes; the next pull messages are counted', async () => {
    const u = await syncUser();
    const socket = await connect(u);
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    socket.send({ type: 'push', id: 'rows', ops: ids.map((id) => op('messages', id, message(id))) });
    expect(await socket.next((m) => m.id === 'rows')).toMatchObject({ type: 'push-result' });
    // Six pages of one change, two in flight at a time: more pages than the limit of 2 per minute.
    socket.send({ type: 'pull', id: 'boot', cursor: 0, limit: 1, window: 2 });
    const pages = () => socket.messages.filter((m) => m.type === 'changes' && m.id === 'boot');
    await socket.next(() => pages().length === 2, 'two pages');
    while (pages().at(-1).hasMore) {
      const seen = pages().length;
      socket.send({ type: 'ack', id: 'boot', cursor: pages().at(-1).nextCursor });
      await socket.next((m) => pages().length > seen || (m.type === 'error' && m.id === 'boot'));
      expect(socket.messages.filter((m) => m.type === 'error')).toEqual([]);
    }
    expect(pages().flatMap((p) => p.changes.map((c: { pk: string }) => c.pk))).toEqual(ids);
    // Further pull messages count: with the stream's one, the limit of 2 is reached within a few.
    for (const id of ['p1', 'p2', 'p3']) socket.send({ type: 'pull', id, cursor: 0, limit: 1, window: 1 });
    expect(await socket.next((m) => m.type === 'error')).toMatchObject({ status: 429, error: 'rate_limited' });
    socket.ws.close();
  });
});
