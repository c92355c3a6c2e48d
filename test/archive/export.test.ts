import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser } from '../auth/helpers';
import { message, op, pushOk, snapshotAll, syncUser } from '../sync/helpers';

const parse = async (res: Response) =>
  (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('GET /api/workspaces/:id/export', () => {
  it('streams archived then live history, each version once and in order, then the current state', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [
      op('messages', 'a', message('a')),
      op('messages', 'b', message('b')),
      op('messages', 'a', undefined, { operation: 'delete', clock: 2 }),
    ]);
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      state.storage.sql.exec('UPDATE change_log SET created_at = created_at - 7200000'),
    );
    expect(await (await call('POST', '/api/sync/gc-change-log', u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 })).json()).toEqual({
      deletedCount: 3,
    });
    await pushOk(u, u.workspaceId, [
      op('messages', 'c', message('c')),
      op('notifications', 'n1', { id: 'n1', user_id: u.id, type: 't', title: 'T', deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
    ]);

    const res = await call('GET', `/api/workspaces/${u.workspaceId}/export`, u.headers);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = await parse(res);
    expect(lines[0]).toMatchObject({ type: 'header', format: 'or3-edge-export/v1', workspaceId: u.workspaceId });
    const changes = lines.filter((l) => l.type === 'change');
    expect(changes.map((c) => c.serverVersion)).toEqual([1, 2, 3, 4, 5]);
    expect(changes[2]).toMatchObject({ op: 'delete', pk: 'a' });
    const state = lines.filter((l) => l.type === 'row' || l.type === 'tombstone').map(({ type: _t, ...rest }) => rest);
    expect(state).toEqual((await snapshotAll(u, u.workspaceId, 100)).items);
    expect(lines.at(-1)).toEqual({ type: 'end', changes: 5, items: state.length, members: 1, files: 0 });
    expect(lines[1]).toEqual({ type: 'member', userId: u.id, role: 'owner', email: u.email });
  });

  it("leaves out other users' notifications", async () => {
    const u = await syncUser();
    const other = await signedInUser();
    await upsertMember(env, u.workspaceId, other.id, 'editor');
    await pushOk(other, u.workspaceId, [
      op('notifications', 'theirs', { id: 'theirs', user_id: other.id, type: 't', title: 'T', deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
    ]);
    await pushOk(u, u.workspaceId, [op('messages', 'm', message('m'))]);
    const lines = await parse(await call('GET', `/api/workspaces/${u.workspaceId}/export`, u.headers));
    expect(lines.filter((l) => l.type === 'change').map((c) => c.pk)).toEqual(['m']);
    expect(lines.some((l) => l.pk === 'theirs')).toBe(false);
  });

  it('is for owners only', async () => {
    const u = await syncUser();
    const editor = await signedInUser();
    const stranger = await signedInUser();
    await upsertMember(env, u.workspaceId, editor.id, 'editor');
    expect((await call('GET', `/api/workspaces/${u.workspaceId}/export`, editor.headers)).status).toBe(403);
    expect((await call('GET', `/api/workspaces/${u.workspaceId}/export`, stranger.headers)).status).toBe(403);
    expect((await call('GET', `/api/workspaces/${u.workspaceId}/export`, {})).status).toBe(401);
  });
});
