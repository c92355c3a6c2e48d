/** Presence on the workspace socket: fan-out, the roster, leaving, limits, access, hibernation, and what is never kept. */
import { env } from 'cloudflare:workers';
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PRESENCE } from '../../protocol/socket';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser } from '../auth/helpers';
import { api } from '../helpers';
import { message, op, openSocket, pushOk, syncUser, type TestSocket } from './helpers';

const connect = async (workspaceId: string, user: { headers: Record<string, string> }, deviceId?: string, headers: Record<string, string> = {}) => {
  const query = deviceId === undefined ? '' : `&deviceId=${encodeURIComponent(deviceId)}`;
  const socket = await openSocket(
    await api(`/api/sync/ws?workspaceId=${workspaceId}${query}`, { headers: { upgrade: 'websocket', ...user.headers, ...headers } }),
  );
  await socket.next((m) => m.type === 'hello', 'hello');
  return socket;
};

/** An owner's workspace with a second member (`role`), each with one socket. */
async function twoMembers(role: 'editor' | 'viewer' = 'editor') {
  const owner = await syncUser();
  const member = await signedInUser();
  await upsertMember(env, owner.workspaceId, member.id, role);
  const a = await connect(owner.workspaceId, owner, 'dev-a');
  const b = await connect(owner.workspaceId, member, 'dev-b');
  return { owner, member, a, b, workspaceId: owner.workspaceId };
}

const presenceOf = (userId: string, deviceId: string) => (m: any) => m.type === 'presence' && m.userId === userId && m.deviceId === deviceId;
const leaveOf = (userId: string, deviceId: string) => (m: any) => m.type === 'presence-leave' && m.userId === userId && m.deviceId === deviceId;
const stub = (workspaceId: string) => env.WORKSPACE.getByName(workspaceId);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Makes every socket of the workspace look silent since `ms` ago (the time of its last message to the object). */
const silenceFor = (workspaceId: string, ms: number) =>
  runInDurableObject(stub(workspaceId), (_i, state) => {
    for (const ws of state.getWebSockets()) ws.serializeAttachment({ ...ws.deserializeAttachment(), seenAt: Date.now() - ms });
  });

/** Waits until the presence sweep has armed the alarm (it is armed in the background after a publish). */
const alarmArmed = async (workspaceId: string) => {
  for (let i = 0; i < 50; i++) {
    if ((await runInDurableObject(stub(workspaceId), (_i, state) => state.storage.getAlarm())) !== null) return;
    await sleep(20);
  }
  throw new Error('the alarm was never armed');
};

const sockets: TestSocket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.ws.close();
});

describe('presence on the workspace socket', { timeout: 15_000 }, () => {
  it('fans a state out to every socket of the workspace, the publisher included', async () => {
    const { owner, a, b } = await twoMembers();
    sockets.push(a, b);
    a.send({ type: 'presence', state: { threadId: 't1', typing: true } });
    const expected = { type: 'presence', userId: owner.id, deviceId: 'dev-a', state: { threadId: 't1', typing: true } };
    expect(await b.next(presenceOf(owner.id, 'dev-a'))).toEqual(expected);
    expect(await a.next(presenceOf(owner.id, 'dev-a'))).toEqual(expected);
    // Sent again unchanged: nobody hears it twice.
    a.send({ type: 'presence', state: { threadId: 't1', typing: true } });
    a.send({ type: 'presence', state: { threadId: 't2' } });
    await b.next((m) => m.type === 'presence' && m.state.threadId === 't2');
    expect(b.messages.filter((m) => m.type === 'presence').map((m) => m.state.threadId)).toEqual(['t1', 't2']);
  });

  it('a late joiner gets the whole roster right after hello', async () => {
    const { owner, member, a, b, workspaceId } = await twoMembers();
    sockets.push(a, b);
    a.send({ type: 'presence', state: { threadId: 't1' } });
    b.send({ type: 'presence', state: { threadId: 't2' } });
    await a.next(presenceOf(member.id, 'dev-b'));
    // A member with no state is not in the roster.
    const quiet = await connect(workspaceId, owner, 'dev-quiet');
    const late = await connect(workspaceId, member, 'dev-late');
    sockets.push(quiet, late);
    const roster = await late.next((m) => m.type === 'presence-roster', 'the roster');
    expect(late.messages.map((m) => m.type)).toEqual(['hello', 'presence-roster']);
    expect(roster.entries.sort((x: any, y: any) => x.deviceId.localeCompare(y.deviceId))).toEqual([
      { userId: owner.id, deviceId: 'dev-a', state: { threadId: 't1' } },
      { userId: member.id, deviceId: 'dev-b', state: { threadId: 't2' } },
    ]);
  });

  it('a device leaves when its socket closes; several sockets of one device are one entry', async () => {
    const { owner, a, b, workspaceId } = await twoMembers();
    sockets.push(b);
    const tab = await connect(workspaceId, owner, 'dev-a'); // a second tab of device A
    a.send({ type: 'presence', state: { threadId: 't1' } });
    await b.next(presenceOf(owner.id, 'dev-a'));
    tab.send({ type: 'presence', state: { threadId: 't2' } });
    await b.next((m) => m.type === 'presence' && m.state.threadId === 't2');
    // The newest tab closes: the device still shows, with the other tab's state.
    tab.ws.close(1000, 'bye');
    expect(await b.next((m) => m.type === 'presence' && m.state.threadId === 't1' && b.messages.indexOf(m) > 2)).toMatchObject({ deviceId: 'dev-a' });
    a.ws.close(1000, 'bye');
    expect(await b.next(leaveOf(owner.id, 'dev-a'))).toEqual({ type: 'presence-leave', userId: owner.id, deviceId: 'dev-a' });
    // state: null leaves the roster while staying connected.
    b.send({ type: 'presence', state: { here: true } });
    const c = await connect(workspaceId, owner, 'dev-c');
    sockets.push(c);
    b.send({ type: 'presence', state: null });
    await c.next((m) => m.type === 'presence-leave' && m.deviceId === 'dev-b');
  });

  it('a socket silent for 30 s leaves at the next sweep; one that pings stays', async () => {
    const { owner, member, a, b, workspaceId } = await twoMembers();
    sockets.push(a, b);
    a.send({ type: 'presence', state: { threadId: 't1' } });
    b.send({ type: 'presence', state: { threadId: 't1' } });
    await a.next(presenceOf(member.id, 'dev-b'));
    await alarmArmed(workspaceId);
    // B's pings are answered by the runtime without waking the object; the sweep reads their time.
    b.send('ping');
    await b.next((m) => m.type === 'pong', 'pong');
    await silenceFor(workspaceId, PRESENCE.silenceMs + 1000);
    expect(await runDurableObjectAlarm(stub(workspaceId))).toBe(true);
    expect(await b.next(leaveOf(owner.id, 'dev-a'))).toBeTruthy();
    // A is still connected and hears its own leave (a live client publishes again).
    expect(await a.next(leaveOf(owner.id, 'dev-a'))).toBeTruthy();
    expect(a.messages.some(leaveOf(member.id, 'dev-b'))).toBe(false);
    a.send({ type: 'presence', state: { threadId: 't1', back: true } });
    expect((await b.next((m) => presenceOf(owner.id, 'dev-a')(m) && m.state.back)).state).toEqual({ threadId: 't1', back: true });
    // The sweep re-armed the alarm for the next one while anyone is in the roster.
    expect(await runInDurableObject(stub(workspaceId), (_i, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('the sweep shares the one alarm with GC: GC keeps its own clock', async () => {
    const { owner, a, b, workspaceId } = await twoMembers();
    sockets.push(b);
    const alarm = () => runInDurableObject(stub(workspaceId), (_i, state) => state.storage.getAlarm());
    const gcDue = async () =>
      (await runInDurableObject(stub(workspaceId), (_i, state) => state.storage.sql.exec("SELECT value FROM meta WHERE key = 'gc_due_at'").toArray()))[0]
        ?.value;
    const gcRuns = async (run: () => Promise<unknown>) => {
      const spy = vi.spyOn(console, 'log');
      try {
        await run();
        return spy.mock.calls.filter((args) => String(args[0]).includes('"event":"sync_gc"')).length;
      } finally {
        spy.mockRestore();
      }
    };
    a.send({ type: 'presence', state: {} });
    await alarmArmed(workspaceId);
    const sweepAt = (await alarm())!;
    expect(sweepAt - Date.now()).toBeLessThanOrEqual(PRESENCE.silenceMs + 2000);
    expect(await gcDue()).toBe(''); // GC had no alarm
    // A push arms GC: its time waits while the sweep holds the alarm.
    await pushOk(owner, workspaceId, [op('messages', 'm1', message('m1'))]);
    expect(await alarm()).toBe(sweepAt);
    expect(Number(await gcDue()) - Date.now()).toBeGreaterThan(5 * 3600_000);
    // A sweep alarm runs no GC, and re-arms for the next sweep.
    expect(await gcRuns(() => runDurableObjectAlarm(stub(workspaceId)))).toBe(0);
    expect((await alarm())! - Date.now()).toBeLessThanOrEqual(PRESENCE.silenceMs + 2000);
    // Once GC is due, the alarm runs it.
    await runInDurableObject(stub(workspaceId), (_i, state) => state.storage.sql.exec("UPDATE meta SET value = ? WHERE key = 'gc_due_at'", Date.now() - 1));
    expect(await gcRuns(() => runDurableObjectAlarm(stub(workspaceId)))).toBe(1);
    // With the roster empty, the alarm goes back to GC's clock alone.
    a.ws.close(1000, 'bye');
    await b.next((m) => m.type === 'presence-leave');
    const gcAt = Number(await gcDue());
    expect(await gcRuns(() => runDurableObjectAlarm(stub(workspaceId)))).toBe(0);
    expect(await alarm()).toBe(gcAt);
    expect(await gcDue()).toBeUndefined();
  });

  it('a removed member leaves the roster at once and can no longer publish', async () => {
    const { owner, member, a, b, workspaceId } = await twoMembers('viewer');
    sockets.push(a);
    b.send({ type: 'presence', state: { threadId: 't1' } });
    await a.next(presenceOf(member.id, 'dev-b'));
    expect((await call('DELETE', `/api/workspaces/${workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await b.closed).code).toBe(4003);
    expect(await a.next(leaveOf(member.id, 'dev-b'))).toBeTruthy();
    expect(a.messages.filter(leaveOf(member.id, 'dev-b'))).toHaveLength(1);
    // No way back in: the upgrade is refused, and the roster no longer holds them.
    expect((await api(`/api/sync/ws?workspaceId=${workspaceId}&deviceId=dev-b`, { headers: { upgrade: 'websocket', ...member.headers } })).status).toBe(403);
    const late = await connect(workspaceId, owner, 'dev-late');
    sockets.push(late);
    expect((await late.next((m) => m.type === 'presence-roster')).entries).toEqual([]);
  });

  it("closing a removed member's sockets takes them out of the roster in the same call, not when their client answers the close", async () => {
    const { member, a, b, workspaceId } = await twoMembers('viewer');
    sockets.push(a, b);
    b.send({ type: 'presence', state: { threadId: 't1' } });
    await a.next(presenceOf(member.id, 'dev-b'));
    const states = await runInDurableObject(stub(workspaceId), (instance, state) => {
      const theirs = state.getWebSockets(`user:${member.id}`);
      instance.closeSockets(member.id);
      return theirs.map((ws) => (ws.deserializeAttachment() as { state?: string | null }).state ?? null);
    });
    expect(states).toEqual([null]);
  });

  it('refuses an oversized or malformed state and keeps the socket up', async () => {
    const { owner, a, b } = await twoMembers();
    sockets.push(a, b);
    a.send({ type: 'presence', state: { text: 'x'.repeat(PRESENCE.maxStateBytes) } });
    expect(await a.next((m) => m.type === 'error')).toMatchObject({ type: 'error', status: 413, error: 'presence_too_large' });
    a.send({ type: 'presence', state: { text: 'x'.repeat(20_000) } });
    a.send({ type: 'presence', state: 'typing' });
    await a.next((m) => m.type === 'error' && m.error === 'invalid_presence');
    a.send('not json');
    a.send({ type: 'something-else' });
    // Exactly at the limit is fine, and the socket still works.
    const fits = { text: `${'é'.repeat(506)}x` }; // 2-byte characters: bytes, not characters, are counted
    expect(new TextEncoder().encode(JSON.stringify(fits)).byteLength).toBe(PRESENCE.maxStateBytes);
    a.send({ type: 'presence', state: fits });
    expect((await b.next(presenceOf(owner.id, 'dev-a'))).state).toEqual(fits);
    expect(b.messages.filter((m) => m.type === 'presence')).toHaveLength(1);
    expect(a.messages.filter((m) => m.type === 'error').map((m) => m.error)).toEqual(['presence_too_large', 'presence_too_large', 'invalid_presence']);
  });

  it('coalesces a flood: at most 10 updates a second per socket, and the latest wins', async () => {
    const { owner, a, b } = await twoMembers();
    sockets.push(a, b);
    for (let n = 1; n <= 50; n++) a.send({ type: 'presence', state: { n } });
    const last = await b.next((m) => presenceOf(owner.id, 'dev-a')(m) && m.state.n === 50, 'the last update');
    expect(last.state).toEqual({ n: 50 });
    const heard = b.messages.filter(presenceOf(owner.id, 'dev-a')).map((m) => m.state.n);
    // One window's worth (perhaps two, across a second's edge), then the held latest.
    expect(heard.length).toBeLessThanOrEqual(2 * PRESENCE.perSecond + 1);
    expect(heard.length).toBeGreaterThanOrEqual(2);
    expect(heard).toEqual([...heard].sort((x, y) => x - y));
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    expect(a.messages.some((m) => m.type === 'error')).toBe(false);
  });

  it('a viewer may publish', async () => {
    const { member, a, b } = await twoMembers('viewer');
    sockets.push(a, b);
    b.send({ type: 'presence', state: { threadId: 't9', typing: true } });
    expect((await a.next(presenceOf(member.id, 'dev-b'))).state).toEqual({ threadId: 't9', typing: true });
  });

  it('keeps the roster through hibernation: states live in the socket attachments', async () => {
    const { owner, member, a, b, workspaceId } = await twoMembers();
    sockets.push(a, b);
    a.send({ type: 'presence', state: { threadId: 't1' } });
    await b.next(presenceOf(owner.id, 'dev-a'));
    const before = await runInDurableObject(stub(workspaceId), (instance) => instance);
    expect(await runInDurableObject(stub(workspaceId), (instance) => instance === before)).toBe(true);
    await evictDurableObject(stub(workspaceId));
    // A fresh instance (nothing in memory) still knows the roster, and fans out as before.
    const late = await connect(workspaceId, member, 'dev-late');
    sockets.push(late);
    expect(await runInDurableObject(stub(workspaceId), (instance) => instance === before)).toBe(false);
    expect((await late.next((m) => m.type === 'presence-roster')).entries).toEqual([{ userId: owner.id, deviceId: 'dev-a', state: { threadId: 't1' } }]);
    b.send({ type: 'presence', state: { threadId: 't2' } });
    expect((await a.next(presenceOf(member.id, 'dev-b'))).state).toEqual({ threadId: 't2' });
    a.ws.close(1000, 'bye');
    await late.next(leaveOf(owner.id, 'dev-a'));
  });

  it('takes the device id from the URL only, and refuses a malformed one', async () => {
    const u = await syncUser();
    const bad = await api(`/api/sync/ws?workspaceId=${u.workspaceId}&deviceId=${encodeURIComponent('<b>x</b>')}`, {
      headers: { upgrade: 'websocket', ...u.headers },
    });
    expect(bad.status).toBe(400);
    expect(
      (await api(`/api/sync/ws?workspaceId=${u.workspaceId}&deviceId=${'d'.repeat(129)}`, { headers: { upgrade: 'websocket', ...u.headers } })).status,
    ).toBe(400);
    // A client's own x-or3-device-id header is dropped; without deviceId the socket gets a made-up one.
    const s = await connect(u.workspaceId, u, undefined, { 'x-or3-device-id': 'forged' });
    sockets.push(s);
    s.send({ type: 'presence', state: {} });
    const echo = await s.next((m) => m.type === 'presence');
    expect(echo.deviceId).toMatch(/^socket-[0-9a-f-]{36}$/);
  });

  it('never stores or logs a state: nothing of it in D1, the workspace SQLite, R2 or the console', async () => {
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((level) => vi.spyOn(console, level));
    try {
      const marker = `presence-secret-${crypto.randomUUID()}`;
      const { owner, a, b, workspaceId } = await twoMembers();
      sockets.push(b);
      a.send({ type: 'presence', state: { threadId: marker, typing: true } });
      await b.next(presenceOf(owner.id, 'dev-a'));
      for (let n = 0; n < 15; n++) a.send({ type: 'presence', state: { threadId: marker, n } });
      a.send({ type: 'presence', state: { text: marker.repeat(100) } });
      await b.next((m) => m.type === 'presence' && m.state.n === 14);
      await silenceFor(workspaceId, PRESENCE.silenceMs + 1000);
      await runDurableObjectAlarm(stub(workspaceId));
      a.ws.close(1000, 'bye');
      await b.next(leaveOf(owner.id, 'dev-a'));
      const found: string[] = [];
      // D1: every table.
      const d1Tables = (
        await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").all<{
          name: string;
        }>()
      ).results;
      for (const { name } of d1Tables)
        if (JSON.stringify((await env.DB.prepare(`SELECT * FROM "${name}"`).all()).results).includes(marker)) found.push(`D1 ${name}`);
      // The workspace's SQLite: every table.
      const doTables = await runInDurableObject(stub(workspaceId), (_i, state) => {
        const hits: string[] = [];
        const names = state.storage.sql
          .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
          .toArray();
        for (const { name } of names) if (JSON.stringify(state.storage.sql.exec(`SELECT * FROM "${name}"`).toArray()).includes(marker)) hits.push(`DO ${name}`);
        return { hits, count: names.length };
      });
      expect(doTables.count).toBeGreaterThan(5);
      found.push(...doTables.hits);
      // R2: the archive, the audit log, blobs.
      for (const object of (await env.BLOBS.list()).objects)
        if ((await (await env.BLOBS.get(object.key))!.text()).includes(marker)) found.push(`R2 ${object.key}`);
      // The console: the request log lines are there (the check can see them), the state is not.
      const lines = spies.flatMap((spy) => spy.mock.calls.map((args) => args.map(String).join(' ')));
      expect(lines.some((line) => line.includes('/api/sync/ws'))).toBe(true);
      found.push(...lines.filter((line) => line.includes(marker)));
      expect(found).toEqual([]);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
