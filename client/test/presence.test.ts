/** Presence through the SDK against the real Worker: rosters, typing that clears itself, leaving, and coming back after a drop. */
import { describe, expect, it } from 'vitest';
import { Or3Error, type Or3Workspace, type PresencePeer } from '../src/index';
import { device, PASSWORD, serverPerFile, uniqueEmail, until } from './harness';

const ctx = serverPerFile();
const TYPING_MS = 400;

/** An owner and an editor of one workspace, each on their own device with it open. */
async function twoMembers() {
  const a = device(ctx.server, { presence: { typingTimeoutMs: TYPING_MS } });
  await a.client.basicAuth.register({ email: uniqueEmail('ada'), password: PASSWORD, displayName: 'Ada' });
  const wsA = await a.client.openWorkspace();
  const { inviteToken } = await a.client.workspaces.invite(wsA.id, 'editor');
  const b = device(ctx.server, { presence: { typingTimeoutMs: TYPING_MS } });
  await b.client.basicAuth.register({ email: uniqueEmail('bob'), password: PASSWORD, inviteToken });
  const wsB = await b.client.openWorkspace(wsA.id);
  ctx.open.push(wsA, wsB);
  await until(() => wsA.status.realtime === 'live' && wsB.status.realtime === 'live', 10_000, 'both sockets');
  return { a, b, wsA, wsB };
}

/** Every roster the workspace reported, in order. */
function rosters(ws: Or3Workspace) {
  const seen: PresencePeer[][] = [];
  ws.on('presence', ({ roster }) => seen.push(roster));
  return seen;
}

const peer = (ws: Or3Workspace, of: Or3Workspace) => ws.presence.roster().find((p) => p.userId === of.userId && p.deviceId === of.deviceId);

describe('presence', () => {
  it('shows each device to the others, this one marked self, and typing clears itself after a pause', async () => {
    const { wsA, wsB } = await twoMembers();
    const seenByB = rosters(wsB);
    wsA.presence.set({ threadId: 't1' });
    await until(() => peer(wsB, wsA)?.state.threadId === 't1', 5_000, 'B to see A');
    expect(peer(wsB, wsA)).toEqual({ userId: wsA.userId, deviceId: wsA.deviceId, state: { threadId: 't1' }, self: false });
    expect(seenByB.at(-1)).toEqual(wsB.presence.roster());
    await until(() => peer(wsA, wsA)?.self === true, 5_000, 'A to see itself');
    expect(wsA.presence.state).toEqual({ threadId: 't1' });

    // Keystrokes keep it on; a pause of TYPING_MS clears it, on every device.
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      wsA.presence.typing();
      await new Promise((r) => setTimeout(r, TYPING_MS / 3));
    }
    await until(() => peer(wsB, wsA)?.state.typing === true, 5_000, 'B to see A typing');
    expect(wsA.presence.state).toEqual({ threadId: 't1', typing: true });
    await until(() => peer(wsB, wsA) !== undefined && peer(wsB, wsA)!.state.typing === undefined, 5_000, 'typing to clear');
    // It lasted through the keystrokes (about 4 × TYPING_MS/3), then one TYPING_MS more.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1.5 * TYPING_MS);
    expect(peer(wsB, wsA)!.state).toEqual({ threadId: 't1' });
    // typing(false) clears at once (on send).
    wsA.presence.typing();
    await until(() => peer(wsB, wsA)?.state.typing === true, 5_000, 'typing again');
    wsA.presence.typing(false);
    await until(() => peer(wsB, wsA)?.state.typing === undefined, 0.75 * TYPING_MS, 'typing(false) to clear at once');
  });

  it('a device that closes leaves the others’ rosters; set(null) leaves without closing', async () => {
    const { wsA, wsB } = await twoMembers();
    wsA.presence.set({ here: true });
    wsB.presence.set({ here: true });
    await until(() => peer(wsB, wsA) && peer(wsA, wsB), 5_000, 'both to see each other');
    wsB.presence.set(null);
    await until(() => !peer(wsA, wsB), 5_000, 'B to leave A’s roster');
    expect(wsB.status.realtime).toBe('live');
    await wsA.close();
    await until(() => !peer(wsB, wsA), 5_000, 'A to leave B’s roster');
  });

  it('keeps its state across a dropped connection, shows an empty roster while down, and publishes again on reconnect', async () => {
    const { a, wsA, wsB } = await twoMembers();
    wsA.presence.set({ threadId: 't7' });
    await until(() => peer(wsB, wsA), 5_000, 'B to see A');
    a.online = false;
    await until(() => !peer(wsB, wsA), 5_000, 'A to leave when its socket drops');
    expect(wsA.presence.roster()).toEqual([]);
    expect(wsA.status.realtime).not.toBe('live');
    a.online = true;
    await until(() => peer(wsB, wsA)?.state.threadId === 't7', 15_000, 'A to be back with its state');
  });

  it('refuses a state over 1 KB or one that is not an object, before sending anything', async () => {
    const { wsA } = await twoMembers();
    expect(() => wsA.presence.set({ text: 'x'.repeat(1100) })).toThrow(Or3Error);
    expect(() => wsA.presence.set(['typing'] as unknown as { [k: string]: unknown })).toThrow(/JSON object/);
    expect(wsA.presence.state).toBeNull();
  });
});
