/**
 * Members live with their workspace (docs/architecture.md): the workspace's object is the
 * authority; D1's `members` rows and each user object's list follow every change; existing
 * memberships are seeded from D1 once; the repair route reconciles after a crash between the
 * authority's write and a copy.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { call, signedInUser, userRows } from '../auth/helpers';
import { syncUser } from '../sync/helpers';
import { createWorkspace } from '../../src/workspace-records/store';

const adminHeaders = (u: { headers: Record<string, string> }) => ({ ...u.headers, 'x-or3-admin-intent': 'admin' });

/** D1's copy of one workspace's members, as `userId → role`. */
async function d1Members(workspaceId: string): Promise<Record<string, string>> {
  const { results } = await env.DB.prepare('SELECT user_id, role FROM members WHERE workspace_id = ?')
    .bind(workspaceId)
    .all<{ user_id: string; role: string }>();
  return Object.fromEntries(results.map((r) => [r.user_id, r.role]));
}

/** The authority's members, as `userId → role`, and its queued copies. */
async function objectMembers(workspaceId: string): Promise<{ members: Record<string, string>; pending: number }> {
  const view = await env.WORKSPACE.getByName(workspaceId).members();
  return { members: Object.fromEntries(view.members.map((m) => [m.userId, m.role])), pending: view.pending };
}

/** The user object's list, as `workspaceId → role`. */
async function listed(userId: string): Promise<Record<string, string>> {
  const rows = await userRows<{ workspace_id: string; role: string }>(userId, 'SELECT workspace_id, role FROM my_workspaces WHERE deleted = 0');
  return Object.fromEntries(rows.map((r) => [r.workspace_id, r.role]));
}

const pull = (u: { headers: Record<string, string> }, workspaceId: string) => call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId }, cursor: 0 });

describe('the workspace object is the authority for its members', () => {
  it('a role change and a removal are written to the object, then D1 and the user object follow', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    const { inviteToken } = await (await call('POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.headers, { role: 'editor' })).json<any>();
    expect((await call('POST', '/api/workspaces/invites/accept', member.headers, { inviteToken })).status).toBe(200);
    expect((await objectMembers(owner.workspaceId)).members[member.id]).toBe('editor');
    expect((await d1Members(owner.workspaceId))[member.id]).toBe('editor');
    expect((await listed(member.id))[owner.workspaceId]).toBe('editor');

    expect((await call('PUT', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers, { role: 'viewer' })).status).toBe(200);
    expect((await d1Members(owner.workspaceId))[member.id]).toBe('viewer');
    expect((await listed(member.id))[owner.workspaceId]).toBe('viewer');

    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await objectMembers(owner.workspaceId)).members[member.id]).toBeUndefined();
    expect((await d1Members(owner.workspaceId))[member.id]).toBeUndefined();
    expect((await listed(member.id))[owner.workspaceId]).toBeUndefined();
    expect((await objectMembers(owner.workspaceId)).pending).toBe(0);
    expect((await pull(member, owner.workspaceId)).status).toBe(403);
  });

  it('the last owner stays: the object refuses, and neither copy changes', async () => {
    const owner = await syncUser();
    const res = await call('PUT', `/api/workspaces/${owner.workspaceId}/members/${owner.id}`, owner.headers, { role: 'viewer' });
    expect(res.status).toBe(409);
    expect((await objectMembers(owner.workspaceId)).members[owner.id]).toBe('owner');
    expect((await d1Members(owner.workspaceId))[owner.id]).toBe('owner');
  });

  it('existing memberships are seeded from D1 on the object’s first use, once: a later D1-only write is not honoured', async () => {
    const owner = await signedInUser();
    const member = await signedInUser();
    const late = await signedInUser();
    // As an older release left it: the workspace and its members only in D1.
    const workspaceId = await createWorkspace(env.DB, owner.id, 'from before', null);
    await env.DB.prepare("INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) VALUES (?, ?, 'editor', 1, 1)")
      .bind(workspaceId, member.id)
      .run();
    expect((await pull(member, workspaceId)).status).toBe(200);
    expect((await objectMembers(workspaceId)).members).toEqual({ [owner.id]: 'owner', [member.id]: 'editor' });
    // D1 is a copy now: a row written there behind the object's back admits nobody.
    await env.DB.prepare("INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) VALUES (?, ?, 'editor', 1, 1)")
      .bind(workspaceId, late.id)
      .run();
    expect((await pull(late, workspaceId)).status).toBe(403);
  });
});

describe('repair', () => {
  it('a copy that failed (D1 unreachable after the authority wrote) stays queued; the repair route makes D1 agree', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    const admin = await signedInUser({ isAdmin: true });
    expect((await call('PUT', `/api/admin/workspaces/${owner.workspaceId}/members/${member.id}`, adminHeaders(admin), { role: 'editor' })).status).toBe(200);
    // D1 refuses this one copy (a trigger): the removal is written to the authority, its copy fails.
    const trigger = `block_${member.id.replaceAll('-', '')}`;
    await env.DB.prepare(
      `CREATE TRIGGER ${trigger} BEFORE DELETE ON members WHEN OLD.user_id = '${member.id}' BEGIN SELECT RAISE(ABORT, 'copy blocked'); END`,
    ).run();
    expect((await call('DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.headers)).status).toBe(200);
    expect((await pull(member, owner.workspaceId)).status).toBe(403); // the authority decided: no access
    expect((await d1Members(owner.workspaceId))[member.id]).toBe('editor'); // the copy lags
    expect((await objectMembers(owner.workspaceId)).pending).toBe(1);
    await env.DB.prepare(`DROP TRIGGER ${trigger}`).run();
    const repaired = await call('POST', `/api/admin/repair/workspaces/${owner.workspaceId}`, adminHeaders(admin));
    expect(repaired.status).toBe(200);
    expect(await repaired.json()).toMatchObject({ ok: true, dropped: 1, adopted: 0, pending: 0 });
    expect(await d1Members(owner.workspaceId)).toEqual({ [owner.id]: 'owner' });
    expect((await pull(member, owner.workspaceId)).status).toBe(403);
  });

  it('a membership D1 wrote first whose adoption was lost is adopted; one older than a removal is dropped', async () => {
    const owner = await syncUser();
    const [joined, removed] = [await signedInUser(), await signedInUser()];
    const admin = await signedInUser({ isAdmin: true });
    expect((await call('PUT', `/api/admin/workspaces/${owner.workspaceId}/members/${removed.id}`, adminHeaders(admin), { role: 'viewer' })).status).toBe(200);
    const before = Date.now() - 60_000;
    expect((await call('DELETE', `/api/admin/workspaces/${owner.workspaceId}/members/${removed.id}`, adminHeaders(admin))).status).toBe(200);
    // An invite claimed in D1 just now, the object never told (a crash in between); and a stale row from before the removal.
    const insert = env.DB.prepare("INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) VALUES (?, ?, 'editor', ?, ?)");
    await insert.bind(owner.workspaceId, joined.id, Date.now(), Date.now()).run();
    await insert.bind(owner.workspaceId, removed.id, before, before).run();
    expect((await pull(joined, owner.workspaceId)).status).toBe(403);
    const res = await call('POST', `/api/admin/repair/workspaces/${owner.workspaceId}`, adminHeaders(admin));
    expect(await res.json()).toMatchObject({ adopted: 1, dropped: 1, pending: 0 });
    expect(await d1Members(owner.workspaceId)).toEqual({ [owner.id]: 'owner', [joined.id]: 'editor' });
    expect((await pull(joined, owner.workspaceId)).status).toBe(200);
    expect((await listed(joined.id))[owner.workspaceId]).toBe('editor');
    expect((await pull(removed, owner.workspaceId)).status).toBe(403);
  });

  it("the user repair route rebuilds a user's list from the workspaces' objects", async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    const admin = await signedInUser({ isAdmin: true });
    expect((await call('PUT', `/api/admin/workspaces/${owner.workspaceId}/members/${member.id}`, adminHeaders(admin), { role: 'editor' })).status).toBe(200);
    await userRows(member.id, 'DELETE FROM my_workspaces');
    await userRows(member.id, "INSERT INTO my_workspaces VALUES ('ghost-ws', 'owner', 'ghost', NULL, 1, 0, 1)");
    const res = await call('POST', `/api/admin/repair/users/${member.id}`, adminHeaders(admin));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, failed: [] });
    expect(await listed(member.id)).toEqual({ [owner.workspaceId]: 'editor' });
  });

  it('bad input and wrong users: 401 signed out, 403 for a non-admin or without the intent header, 404 for an unknown id', async () => {
    const owner = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    expect((await call('POST', `/api/admin/repair/workspaces/${owner.workspaceId}`, {})).status).toBe(401);
    expect((await call('POST', `/api/admin/repair/workspaces/${owner.workspaceId}`, adminHeaders(owner))).status).toBe(403);
    expect((await call('POST', `/api/admin/repair/users/${owner.id}`, adminHeaders(owner))).status).toBe(403);
    expect((await call('POST', `/api/admin/repair/workspaces/${owner.workspaceId}`, admin.headers)).status).toBe(403);
    expect((await call('POST', `/api/admin/repair/workspaces/${crypto.randomUUID()}`, adminHeaders(admin))).status).toBe(404);
    expect((await call('POST', `/api/admin/repair/users/${crypto.randomUUID()}`, adminHeaders(admin))).status).toBe(404);
    expect((await call('POST', `/api/admin/repair/workspaces/${'x'.repeat(300)}`, adminHeaders(admin))).status).toBe(400);
  });
});
