import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { api, apiWithEnv, json } from '../helpers';
import { PASSWORD, call, randomIp, signInBearer, signInCookies, signedInUser, makeUser, uniqueEmail, type SignedIn } from '../auth/helpers';

type RoleName = 'owner' | 'editor' | 'viewer' | 'outsider';
let users: Record<RoleName, SignedIn>;

beforeAll(async () => {
  const [owner, editor, viewer, outsider] = await Promise.all([signedInUser(), signedInUser(), signedInUser(), signedInUser()]);
  users = { owner: owner!, editor: editor!, viewer: viewer!, outsider: outsider! };
});

/** A fresh workspace with one member of each role, plus an extra viewer to act on. */
async function team() {
  const id = await createOwnedWorkspace(env, users.owner.id, 'Team', null);
  await upsertMember(env, id, users.editor.id, 'editor');
  await upsertMember(env, id, users.viewer.id, 'viewer');
  const extra = await makeUser();
  await upsertMember(env, id, extra.id, 'viewer');
  return { id, extra: extra.id };
}

const matrix: [string, string, (w: { id: string; extra: string }) => string, unknown, RoleName[]][] = [
  ['rename', 'PATCH', (w) => `/api/workspaces/${w.id}`, { name: 'Renamed' }, ['owner', 'editor']],
  ['delete', 'DELETE', (w) => `/api/workspaces/${w.id}`, undefined, ['owner']],
  ['set active', 'POST', () => '/api/workspaces/active', undefined, ['owner', 'editor', 'viewer']],
  ['list members', 'GET', (w) => `/api/workspaces/${w.id}/members`, undefined, ['owner', 'editor', 'viewer']],
  ['change a role', 'PUT', (w) => `/api/workspaces/${w.id}/members/${w.extra}`, { role: 'editor' }, ['owner']],
  ['remove a member', 'DELETE', (w) => `/api/workspaces/${w.id}/members/${w.extra}`, undefined, ['owner']],
  ['create an invite', 'POST', (w) => `/api/workspaces/${w.id}/invites`, { role: 'viewer' }, ['owner']],
  ['list invites', 'GET', (w) => `/api/workspaces/${w.id}/invites`, undefined, ['owner']],
];

describe('workspace role matrix', () => {
  for (const [name, method, path, body, allowed] of matrix) {
    it(`${name}: allowed for ${allowed.join(', ')}; 403 for the rest; 401 without auth`, async () => {
      for (const role of ['viewer', 'outsider', 'editor', 'owner'] as RoleName[]) {
        const w = await team();
        const payload = name === 'set active' ? { id: w.id } : body;
        const res = await call(method, path(w), users[role].headers, payload);
        expect(res.status, `${role} → ${name}`).toBe(allowed.includes(role) ? 200 : 403);
      }
      const w = await team();
      expect((await call(method, path(w), {}, name === 'set active' ? { id: w.id } : body)).status).toBe(401);
    });
  }

  it('viewers and outsiders get a reason in the error envelope', async () => {
    const w = await team();
    expect(await (await call('PATCH', `/api/workspaces/${w.id}`, users.viewer.headers, { name: 'x' })).json()).toEqual({
      error: 'insufficient_role',
      message: 'Your role (viewer) does not allow write',
    });
    expect(await (await call('PATCH', `/api/workspaces/${w.id}`, users.outsider.headers, { name: 'x' })).json()).toMatchObject({ error: 'not_member' });
  });
});

describe('workspaces', () => {
  it('creates, lists newest first with the contract fields, renames and soft-deletes', async () => {
    const user = await signedInUser();
    const a = await (await call('POST', '/api/workspaces', user.headers, { name: 'Alpha', description: 'first' })).json<{ id: string }>();
    const before = Date.now();
    // OR3's workspace manager sends null for an empty description.
    const created = await call('POST', '/api/workspaces', user.headers, { name: 'Beta', description: null });
    expect(created.status).toBe(200);
    const b = await created.json<{ id: string }>();
    let list = (await (await call('GET', '/api/workspaces', user.headers)).json<any>()).workspaces;
    expect(list.map((w: any) => w.id)).toEqual([b.id, a.id]);
    expect(list[1]).toEqual({ id: a.id, name: 'Alpha', description: 'first', role: 'owner', createdAt: expect.any(Number), isActive: false });
    expect(list[0].description).toBeNull();
    // createdAt is epoch milliseconds, as OR3 sorts by `b.createdAt - a.createdAt`.
    expect(Number.isInteger(list[0].createdAt)).toBe(true);
    expect(list[0].createdAt).toBeGreaterThanOrEqual(before);
    expect(list[0].createdAt).toBeLessThanOrEqual(Date.now());
    expect(list[0].createdAt).toBeGreaterThanOrEqual(list[1].createdAt);

    expect((await call('PATCH', `/api/workspaces/${a.id}`, user.headers, { name: 'Alpha 2', description: null })).status).toBe(200);
    expect((await call('DELETE', `/api/workspaces/${b.id}`, user.headers)).status).toBe(200);
    list = (await (await call('GET', '/api/workspaces', user.headers)).json<any>()).workspaces;
    expect(list).toEqual([expect.objectContaining({ id: a.id, name: 'Alpha 2', description: null })]);
    // A soft-deleted workspace is gone for its members too.
    expect((await call('GET', `/api/workspaces/${b.id}/members`, user.headers)).status).toBe(403);
    const row = await env.DB.prepare('SELECT deleted_at FROM workspaces WHERE id = ?').bind(b.id).first<{ deleted_at: number }>();
    expect(row?.deleted_at).toBeGreaterThan(0);
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ name: 'x'.repeat(101) }, 'name'],
    [{ name: 'ok', description: 'x'.repeat(1001) }, 'description'],
    [{ name: 'ok', owner: 'me' }, "'owner'"],
    [{}, 'name'],
  ])('rejects %j with 400 naming the field', async (body, field) => {
    const res = await call('POST', '/api/workspaces', users.owner.headers, body);
    expect(res.status).toBe(400);
    expect((await res.json<{ message: string }>()).message).toContain(field);
  });

  it('sets the active workspace only for members', async () => {
    const w = await team();
    expect((await call('POST', '/api/workspaces/active', users.viewer.headers, { id: w.id })).status).toBe(200);
    const { session } = await (await call('GET', '/api/auth/session', users.viewer.headers)).json<any>();
    expect(session.workspace.id).toBe(w.id);
    expect(session.role).toBe('viewer');
    expect((await call('POST', '/api/workspaces/active', users.outsider.headers, { id: w.id })).status).toBe(403);
  });

  it('lists members with emails and roles', async () => {
    const w = await team();
    const { members } = await (await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).json<any>();
    expect(members).toHaveLength(4);
    expect(members).toContainEqual({ userId: users.owner.id, email: users.owner.email, role: 'owner' });
  });
});

describe('IDOR across workspaces', () => {
  it('a user cannot read, change or manage another tenant workspace, existing or not', async () => {
    const w = await team();
    const ghost = crypto.randomUUID();
    for (const id of [w.id, ghost]) {
      for (const [method, path, body] of [
        ['GET', `/api/workspaces/${id}/members`, undefined],
        ['PATCH', `/api/workspaces/${id}`, { name: 'pwned' }],
        ['DELETE', `/api/workspaces/${id}`, undefined],
        ['PUT', `/api/workspaces/${id}/members/${users.outsider.id}`, { role: 'owner' }],
        ['POST', `/api/workspaces/${id}/invites`, { role: 'owner' }],
        ['GET', `/api/workspaces/${id}/invites`, undefined],
        ['DELETE', `/api/workspaces/${id}/invites/${crypto.randomUUID()}`, undefined],
        ['POST', '/api/workspaces/active', { id }],
      ] as const) {
        const res = await call(method, path, users.outsider.headers, body);
        expect(res.status, `${method} ${path}`).toBe(403);
      }
    }
    const name = await env.DB.prepare('SELECT name FROM workspaces WHERE id = ?').bind(w.id).first<{ name: string }>();
    expect(name?.name).toBe('Team');
  });
});

describe('members and owners', () => {
  it('the last owner can be neither demoted nor removed; with two owners one may step down', async () => {
    const w = await team();
    const owner = users.owner;
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers, { role: 'editor' })).status).toBe(409);
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers)).status).toBe(409);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.editor.id}`, owner.headers, { role: 'owner' })).status).toBe(200);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers, { role: 'viewer' })).status).toBe(200);
    // Now the editor-turned-owner is the last owner.
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${users.editor.id}`, users.editor.headers)).status).toBe(409);
  });

  it('two owners demoting each other at once leave one owner', async () => {
    const w = await team();
    await upsertMember(env, w.id, users.editor.id, 'owner');
    const results = await Promise.all([
      call('PUT', `/api/workspaces/${w.id}/members/${users.editor.id}`, users.owner.headers, { role: 'viewer' }),
      call('PUT', `/api/workspaces/${w.id}/members/${users.owner.id}`, users.editor.headers, { role: 'viewer' }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, expect.any(Number)]);
    const { n } = (await env.DB.prepare("SELECT count(*) AS n FROM members WHERE workspace_id = ? AND role = 'owner'").bind(w.id).first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('any member may leave on their own', async () => {
    const w = await team();
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${users.viewer.id}`, users.viewer.headers)).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).status).toBe(403);
  });

  it('changing the role of a non-member is 404, and an unknown role is 400', async () => {
    const w = await team();
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.outsider.id}`, users.owner.headers, { role: 'viewer' })).status).toBe(404);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.viewer.id}`, users.owner.headers, { role: 'admin' })).status).toBe(400);
  });
});

describe('invites', () => {
  it('an invite is accepted once, with its role; an existing member keeps theirs', async () => {
    const w = await team();
    const create = await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'editor', expiresInSeconds: 3600 });
    const { inviteToken, expiresAt } = await create.json<{ inviteToken: string; expiresAt: string }>();
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3_500_000);
    const joiner = await signedInUser();
    const accepted = await call('POST', '/api/workspaces/invites/accept', joiner.headers, { inviteToken });
    expect(await accepted.json()).toEqual({ ok: true, workspaceId: w.id });
    const { members } = await (await call('GET', `/api/workspaces/${w.id}/members`, joiner.headers)).json<any>();
    expect(members).toContainEqual(expect.objectContaining({ userId: joiner.id, role: 'editor' }));
    expect((await call('POST', '/api/workspaces/invites/accept', users.outsider.headers, { inviteToken })).status).toBe(404);

    const second = await (await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'owner' })).json<{ inviteToken: string }>();
    expect((await call('POST', '/api/workspaces/invites/accept', users.viewer.headers, { inviteToken: second.inviteToken })).status).toBe(200);
    const after = await (await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).json<any>();
    expect(after.members).toContainEqual(expect.objectContaining({ userId: users.viewer.id, role: 'viewer' }));
  });

  it('stores only a hash of the invite token and bounds its lifetime', async () => {
    const w = await team();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    const { results } = await env.DB.prepare('SELECT * FROM invites WHERE workspace_id = ?').bind(w.id).all();
    expect(JSON.stringify(results)).not.toContain(inviteToken);
    expect((await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer', expiresInSeconds: 10 })).status).toBe(400);
    expect((await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer', expiresInSeconds: 365 * 86400 })).status).toBe(400);
  });
});

/** An owner invite made by a co-owner `creator` of a fresh team (owner: users.owner). */
async function coOwnerInvite() {
  const w = await team();
  const creator = await signedInUser();
  await upsertMember(env, w.id, creator.id, 'owner');
  const res = await call('POST', `/api/workspaces/${w.id}/invites`, creator.headers, { role: 'owner' });
  const { inviteToken } = await res.json<{ inviteToken: string }>();
  return { w, creator, inviteToken };
}

/** The two ways an invite is claimed: accepted by a signed-in user, or used to register. */
const claimPaths = {
  accept: async (inviteToken: string) => (await call('POST', '/api/workspaces/invites/accept', (await signedInUser()).headers, { inviteToken })).status,
  register: async (inviteToken: string) => {
    const email = uniqueEmail('claimer');
    const res = await api(
      '/api/basic-auth/register',
      json({ email, password: PASSWORD, confirmPassword: PASSWORD, inviteToken }, { 'cf-connecting-ip': randomIp() }),
    );
    // Registration answers 200 for a taken email too: whether an account exists is what counts.
    const signedIn = (await signInBearer(email)).res.status === 200;
    return res.status === 200 && signedIn ? 200 : res.status;
  },
};

const owners = async (workspaceId: string) =>
  (
    await env.DB.prepare("SELECT user_id FROM members WHERE workspace_id = ? AND role = 'owner' ORDER BY user_id").bind(workspaceId).all<{ user_id: string }>()
  ).results.map((r) => r.user_id);

describe('invite takeover (SECURITY.md §32)', () => {
  for (const [path, claim] of Object.entries(claimPaths)) {
    it(`${path}: an invite from a co-owner who was since removed admits no one`, async () => {
      const { w, creator, inviteToken } = await coOwnerInvite();
      expect((await call('DELETE', `/api/workspaces/${w.id}/members/${creator.id}`, users.owner.headers)).status).toBe(200);
      expect(await claim(inviteToken)).toBe(path === 'accept' ? 404 : 403);
      expect(await owners(w.id)).toEqual([users.owner.id]);
    });

    it(`${path}: an invite from a co-owner who was since demoted to viewer admits no one`, async () => {
      const { w, creator, inviteToken } = await coOwnerInvite();
      expect((await call('PUT', `/api/workspaces/${w.id}/members/${creator.id}`, users.owner.headers, { role: 'viewer' })).status).toBe(200);
      expect(await claim(inviteToken)).toBe(path === 'accept' ? 404 : 403);
      expect(await owners(w.id)).toEqual([users.owner.id]);
    });

    it(`${path}: an invite from a co-owner who is still an owner admits (control)`, async () => {
      const { inviteToken } = await coOwnerInvite();
      expect(await claim(inviteToken)).toBe(200);
    });
  }

  it('an invite from a creator who left by themselves admits no one', async () => {
    const { w, creator, inviteToken } = await coOwnerInvite();
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${creator.id}`, creator.headers)).status).toBe(200);
    expect(await claimPaths.accept(inviteToken)).toBe(404);
  });

  it('a demotion through the admin API expires the invites for good: promoting the creator again does not revive them', async () => {
    const { w, creator, inviteToken } = await coOwnerInvite();
    const admin = await signedInUser({ isAdmin: true });
    const adminHeaders = { ...admin.headers, 'x-or3-admin-intent': 'admin' };
    expect((await call('PUT', `/api/admin/workspaces/${w.id}/members/${creator.id}`, adminHeaders, { role: 'editor' })).status).toBe(200);
    const row = await env.DB.prepare('SELECT expires_at FROM invites WHERE workspace_id = ? AND created_by = ?')
      .bind(w.id, creator.id)
      .first<{ expires_at: number }>();
    expect(row!.expires_at).toBeLessThanOrEqual(Date.now());
    expect((await call('PUT', `/api/admin/workspaces/${w.id}/members/${creator.id}`, adminHeaders, { role: 'owner' })).status).toBe(200);
    expect(await claimPaths.accept(inviteToken)).toBe(404);
  });

  it('a removal through the admin API expires the creator’s invites, and no one else’s', async () => {
    const { w, creator, inviteToken } = await coOwnerInvite();
    const kept = await (await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer' })).json<{ inviteToken: string }>();
    const admin = await signedInUser({ isAdmin: true });
    expect((await call('DELETE', `/api/admin/workspaces/${w.id}/members/${creator.id}`, { ...admin.headers, 'x-or3-admin-intent': 'admin' })).status).toBe(200);
    // Re-adding the creator as owner: the old invite stays dead, the other owner's still works.
    await upsertMember(env, w.id, creator.id, 'owner');
    expect(await claimPaths.accept(inviteToken)).toBe(404);
    expect(await claimPaths.accept(kept.inviteToken)).toBe(200);
  });

  it('a refused demotion (the last owner) expires nothing', async () => {
    const w = await team();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.owner.id}`, users.owner.headers, { role: 'viewer' })).status).toBe(409);
    expect(await claimPaths.accept(inviteToken)).toBe(200);
  });
});

describe('listing and revoking invites', () => {
  it('owners list pending invites with role, creator and expiry, and never the token or its hash', async () => {
    const w = await team();
    const made = [];
    for (const role of ['viewer', 'editor', 'owner']) {
      const email = role === 'owner' ? { email: 'Next.Owner@Example.com' } : {};
      made.push(
        await (
          await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role, expiresInSeconds: 3600, ...email })
        ).json<{ inviteToken: string; expiresAt: string }>(),
      );
    }
    // One accepted and one expired: neither is pending any more.
    expect((await call('POST', '/api/workspaces/invites/accept', (await signedInUser()).headers, { inviteToken: made[0]!.inviteToken })).status).toBe(200);
    await env.DB.prepare("UPDATE invites SET expires_at = ? WHERE workspace_id = ? AND role = 'editor'")
      .bind(Date.now() - 1, w.id)
      .run();

    const res = await call('GET', `/api/workspaces/${w.id}/invites`, users.owner.headers);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('no-store');
    const text = await res.text();
    const { invites } = JSON.parse(text);
    expect(invites).toEqual([
      { id: expect.any(String), role: 'owner', createdBy: users.owner.id, email: 'next.owner@example.com', expiresAt: made[2]!.expiresAt },
    ]);
    const { results } = await env.DB.prepare('SELECT token_hash FROM invites WHERE workspace_id = ?').bind(w.id).all<{ token_hash: string }>();
    for (const secret of [...made.map((m) => m.inviteToken), ...results.map((r) => r.token_hash)]) expect(text).not.toContain(secret);
  });

  it('editors, viewers and outsiders may neither list nor revoke (403); without auth 401', async () => {
    const w = await team();
    await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer' });
    const { invites } = await (await call('GET', `/api/workspaces/${w.id}/invites`, users.owner.headers)).json<any>();
    for (const role of ['editor', 'viewer', 'outsider'] as const) {
      expect((await call('GET', `/api/workspaces/${w.id}/invites`, users[role].headers)).status, role).toBe(403);
      expect((await call('DELETE', `/api/workspaces/${w.id}/invites/${invites[0].id}`, users[role].headers)).status, role).toBe(403);
    }
    expect((await call('GET', `/api/workspaces/${w.id}/invites`, {})).status).toBe(401);
    expect((await call('DELETE', `/api/workspaces/${w.id}/invites/${invites[0].id}`, {})).status).toBe(401);
    await expect((await call('GET', `/api/workspaces/${w.id}/invites`, users.owner.headers)).json()).resolves.toEqual({ invites });
  });

  it('an owner revokes a pending invite: it no longer admits anyone, and a second revoke is 404', async () => {
    const w = await team();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'owner' })
    ).json<{ inviteToken: string }>();
    const { invites } = await (await call('GET', `/api/workspaces/${w.id}/invites`, users.owner.headers)).json<any>();
    const revoke = await call('DELETE', `/api/workspaces/${w.id}/invites/${invites[0].id}`, users.owner.headers);
    expect(revoke.status).toBe(200);
    expect(await revoke.json()).toEqual({ ok: true });
    expect(await claimPaths.accept(inviteToken)).toBe(404);
    expect(await claimPaths.register(inviteToken)).toBe(403);
    expect((await (await call('GET', `/api/workspaces/${w.id}/invites`, users.owner.headers)).json<any>()).invites).toEqual([]);
    expect((await call('DELETE', `/api/workspaces/${w.id}/invites/${invites[0].id}`, users.owner.headers)).status).toBe(404);
  });

  it("an unknown invite, or another workspace's, is 404 and stays usable", async () => {
    const mine = await team();
    const theirs = await createOwnedWorkspace(env, users.editor.id, 'Theirs', null);
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${theirs}/invites`, users.editor.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    const { invites } = await (await call('GET', `/api/workspaces/${theirs}/invites`, users.editor.headers)).json<any>();
    const res = await call('DELETE', `/api/workspaces/${mine.id}/invites/${invites[0].id}`, users.owner.headers);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: 'invite_not_found' });
    expect((await call('DELETE', `/api/workspaces/${mine.id}/invites/${crypto.randomUUID()}`, users.owner.headers)).status).toBe(404);
    expect(await claimPaths.accept(inviteToken)).toBe(200);
  });
});

describe('workspace creation limit (SECURITY.md §36)', () => {
  const create = (user: SignedIn, name: string) => call('POST', '/api/workspaces', user.headers, { name });

  it('the 21st workspace a user creates within an hour is refused with 429 and Retry-After; other users are not affected', async () => {
    const user = await signedInUser();
    for (let i = 1; i <= 20; i++) expect((await create(user, `W${i}`)).status, `#${i}`).toBe(200);
    const refused = await create(user, 'W21');
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(await refused.json()).toEqual({ error: 'rate_limited', message: `Rate limit exceeded. Retry after ${retryAfter}s` });
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM workspaces WHERE created_by = ?').bind(user.id).first<{ n: number }>())!;
    expect(n).toBe(20);
    expect((await create(users.outsider, 'Mine')).status).toBe(200);
  });

  it('counts deleted workspaces too, frees a slot when the oldest creation leaves the hour, and says when', async () => {
    const user = await signedInUser();
    const limited = (name: string) => apiWithEnv({ OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR: '2' }, '/api/workspaces', json({ name }, user.headers));
    const first = await (await limited('A')).json<{ id: string }>();
    expect((await call('DELETE', `/api/workspaces/${first.id}`, user.headers)).status).toBe(200);
    expect((await limited('B')).status).toBe(200);
    expect((await limited('C')).status).toBe(429);
    // The first creation is now 59 min 50 s old: a slot frees in about 10 s.
    await env.DB.prepare('UPDATE workspaces SET created_at = ? WHERE id = ?')
      .bind(Date.now() - 3_590_000, first.id)
      .run();
    const soon = await limited('C');
    expect(soon.status).toBe(429);
    expect(Number(soon.headers.get('retry-after'))).toBeGreaterThanOrEqual(9);
    expect(Number(soon.headers.get('retry-after'))).toBeLessThanOrEqual(11);
    await env.DB.prepare('UPDATE workspaces SET created_at = ? WHERE id = ?')
      .bind(Date.now() - 3_600_001, first.id)
      .run();
    expect((await limited('C')).status).toBe(200);
  });

  it('parallel creations cannot overshoot the limit', async () => {
    const user = await signedInUser();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => apiWithEnv({ OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR: '4' }, '/api/workspaces', json({ name: `P${i}` }, user.headers))),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(4);
    expect(results.filter((r) => r.status === 429)).toHaveLength(6);
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM members WHERE user_id = ?').bind(user.id).first<{ n: number }>())!;
    expect(n).toBe(4);
  });
});

describe('browser surface on real routes', () => {
  it('refuses a cookie-authenticated workspace creation from a foreign origin, and form posts', async () => {
    const { email } = await makeUser();
    const cookie = `or3_access=${(await signInCookies(email)).access}`;
    const post = (headers: Record<string, string>, body: string) => api('/api/workspaces', { method: 'POST', headers: { cookie, ...headers }, body });
    expect((await post({ origin: 'https://evil.example.net', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ origin: 'https://evil.example.net', 'content-type': 'text/plain' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ origin: 'https://app.example.com', 'content-type': 'text/plain' }, '{"name":"x"}')).status).toBe(415);
    expect((await post({ origin: 'https://app.example.com', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(200);
  });
});
