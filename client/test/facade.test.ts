/** The SDK's public surface: the names it exports, the members of its objects, the status value through its phases, signedOut. */
import { describe, expect, it, vi } from 'vitest';
import * as sdk from '../src/index';
import type { SyncStatus, WebSocketLike } from '../src/index';
import { basicAuthOf, device, internalsOf, messageRow, PASSWORD, serverPerFile, uniqueEmail, until } from './harness';

const ctx = serverPerFile();

/** An object's public members: own enumerable properties and its class's methods and getters (never #private ones). */
const members = (obj: object) => {
  const proto = Object.getPrototypeOf(obj);
  const inherited = proto === Object.prototype ? [] : Object.getOwnPropertyNames(proto).filter((n) => n !== 'constructor');
  return [...new Set([...Object.keys(obj), ...inherited])].sort();
};

async function opened(options: Parameters<typeof device>[1] = {}) {
  const d = device(ctx.server, options);
  await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
  const ws = await d.client.openWorkspace();
  ctx.open.push(ws);
  return { d, ws };
}

describe('the public surface', () => {
  it('exports only the public names', () => {
    expect(Object.keys(sdk).sort()).toEqual(['ExternalTokenAuth', 'Or3Error', 'createOr3Client', 'memoryTokenStore']);
  });

  it('a workspace shows only db, on, status, syncNow, upload, files.get, presence, failed-op handling and close', async () => {
    const { d, ws } = await opened();
    expect(members(ws)).toEqual([
      'close',
      'db',
      'deviceId',
      'discardFailedOps',
      'failedOps',
      'files',
      'id',
      'on',
      'presence',
      'retryFailedOps',
      'status',
      'syncNow',
      'upload',
      'userId',
    ]);
    expect(members(ws.files)).toEqual(['get']);
    expect(members(ws.presence)).toEqual(['roster', 'set', 'state', 'typing']);
    expect(members(d.client)).toEqual(['basicAuth', 'cachedSession', 'close', 'deviceId', 'forgetSession', 'on', 'openWorkspace', 'session', 'workspaces']);
    expect(members(d.client.basicAuth)).toEqual(['refresh', 'register', 'signIn', 'signOut']);
    expect(members(d.client.workspaces)).toEqual(['acceptInvite', 'create', 'invite', 'list', 'members', 'removeMember', 'setActive', 'setRole']);
    // The engine is out of reach, and the status is a frozen value.
    for (const name of ['sync', 'clock', 'client', 'http', 'realtime']) expect(name in ws || name in d.client).toBe(false);
    expect(Object.isFrozen(ws.status)).toBe(true);
    expect(Object.keys(ws.status).sort()).toEqual(['error', 'failed', 'hasSynced', 'lastSyncedAt', 'pending', 'phase', 'realtime', 'realtimeReason']);
  });
});

describe('a runtime without WebSocket (Node 20)', () => {
  it('reports realtime unavailable with a reason and warns once, instead of polling silently', async () => {
    const global = globalThis as { WebSocket?: unknown };
    const saved = global.WebSocket;
    const warnings: string[] = [];
    const warn = vi.spyOn(console, 'warn').mockImplementation((text: unknown) => void warnings.push(String(text)));
    // The harness's device is made while WebSocket exists (it subclasses it); the SDK looks at open.
    const [d1, d2] = [device(ctx.server, { WebSocket: undefined }), device(ctx.server, { WebSocket: undefined })];
    for (const d of [d1, d2]) await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    delete global.WebSocket;
    try {
      const ws = await d1.client.openWorkspace();
      const second = { ws: await d2.client.openWorkspace() };
      ctx.open.push(ws, second.ws);
      expect(ws.status.realtime).toBe('unavailable');
      expect(ws.status.realtimeReason).toMatch(/no global WebSocket.*WebSocket option/);
      expect(warnings.filter((w) => w.includes('no global WebSocket'))).toHaveLength(1);
      // Still syncs (by polling), and stays 'unavailable' rather than flipping to off or live.
      await ws.db.messages.put(messageRow('m-no-ws'));
      await until(() => ws.status.pending === 0 && ws.status.phase === 'idle');
      expect(ws.status.realtime).toBe('unavailable');
      expect(second.ws.status.realtime).toBe('unavailable');
    } finally {
      global.WebSocket = saved;
      warn.mockRestore();
    }
  });

  it('takes a WebSocket class as an option and goes live with it', async () => {
    const { ws } = await opened({ WebSocket: globalThis.WebSocket as unknown as new (url: string) => WebSocketLike });
    await until(() => ws.status.realtime === 'live');
    expect(ws.status.realtimeReason).toBeNull();
  });
});

describe('the status value', () => {
  it('goes offline → syncing → idle → error, each field consistent with the others', async () => {
    // HTTP faults drive the phases here: sync over the socket is off.
    const { d, ws } = await opened({ sync: { backoff: { baseMs: 50, maxMs: 100 }, socketSync: false } });
    const seen: SyncStatus[] = [];
    ws.on('status', (s) => {
      expect(s).toBe(ws.status); // the event carries the current value
      seen.push(s);
    });
    await until(() => ws.status.realtime === 'live', 10_000, 'the socket');
    await ws.syncNow();
    expect(ws.status).toMatchObject({ phase: 'idle', pending: 0, failed: 0, hasSynced: true, error: null });
    const firstSync = ws.status.lastSyncedAt!;
    expect(firstSync).toBeGreaterThan(Date.now() - 60_000);

    // Offline: the write waits, the socket is down, and the status says so without contradiction.
    d.online = false;
    await ws.db.messages.put(messageRow('m1'));
    await until(() => ws.status.phase === 'offline' && ws.status.pending === 1, 5_000, 'offline with one pending');
    expect(ws.status.realtime).not.toBe('live');
    expect(ws.status.error?.status).toBe(0);
    expect(ws.status.lastSyncedAt).toBe(firstSync);

    // Back: syncing, then idle with nothing pending.
    d.online = true;
    await ws.syncNow();
    expect(ws.status).toMatchObject({ phase: 'idle', pending: 0, error: null, hasSynced: true });
    expect(ws.status.lastSyncedAt!).toBeGreaterThan(firstSync);

    // A server failure: error, with the error; transient, so the loop retries and recovers.
    await until(() => ws.status.realtime === 'live', 10_000, 'the socket again');
    d.faults = ({ path }) => (path === '/api/sync/pull' ? { status: 503 } : null);
    const recovered = ws.syncNow();
    await until(() => ws.status.phase === 'error', 5_000, 'error');
    expect(ws.status.error).toMatchObject({ status: 503, transient: true });
    d.faults = null;
    await recovered;
    expect(ws.status).toMatchObject({ phase: 'idle', error: null });

    // A permanent refusal: error until the app asks again.
    d.faults = ({ path }) => (path === '/api/sync/pull' ? { status: 403 } : null);
    await expect(ws.syncNow()).rejects.toMatchObject({ status: 403 });
    expect(ws.status).toMatchObject({ phase: 'error', error: { status: 403, transient: false } });

    const phases = seen.map((s) => s.phase).filter((p, i, all) => p !== all[i - 1]);
    expect(phases.join(' ')).toMatch(/offline .*syncing idle .*error .*idle .*error$/);
    // Never offline with a live socket, never an error outside `error` and `offline`.
    expect(seen.filter((s) => s.phase === 'offline' && s.realtime === 'live')).toEqual([]);
    expect(seen.filter((s) => s.error !== null && s.phase !== 'error' && s.phase !== 'offline')).toEqual([]);
    d.faults = null;
  });

  it('requests failing while the socket is live are an error, not offline (the network works)', async () => {
    // The plain WebSocket: it stays up when this device's fetch fails.
    const { d, ws } = await opened({ WebSocket: globalThis.WebSocket as unknown as new (url: string) => WebSocketLike, sync: { socketSync: false } });
    await until(() => ws.status.realtime === 'live', 10_000, 'the socket');
    const seen: SyncStatus[] = [];
    ws.on('status', (s) => seen.push(s));
    d.faults = ({ path }) => (path === '/api/sync/push' ? 'drop-before' : null);
    await ws.db.messages.put(messageRow('m1'));
    await until(() => ws.status.phase === 'error', 5_000, 'error');
    expect(ws.status).toMatchObject({ realtime: 'live', error: { status: 0, code: 'network' } });
    expect(seen.filter((s) => s.phase === 'offline')).toEqual([]);
    d.faults = null;
    await ws.syncNow();
  });

  it('opens one socket: a round that finishes while the socket is still opening does not replace it', async () => {
    const { d, ws } = await opened();
    await until(() => ws.status.realtime === 'live', 10_000, 'the socket');
    await ws.syncNow();
    await new Promise((r) => setTimeout(r, 300));
    expect(d.calls.filter((c) => c === 'POST /api/sync/ws-ticket')).toHaveLength(1);
    expect(ws.status.realtime).toBe('live');
  });

  it('remembers a full sync across a reopen (hasSynced, lastSyncedAt) and counts refused writes', async () => {
    // Over HTTP only: the refusal is injected into HTTP pushes, and a socket that went live
    // before the push would carry it instead (a race that once failed this test in CI).
    const { d, ws } = await opened({ sync: { socketSync: false } });
    await ws.syncNow();
    const at = ws.status.lastSyncedAt;
    await ws.close();
    const again = await d.client.openWorkspace(ws.id);
    ctx.open.push(again);
    expect(again.status).toMatchObject({ hasSynced: true, lastSyncedAt: at });
    d.faults = ({ path }) => (path === '/api/sync/push' ? { status: 403 } : null);
    await again.db.messages.put(messageRow('refused'));
    await again.syncNow();
    expect(again.status).toMatchObject({ pending: 0, failed: 1, phase: 'idle' });
    expect((await again.failedOps()).map((o) => [o.pk, o.error.code])).toEqual([['refused', 'injected']]);
    d.faults = null;
  });
});

describe('signedOut', () => {
  it('is an event of the client, emitted when the server refuses a refresh', async () => {
    const d = device(ctx.server, { tokenStore: sdk.memoryTokenStore() });
    await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    const events: unknown[] = [];
    d.client.on('signedOut', (e) => events.push(e));
    // The session ends elsewhere (another tab signed out): the next refresh is refused.
    await internalsOf(d.client).http.request('POST', '/api/basic-auth/sign-out');
    await basicAuthOf(d.client).expireAccessToken();
    await expect(d.client.workspaces.list()).rejects.toMatchObject({ status: 401 });
    expect(events).toEqual([{ reason: 'refresh_refused' }]);
    expect('onSignedOut' in d.client.basicAuth).toBe(false);
  });
});
