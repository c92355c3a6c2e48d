/**
 * D1 schema: identity and membership data (users, linked identities, workspaces, members,
 * sessions, refresh tokens, invites, login failure counters). D1 is a single writer and sits
 * on the auth path of every request, so every lookup that path makes has an index here.
 *
 * Times are epoch milliseconds (INTEGER). Ids are random UUIDs (TEXT). Generate SQL with
 * `npm run db:generate`; never edit a migration that has been applied.
 */

import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** Lower-cased; null for federated users whose IdP gave none. Unique when present. */
    email: text('email'),
    displayName: text('display_name'),
    /** PHC string (scrypt); null for users who only sign in through a federated identity. */
    passwordHash: text('password_hash'),
    /** Bumped to invalidate every access token of the user at once (`ver` claim). */
    tokenVersion: integer('token_version').notNull().default(0),
    /** Deployment admin: a user flag, not a workspace role. */
    isAdmin: integer('is_admin', { mode: 'boolean' }).notNull().default(false),
    activeWorkspaceId: text('active_workspace_id'),
    disabledAt: integer('disabled_at'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [uniqueIndex('users_email_unique').on(t.email), index('users_admin_idx').on(t.isAdmin)],
);

/** A federated identity: users are keyed by (provider, issuer, subject), never linked by email. */
export const identities = sqliteTable(
  'identities',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    provider: text('provider').notNull(),
    issuer: text('issuer').notNull(),
    subject: text('subject').notNull(),
    email: text('email'),
    createdAt: integer('created_at').notNull(),
    lastSeenAt: integer('last_seen_at').notNull(),
  },
  (t) => [uniqueIndex('identities_provider_subject_unique').on(t.provider, t.issuer, t.subject), index('identities_user_idx').on(t.userId)],
);

export const workspaces = sqliteTable(
  'workspaces',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    description: text('description'),
    createdBy: text('created_by').notNull(),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    /** Soft delete: hidden from members, restorable by a deployment admin. */
    deletedAt: integer('deleted_at'),
    /**
     * OR3's workspace setting `admin.guest_access.enabled`, stored and answered as OR3 does
     * (docs/admin.md "Guest access"); no route reads it: there is no guest path.
     */
    guestAccess: integer('guest_access').notNull().default(0),
  },
  // created_by + created_at: counting a user's recent creations (the per-hour creation limit).
  (t) => [index('workspaces_created_idx').on(t.createdAt), index('workspaces_creator_idx').on(t.createdBy, t.createdAt)],
);

export const members = sqliteTable(
  'members',
  {
    workspaceId: text('workspace_id')
      .notNull()
      .references(() => workspaces.id, { onDelete: 'cascade' }),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: text('role', { enum: ['owner', 'editor', 'viewer'] }).notNull(),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.userId] }), index('members_user_idx').on(t.userId, t.workspaceId)],
);

export const sessions = sqliteTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: integer('created_at').notNull(),
    /** Absolute end of the session family, whatever the refresh activity. */
    expiresAt: integer('expires_at').notNull(),
    lastSeenAt: integer('last_seen_at').notNull(),
    revokedAt: integer('revoked_at'),
    userAgent: text('user_agent'),
  },
  (t) => [index('sessions_user_idx').on(t.userId)],
);

/** Opaque refresh tokens `id.secret`: only SHA-256(secret) is stored. */
export const refreshTokens = sqliteTable(
  'refresh_tokens',
  {
    id: text('id').primaryKey(),
    sessionId: text('session_id')
      .notNull()
      .references(() => sessions.id, { onDelete: 'cascade' }),
    userId: text('user_id').notNull(),
    secretHash: text('secret_hash').notNull(),
    parentId: text('parent_id'),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
    usedAt: integer('used_at'),
    revokedAt: integer('revoked_at'),
  },
  (t) => [index('refresh_tokens_session_idx').on(t.sessionId), uniqueIndex('refresh_tokens_parent_unique').on(t.parentId)],
);

export const invites = sqliteTable(
  'invites',
  {
    id: text('id').primaryKey(),
    workspaceId: text('workspace_id')
      .notNull()
      .references(() => workspaces.id, { onDelete: 'cascade' }),
    role: text('role', { enum: ['owner', 'editor', 'viewer'] }).notNull(),
    /** SHA-256 of the invite token; the token itself is shown once. */
    tokenHash: text('token_hash').notNull(),
    createdBy: text('created_by').notNull(),
    /** Lower-cased address the invite was made for (OR3's invite routes name one); null when none was given. */
    email: text('email'),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
    acceptedAt: integer('accepted_at'),
    acceptedBy: text('accepted_by'),
  },
  (t) => [uniqueIndex('invites_token_hash_unique').on(t.tokenHash), index('invites_workspace_idx').on(t.workspaceId)],
);

/**
 * One-time setup links for the first deployment admin (docs/operations.md "First admin"): written
 * by `npm run deploy` (or `npm run setup-link`) while no admin exists, redeemed once by
 * `POST /api/setup/admin`, and deleted when an admin is created.
 */
export const setupTokens = sqliteTable('setup_tokens', {
  /** SHA-256 of the token; the token itself is only in the printed link. */
  tokenHash: text('token_hash').primaryKey(),
  createdAt: integer('created_at').notNull(),
});
