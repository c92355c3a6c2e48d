/**
 * D1 access for the deployment admin API (docs/admin.md): searching users and workspaces, and
 * granting or revoking the deployment-admin flag. Membership changes reuse workspace-records/store.ts,
 * so admins and owners obey the same last-owner rule.
 */
import { PLATFORM } from '../limits';

export interface AdminPage {
  /** Matched literally, anywhere in an email, a display name or a workspace name; or an exact id. */
  q?: string;
  limit: number;
  offset: number;
}

/**
 * A LIKE pattern that matches `q` literally anywhere (with `ESCAPE '\'`); null when it would be
 * longer than D1 accepts, which the caller answers as a bad query.
 */
export function likePattern(q: string): string | null {
  const pattern = `%${q.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
  return new TextEncoder().encode(pattern).byteLength > PLATFORM.likePatternBytes ? null : pattern;
}

/** Users newest first, a page at a time (one more row is read to tell whether another page exists). */
/**
 * What a list or search needs of D1: a plain binding, or a D1 session (`withSession`) that may
 * read from a replica near the caller. The admin lists take the latter (`adminReader`): an admin
 * searching a moment after a change may see the list a replica's lag old, which a reload fixes.
 */
export type D1Reader = Pick<D1Database, 'prepare' | 'batch'>;

/** A read-only D1 session for the admin lists: any replica may answer (docs/architecture.md "Capacity model"). */
export const adminReader = (db: D1Database): D1Reader => db.withSession('first-unconstrained');

export async function listUsers(db: D1Reader, page: AdminPage & { pattern: string | null }) {
  const { results } = await db
    .prepare(
      `SELECT id, email, display_name, is_admin, disabled_at, created_at FROM users
        WHERE ?1 IS NULL OR lower(coalesce(email, '')) LIKE ?1 ESCAPE '\\' OR lower(coalesce(display_name, '')) LIKE ?1 ESCAPE '\\' OR id = ?2
        ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4`,
    )
    .bind(page.pattern, page.q ?? null, page.limit + 1, page.offset)
    .all<{ id: string; email: string | null; display_name: string | null; is_admin: number; disabled_at: number | null; created_at: number }>();
  return {
    users: results.slice(0, page.limit).map((u) => ({
      id: u.id,
      email: u.email,
      displayName: u.display_name,
      deploymentAdmin: u.is_admin === 1,
      disabled: u.disabled_at !== null,
      createdAt: new Date(u.created_at).toISOString(),
    })),
    nextOffset: results.length > page.limit ? page.offset + page.limit : null,
  };
}

/** Workspaces newest first with their member counts; deleted ones only when asked for. */
export async function listAllWorkspaces(db: D1Reader, page: AdminPage & { pattern: string | null; includeDeleted: boolean }) {
  const { results } = await db
    .prepare(
      `SELECT w.id, w.name, w.description, w.created_at, w.deleted_at, (SELECT count(*) FROM members m WHERE m.workspace_id = w.id) AS member_count
         FROM workspaces w
        WHERE (?1 IS NULL OR lower(w.name) LIKE ?1 ESCAPE '\\' OR w.id = ?2) AND (?3 = 1 OR w.deleted_at IS NULL)
        ORDER BY w.created_at DESC, w.id LIMIT ?4 OFFSET ?5`,
    )
    .bind(page.pattern, page.q ?? null, page.includeDeleted ? 1 : 0, page.limit + 1, page.offset)
    .all<{ id: string; name: string; description: string | null; created_at: number; deleted_at: number | null; member_count: number }>();
  return {
    workspaces: results.slice(0, page.limit).map((w) => ({
      id: w.id,
      name: w.name,
      description: w.description,
      memberCount: w.member_count,
      createdAt: new Date(w.created_at).toISOString(),
      deletedAt: w.deleted_at === null ? null : new Date(w.deleted_at).toISOString(),
    })),
    nextOffset: results.length > page.limit ? page.offset + page.limit : null,
  };
}

/** Makes a user a deployment admin; false when there is no such user. */
export async function grantAdmin(db: D1Database, userId: string, now = Date.now()): Promise<boolean> {
  const result = await db.prepare('UPDATE users SET is_admin = 1, updated_at = ? WHERE id = ?').bind(now, userId).run();
  return result.meta.changes > 0;
}

/**
 * Takes the flag away unless that would leave no admin who can act. One statement, so the count
 * and the update cannot interleave with another revoke; disabled admins cannot act, so they do
 * not count towards "another admin remains". Revoking a non-admin changes nothing and is 'ok'.
 */
export async function revokeAdmin(db: D1Database, userId: string, now = Date.now()): Promise<'ok' | 'no_user' | 'last_admin'> {
  const result = await db
    .prepare(
      'UPDATE users SET is_admin = 0, updated_at = ? WHERE id = ? AND is_admin = 1 AND (SELECT count(*) FROM users AS other WHERE other.is_admin = 1 AND other.disabled_at IS NULL AND other.id != users.id) > 0',
    )
    .bind(now, userId)
    .run();
  if (result.meta.changes > 0) return 'ok';
  const row = await db.prepare('SELECT is_admin FROM users WHERE id = ?').bind(userId).first<{ is_admin: number }>();
  if (!row) return 'no_user';
  return row.is_admin === 1 ? 'last_admin' : 'ok';
}

// ---------------------------------------------------------------------------------------------
// Import (docs/admin.md "Import"): every write is conditional, so importing twice changes nothing.

/** A user line of an import stream, validated (the email normalised, the hash a format we verify). */
export interface ImportedUser {
  id: string;
  email: string | null;
  displayName: string | null;
  passwordHash: string | null;
  identities: { provider: string; issuer: string; subject: string; email: string | null }[];
  createdAt: number;
}

export type UserImport =
  | {
      id: string;
      outcome: 'created' | 'unchanged';
      /** Identities added; identities another user holds; identities NOT linked because the account existed and the operator did not confirm it. */
      identities: { added: number; taken: string[]; unconfirmed: string[] };
    }
  | { id: string; outcome: 'email_taken'; existingUserId: string };

const identityKey = (i: { provider: string; issuer: string; subject: string }) => `${i.provider} ${i.issuer} ${i.subject}`;

/**
 * Creates the users that do not exist yet, keeping their ids, with their federated identities.
 * A user whose id exists is left as it is (a re-import never reverts a password changed since);
 * one whose email belongs to another user is not created.
 *
 * Identities are linked only to the accounts this call creates, in the same transaction as the
 * account (docs/security.md "Import"): a line naming an EXISTING account never links an
 * identity to it, because whoever holds that identity would then sign in as that account (a
 * hand-edited stream naming the admin's id would hand the admin over). The only exception is an
 * account the operator named in `confirmed` (the importer's `linkExisting`), and the caller
 * reports every such link. An identity another user holds is reported, never moved.
 *
 * Existence is read first and the inserts carry no ON CONFLICT for the account: an account
 * created by someone else between the read and the write fails the whole batch (nothing is
 * written), and the batch is tried again against what is there now.
 */
export async function importUsers(db: D1Database, users: ImportedUser[], confirmed: ReadonlySet<string> = new Set()): Promise<UserImport[]> {
  if (!users.length) return [];
  for (let attempt = 1; ; attempt++) {
    try {
      return await importUsersOnce(db, users, confirmed);
    } catch (err) {
      if (attempt >= 3 || !/UNIQUE constraint failed: users\./.test(err instanceof Error ? err.message : String(err))) throw err;
    }
  }
}

async function importUsersOnce(db: D1Database, users: ImportedUser[], confirmed: ReadonlySet<string>): Promise<UserImport[]> {
  const { results: present } = await db
    .prepare(
      `SELECT id, email FROM users WHERE id IN (SELECT value FROM json_each(?1))
        OR email IN (SELECT value FROM json_each(?2))`,
    )
    .bind(JSON.stringify(users.map((u) => u.id)), JSON.stringify(users.flatMap((u) => (u.email ? [u.email] : []))))
    .all<{ id: string; email: string | null }>();
  const wanted = users.flatMap((u) => u.identities.map((i) => [i.provider, i.issuer, i.subject]));
  const { results: held } = wanted.length
    ? await db
        .prepare(
          `SELECT i.user_id, i.provider, i.issuer, i.subject FROM identities i JOIN json_each(?1) j
              ON i.provider = json_extract(j.value, '$[0]') AND i.issuer = json_extract(j.value, '$[1]') AND i.subject = json_extract(j.value, '$[2]')`,
        )
        .bind(JSON.stringify(wanted))
        .all<{ user_id: string; provider: string; issuer: string; subject: string }>()
    : { results: [] };
  const holder = new Map(held.map((h) => [identityKey(h), h.user_id]));
  const ids = new Set(present.map((p) => p.id));
  const statements: D1PreparedStatement[] = [];
  const plans: { outcome: UserImport; inserts: number[] }[] = [];
  const seen = new Set<string>();
  const emails = new Map(present.flatMap((p) => (p.email ? [[p.email, p.id] as const] : [])));
  for (const u of users) {
    const exists = ids.has(u.id) || seen.has(u.id);
    const emailOwner = u.email ? emails.get(u.email) : undefined;
    if (!exists && emailOwner !== undefined && emailOwner !== u.id) {
      plans.push({ outcome: { id: u.id, outcome: 'email_taken', existingUserId: emailOwner }, inserts: [] });
      continue;
    }
    const identities = { added: 0, taken: [] as string[], unconfirmed: [] as string[] };
    const inserts: number[] = [];
    if (!exists) {
      seen.add(u.id);
      if (u.email) emails.set(u.email, u.id);
      statements.push(
        db
          .prepare(
            `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, ?5)`,
          )
          .bind(u.id, u.email, u.displayName, u.passwordHash, u.createdAt),
      );
    }
    for (const [n, identity] of u.identities.entries()) {
      const owner = holder.get(identityKey(identity));
      if (owner === u.id) continue; // already this account's (a re-import)
      const label = `identity ${n + 1} (${identity.provider} ${identity.subject})`;
      if (owner !== undefined) {
        identities.taken.push(`${label} belongs to user ${owner}`);
        continue;
      }
      if (exists && !confirmed.has(u.id)) {
        identities.unconfirmed.push(
          `${label} not linked: user ${u.id} already exists here, and an import links identities to an existing account only when the operator confirms it (linkExisting=${u.id})`,
        );
        continue;
      }
      holder.set(identityKey(identity), u.id);
      inserts.push(statements.length);
      statements.push(
        db
          .prepare(
            `INSERT INTO identities (id, user_id, provider, issuer, subject, email, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT DO NOTHING`,
          )
          .bind(crypto.randomUUID(), u.id, identity.provider, identity.issuer, identity.subject, identity.email, u.createdAt),
      );
    }
    plans.push({ outcome: { id: u.id, outcome: exists ? 'unchanged' : 'created', identities }, inserts });
  }
  const results = statements.length ? await db.batch(statements) : [];
  return plans.map(({ outcome, inserts }) => {
    if (outcome.outcome !== 'email_taken') outcome.identities.added = inserts.filter((at) => (results[at]?.meta.changes ?? 0) > 0).length;
    return outcome;
  });
}

/**
 * Creates an imported workspace unless one with that id exists (deleted or not); no members
 * yet: they come from the stream. Returns whether it was created.
 */
export async function ensureImportedWorkspace(
  db: D1Database,
  input: { id: string; name: string; description: string | null; createdBy: string; createdAt: number },
  now = Date.now(),
): Promise<boolean> {
  const result = await db
    .prepare('INSERT INTO workspaces (id, name, description, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING')
    .bind(input.id, input.name, input.description, input.createdBy, input.createdAt, now)
    .run();
  return result.meta.changes > 0;
}

export type MemberImport = 'added' | 'updated' | 'unchanged' | 'no_user';

/**
 * What importing these members would do (no such user, added, updated, unchanged), from D1's
 * copy; the caller writes the changes through the workspace's object, the authority
 * (src/workspaces/members.ts `applyMemberChanges`), which makes the copy follow.
 */
export async function importMembers(
  db: D1Database,
  workspaceId: string,
  members: { userId: string; role: string; createdAt: number }[],
): Promise<MemberImport[]> {
  if (!members.length) return [];
  const { results } = await db
    .prepare(
      `SELECT u.id, m.role FROM users u LEFT JOIN members m ON m.workspace_id = ?1 AND m.user_id = u.id
        WHERE u.id IN (SELECT value FROM json_each(?2))`,
    )
    .bind(workspaceId, JSON.stringify(members.map((m) => m.userId)))
    .all<{ id: string; role: string | null }>();
  const known = new Map(results.map((r) => [r.id, r.role]));
  const outcome: MemberImport[] = members.map((m) =>
    !known.has(m.userId) ? 'no_user' : known.get(m.userId) === null ? 'added' : known.get(m.userId) === m.role ? 'unchanged' : 'updated',
  );
  return outcome;
}

export type InviteImport = 'added' | 'unchanged' | 'expired' | 'no_creator' | 'token_taken';

/**
 * Adds pending invites with their token hash (an invite link made by the source still works:
 * both hash the whole token with SHA-256), unless expired, made by a user who does not exist
 * here, or already present.
 */
export async function importInvites(
  db: D1Database,
  workspaceId: string,
  invites: { id: string; role: string; tokenHash: string; createdBy: string; createdAt: number; expiresAt: number }[],
  now = Date.now(),
): Promise<InviteImport[]> {
  if (!invites.length) return [];
  const { results: creators } = await db
    .prepare('SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?))')
    .bind(JSON.stringify(invites.map((i) => i.createdBy)))
    .all<{ id: string }>();
  const { results: present } = await db
    .prepare('SELECT id, token_hash FROM invites WHERE id IN (SELECT value FROM json_each(?1)) OR token_hash IN (SELECT value FROM json_each(?2))')
    .bind(JSON.stringify(invites.map((i) => i.id)), JSON.stringify(invites.map((i) => i.tokenHash)))
    .all<{ id: string; token_hash: string }>();
  const outcome: InviteImport[] = invites.map((i) => {
    if (present.some((p) => p.id === i.id)) return 'unchanged';
    if (present.some((p) => p.token_hash === i.tokenHash)) return 'token_taken';
    if (i.expiresAt <= now) return 'expired';
    return creators.some((c) => c.id === i.createdBy) ? 'added' : 'no_creator';
  });
  const writes = invites.filter((_i, n) => outcome[n] === 'added');
  if (writes.length) {
    await db.batch(
      writes.map((i) =>
        db
          .prepare(
            'INSERT INTO invites (id, workspace_id, role, token_hash, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
          )
          .bind(i.id, workspaceId, i.role, i.tokenHash, i.createdBy, i.createdAt, i.expiresAt),
      ),
    );
  }
  return outcome;
}
