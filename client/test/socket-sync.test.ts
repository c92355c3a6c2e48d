/** Sync over the socket (docs/sync.md): push and pull on the live socket, HTTP when it is not there or drops — nothing lost or duplicated. */
import { describe, expect, it } from 'vitest';
import type { Or3Workspace, WebSocketLike } from '../src/index';
import { device, engineOf, messageRow, PASSWORD, serverPerFile, uniqueEmail, until } from './harness';

const ctx = serverPerFile();

type Fault = { dropOnSend?: RegExp; dropOnReceive?: RegExp; after?: number };

/** A WebSocket whose transport fails on cue: closes when it sends or receives a matching message. */
function faultySocket(fault: Fault) {
  let seen = 0;
  return class FaultySocket extends WebSocket {
    override send(data: string) {
      if (fault.dropOnSend?.test(String(data)) && ++seen > (fault.after ?? 0)) {
        fault.dropOnSend = undefined;
        super.send(data); // the server got it; the answer is lost with the connection
        return void this.close();
      }
      super.send(data);
    }
    override set onmessage(handler: ((ev: MessageEvent) => void) | null) {
      super.onmessage =
        handler &&
        ((ev: MessageEvent) => {
          if (fault.dropOnReceive?.test(String(ev.data)) && ++seen > (fault.after ?? 0)) {
            fault.dropOnReceive = undefined;
            return void this.close();
          }
          handler(ev);
        });
    }
    override get onmessage() {
      return super.onmessage;
    }
  } as unknown as new (url: string) => WebSocketLike;
}

/** A WebSocket that records every frame it receives. */
function recordingSocket(frames: string[]) {
  return class RecordingSocket extends WebSocket {
    override set onmessage(handler: ((ev: MessageEvent) => void) | null) {
      super.onmessage =
        handler &&
        ((ev: MessageEvent) => {
          frames.push(String(ev.data));
          handler(ev);
        });
    }
    override get onmessage() {
      return super.onmessage;
    }
  } as unknown as new (url: string) => WebSocketLike;
}

/**
 * A WebSocket in front of an older server: a message `refuses` names (with the reason that
 * server gave) is answered `invalid_body` as that server did, and its id recorded in `refused`.
 */
function olderServer(refused: string[], refuses: (msg: { type?: string; [key: string]: unknown }) => string | null) {
  return class OlderServer extends WebSocket {
    #handler: ((ev: MessageEvent) => void) | null = null;
    override send(data: string) {
      const msg = String(data).startsWith('{') ? JSON.parse(String(data)) : null;
      const reason = msg ? refuses(msg) : null;
      if (reason) {
        refused.push(msg.id);
        const reply = { type: 'error', id: msg.id, error: 'invalid_body', message: reason };
        return void setTimeout(() => this.#handler?.(new MessageEvent('message', { data: JSON.stringify(reply) })), 0);
      }
      super.send(data);
    }
    override set onmessage(handler: ((ev: MessageEvent) => void) | null) {
      this.#handler = handler;
      super.onmessage = handler;
    }
    override get onmessage() {
      return super.onmessage;
    }
  } as unknown as new (url: string) => WebSocketLike;
}

/** A server from before `echo`: a push carrying it is refused. */
const serverWithoutEcho = (refused: string[]) => olderServer(refused, (msg) => (msg.type === 'push' && 'echo' in msg ? "Unknown field 'echo'" : null));
/** A server from before the cursor message: it is refused as an unknown type. */
const serverWithoutCursor = (refused: string[]) => olderServer(refused, (msg) => (msg.type === 'cursor' ? 'type: Invalid input' : null));

async function twoDevices(optionsB: Parameters<typeof device>[1] = {}) {
  const email = uniqueEmail();
  const a = device(ctx.server);
  const b = device(ctx.server, optionsB);
  await a.client.basicAuth.register({ email, password: PASSWORD });
  await b.client.basicAuth.signIn(email, PASSWORD);
  const wsA = await a.client.openWorkspace();
  const wsB = await b.client.openWorkspace();
  ctx.open.push(wsA, wsB);
  await until(() => wsA.status.realtime === 'live' && wsB.status.realtime === 'live', 10_000, 'both sockets');
  return { a, b, wsA, wsB };
}

const ids = async (ws: Or3Workspace) => (await ws.db.messages.toArray()).map((m) => m.id).sort();
const httpSync = (calls: string[]) => calls.filter((c) => c === 'POST /api/sync/push' || c === 'POST /api/sync/pull').length;

describe('sync over the socket', () => {
  it('pushes and pulls on the live socket, with no HTTP sync request', async () => {
    const { a, b, wsA, wsB } = await twoDevices();
    const [beforeA, beforeB] = [httpSync(a.calls), httpSync(b.calls)];
    await wsA.db.messages.bulkPut([messageRow('s1'), messageRow('s2')]);
    await wsA.syncNow();
    await wsB.syncNow();
    expect(await ids(wsB)).toEqual(['s1', 's2']);
    expect(wsA.status.pending).toBe(0);
    expect([httpSync(a.calls) - beforeA, httpSync(b.calls) - beforeB]).toEqual([0, 0]);
  });

  it('the pusher hears no echo of its own changes, yet its cursor reaches the head, its rows stop being local edits, and a later remote edit is no conflict', async () => {
    const frames: string[] = [];
    const { b, wsA, wsB } = await twoDevices({ WebSocket: recordingSocket(frames) });
    const conflicts: unknown[] = [];
    wsB.on('conflict', (c) => conflicts.push(c));
    const before = httpSync(b.calls);
    await wsB.db.messages.bulkPut([messageRow('e1', { data: 'echo-test' }), messageRow('e2', { data: 'echo-test' })]);
    await wsB.syncNow();
    const result = frames.map((f) => JSON.parse(f)).find((m) => m.type === 'push-result');
    expect(result?.results.map((r: { applied: boolean }) => r.applied)).toEqual([true, true]);
    // B's cursor is at the head with no pull, and nothing it received repeats its rows.
    expect((await engineOf(wsB).sync.state()).cursor).toBe(result.serverVersion);
    expect(frames.filter((f) => f.includes('echo-test'))).toEqual([]);
    expect(httpSync(b.calls)).toBe(before);
    const revision = await engineOf(wsB).db.revisions.get(['messages', 'e1']);
    expect(revision).toMatchObject({ local: false });
    // A sees them, edits one; B gets the edit as a remote change, not a conflict.
    await until(async () => (await ids(wsA)).includes('e2'), 10_000, 'A to get them');
    await wsA.db.messages.update('e1', { data: 'edited by A' });
    await wsA.syncNow();
    await until(async () => (await wsB.db.messages.get('e1'))?.data === 'edited by A', 10_000, 'B to get the edit');
    expect(conflicts).toEqual([]);
  });

  it('against a server from before `echo`, the push is sent again without it and nothing is refused', async () => {
    const refused: string[] = [];
    const { b, wsA, wsB } = await twoDevices({ WebSocket: serverWithoutEcho(refused) });
    const before = httpSync(b.calls);
    await wsB.db.messages.bulkPut([messageRow('o1'), messageRow('o2')]);
    await wsB.syncNow();
    await wsB.db.messages.put(messageRow('o3'));
    await wsB.syncNow();
    expect(refused).toHaveLength(1); // asked once; later pushes go without the field
    expect(wsB.status.pending).toBe(0);
    expect(wsB.status.failed).toBe(0);
    expect(httpSync(b.calls)).toBe(before);
    await until(async () => (await ids(wsA)).length === 3, 10_000, 'A to get them');
  });

  it('a socket that drops mid-push falls back to HTTP; the op is stored once', async () => {
    const { b, wsA, wsB } = await twoDevices({ WebSocket: faultySocket({ dropOnSend: /"type":"push"/ }) });
    await wsB.db.messages.put(messageRow('once', { data: 'exactly once' }));
    await wsB.syncNow();
    expect(wsB.status.pending).toBe(0);
    expect(b.calls).toContain('POST /api/sync/push'); // the retry went over HTTP
    await wsA.syncNow();
    expect((await wsA.db.messages.get('once'))?.data).toBe('exactly once');
    // Stored once: the server's change log holds one op for the row (the replay was idempotent).
    const log = await ctx.server.env.WORKSPACE.getByName(wsA.id).exportLog(0, 1000, null);
    expect(log.entries.filter((e: { pk: string }) => e.pk === 'once')).toHaveLength(1);
  });

  it('a socket that drops mid-stream (during a page) falls back to HTTP from where it got to; nothing lost or duplicated', async () => {
    const { b, wsA, wsB } = await twoDevices({
      WebSocket: faultySocket({ dropOnReceive: /"type":"changes"/, after: 1 }),
      sync: { pullLimit: 5, pollIntervalMs: 3_600_000, realtimePollIntervalMs: 3_600_000 },
    });
    // B misses the pokes (offline for pushes' pokes is enough: they carry changes only to its cursor).
    await wsA.db.messages.bulkPut(Array.from({ length: 23 }, (_, i) => messageRow(`p${String(i).padStart(2, '0')}`)));
    await wsA.syncNow();
    const engine = engineOf(wsB);
    await engine.sync.pull();
    await until(async () => (await ids(wsB)).length === 23, 10_000, 'B to have every row');
    expect(b.calls).toContain('POST /api/sync/pull'); // finished over HTTP after the drop
    expect((await engine.sync.state()).cursor).toBe(23);
  });
});

describe("the device's cursor over the socket", () => {
  const cursorPosts = (calls: string[]) => calls.filter((c) => c === 'POST /api/sync/update-cursor').length;

  it('is reported on the live socket (answered cursor-result), with no HTTP request', async () => {
    const frames: string[] = [];
    const { a, b, wsA, wsB } = await twoDevices({ WebSocket: recordingSocket(frames) });
    const before = cursorPosts(b.calls);
    await wsA.db.messages.bulkPut([messageRow('k1')]);
    await wsA.syncNow();
    await wsB.syncNow();
    expect(await ids(wsB)).toEqual(['k1']);
    await until(() => frames.some((f) => f.includes('"cursor-result"')), 10_000, 'the cursor answered on the socket');
    expect(cursorPosts(b.calls)).toBe(before);
    expect(cursorPosts(a.calls)).toBe(0);
  });

  it('goes over HTTP when the server does not know the message, and stays there', async () => {
    const refused: string[] = [];
    const { b, wsA, wsB } = await twoDevices({ WebSocket: serverWithoutCursor(refused) });
    await wsA.db.messages.bulkPut([messageRow('k2')]);
    await wsA.syncNow();
    await wsB.syncNow();
    await until(() => cursorPosts(b.calls) === 1, 10_000, 'the cursor over HTTP');
    await wsA.db.messages.bulkPut([messageRow('k3')]);
    await wsA.syncNow();
    await wsB.syncNow();
    await until(() => cursorPosts(b.calls) === 2, 10_000, 'the next cursor over HTTP');
    expect(refused).toHaveLength(1);
  });
});
