/**
 * Ownership (docs/api.md "Ownership"): a device cursor belongs to the user who first moved it,
 * and notifications to their user — on push, pull, snapshot and the changes pokes carry. The
 * other user's attempt is refused and nothing changes.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser } from '../auth/helpers';
import { api } from '../helpers';
import { op, openSocket, pull, pushOk, snapshotAll, syncUser, thread } from './helpers';

const now = () => Math.floor(Date.now() / 1000);
const note = (id: string, userId: string, extra: Record<string, unknown> = {}) => ({
  id,
  user_id: userId,
  type: 'mention',
  title: 'You were mentioned',
  deleted: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
  ...extra,
});

async function twoMembers() {
  const owner = await syncUser();
  const other = await signedInUser();
  await upsertMember(env, owner.workspaceId, other.id, 'editor');
  return { owner, other: { ...other, workspaceId: owner.workspaceId } };
}

const cursors = (workspaceId: string) =>
  runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_o, state) =>
    state.storage.sql
      .exec<{ device_id: string; user_id: string; version: number }>('SELECT device_id, user_id, version FROM device_cursors ORDER BY device_id')
      .toArray(),
  );

describe('device cursor ownership', () => {
  it("another user's update of a device cursor is 403 and leaves it where it was; malformed input is 400", async () => {
    const { owner, other } = await twoMembers();
    await pushOk(owner, owner.workspaceId, [op('threads', 't1', thread('t1')), op('threads', 't2', thread('t2'))]);
    const move = (who: { headers: Record<string, string> }, body: Record<string, unknown>) =>
      call('POST', '/api/sync/update-cursor', who.headers, { scope: { workspaceId: owner.workspaceId }, ...body });
    expect((await move(owner, { deviceId: 'laptop', version: 1 })).status).toBe(200);
    const taken = await move(other, { deviceId: 'laptop', version: 2 });
    expect(taken.status).toBe(403);
    expect((await taken.json<any>()).error).toBe('device_owned');
    expect(await cursors(owner.workspaceId)).toEqual([{ device_id: 'laptop', user_id: owner.id, version: 1 }]);
    for (const bad of [{ deviceId: '', version: 1 }, { deviceId: 'x'.repeat(129), version: 1 }, { deviceId: 'laptop', version: -1 }, { deviceId: 'laptop' }]) {
      expect((await move(owner, bad)).status).toBe(400);
    }
    expect((await move(owner, { deviceId: 'laptop', version: 2 })).status).toBe(200);
  });
});

describe('notification ownership', () => {
  it("a push forces user_id to the pusher; another user's write or delete is refused and changes nothing; reads serve each user their own", async () => {
    const { owner, other } = await twoMembers();
    // Claiming to write for someone else still writes one's own.
    const mine = await pushOk(owner, owner.workspaceId, [op('notifications', 'n1', note('n1', other.id))]);
    expect(mine.results[0]!.success).toBe(true);
    const ownerPage = await pull(owner, owner.workspaceId, 0);
    expect(ownerPage.changes.map((c) => [c.pk, c.payload.user_id])).toEqual([['n1', owner.id]]);
    const before = await pull(owner, owner.workspaceId, 0);

    const refused = await pushOk(other, other.workspaceId, [
      op('notifications', 'n1', note('n1', other.id, { title: 'hijacked' }), { clock: 9 }),
      op('notifications', 'n1', undefined, { operation: 'delete', clock: 10 }),
    ]);
    expect(refused.results.map((r) => [r.success, r.errorCode])).toEqual([
      [false, 'UNAUTHORIZED'],
      [false, 'UNAUTHORIZED'],
    ]);
    expect(refused.serverVersion).toBe(mine.serverVersion);
    expect(await pull(owner, owner.workspaceId, 0)).toEqual(before);
    expect((await pull(other, other.workspaceId, 0)).changes).toEqual([]);
    expect((await snapshotAll(other, other.workspaceId, 10)).items).toEqual([]);
    expect((await snapshotAll(owner, owner.workspaceId, 10)).items.map((i: any) => i.pk)).toEqual(['n1']);
  });

  it("pokes carry a user's own notifications only", async () => {
    const { owner, other } = await twoMembers();
    const path = `/api/sync/ws?workspaceId=${owner.workspaceId}`;
    const sockets = await Promise.all([owner, other].map(async (who) => openSocket(await api(path, { headers: { upgrade: 'websocket', ...who.headers } }))));
    await Promise.all(sockets.map((s) => s.next((m) => m.type === 'hello', 'hello')));
    await pushOk(owner, owner.workspaceId, [op('notifications', 'n1', note('n1', owner.id)), op('threads', 't1', thread('t1'))]);
    const [ownerPoke, otherPoke] = await Promise.all(sockets.map((s) => s.next((m) => m.type === 'poke', 'poke')));
    expect(ownerPoke.changes.map((c: any) => c.pk).sort()).toEqual(['n1', 't1']);
    expect(otherPoke.changes.map((c: any) => c.pk)).toEqual(['t1']);
    for (const s of sockets) s.ws.close();
  });
});
