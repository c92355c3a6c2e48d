/**
 * The workspace Durable Object's SQLite schema. One database per workspace, so isolation
 * between workspaces holds by construction. Generate SQL with `npm run db:generate:do`; never
 * edit an applied migration. docs/schema.md lists the queries each index serves.
 */
import { sql } from 'drizzle-orm';
import { check, index, integer, primaryKey, sqliteTable, text } from 'drizzle-orm/sqlite-core';

/** Small key/value facts: the version counter, the GC floor, the snapshot-token key. */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

/**
 * Every accepted op, LWW losers included, in version order. `server_version` is the rowid, so
 * pull is a range scan of the primary key; `op_id` is unique for idempotent replays.
 */
export const changeLog = sqliteTable('change_log', {
  serverVersion: integer('server_version').primaryKey(),
  opId: text('op_id').notNull().unique(),
  tableName: text('table_name').notNull(),
  pk: text('pk').notNull(),
  op: text('op', { enum: ['put', 'delete'] }).notNull(),
  /** The stored payload (JSON), null for deletes. */
  payload: text('payload'),
  clock: integer('clock').notNull(),
  hlc: text('hlc').notNull(),
  deviceId: text('device_id').notNull(),
  /** Who pushed it; for notifications also whose it is (user_id is forced to the pusher). */
  userId: text('user_id').notNull(),
  fingerprint: text('fingerprint').notNull(),
  createdAt: integer('created_at').notNull(),
  /** What this entry counts towards the sync storage quota (protocol.ts `entryBytes`). */
  size: integer('size').notNull().default(0),
});

/**
 * The materialized state: one entry per (table, pk), a live row or a tombstone (`deleted = 1`),
 * holding the winning revision (clock, hlc, op_id). One entry per entity means tombstones
 * cannot grow without bound.
 */
export const rows = sqliteTable(
  'rows',
  {
    tableName: text('table_name').notNull(),
    pk: text('pk').notNull(),
    payload: text('payload'),
    clock: integer('clock').notNull(),
    hlc: text('hlc').notNull(),
    opId: text('op_id').notNull(),
    /** The version of the winning op (the one whose payload and stamp the row holds). */
    serverVersion: integer('server_version').notNull(),
    /**
     * The version of the key's most recent logged op, winner or loser: pull serves each key
     * whose changed_version is above the cursor once, with its winning revision, at this
     * version (a compacted pull, docs/sync.md).
     */
    changedVersion: integer('changed_version').notNull().default(0),
    /** The device of the winning op (the stamp pull serves; the log may have been collected). */
    deviceId: text('device_id').notNull().default(''),
    deleted: integer('deleted').notNull(),
    deletedAt: integer('deleted_at'),
    /** Owner of a notifications row; null for shared tables. */
    ownerId: text('owner_id'),
    /** What this entry counts towards the sync storage quota (protocol.ts `entryBytes`). */
    size: integer('size').notNull().default(0),
    /**
     * The capabilities the winning payload needs of its readers and writers (a bit mask,
     * src/sync/capabilities.ts): 1 a generic file, 2 a workspace item. The capability gates
     * read it instead of parsing payloads (docs/api.md "Capabilities").
     */
    flags: integer('flags').notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.tableName, t.pk] }),
    index('rows_flags_idx')
      .on(t.flags)
      .where(sql`flags != 0 AND deleted = 0`),
    index('rows_tombstones_idx')
      .on(t.deletedAt)
      .where(sql`deleted = 1`),
    index('rows_changed_idx').on(t.changedVersion),
    // The service API's thread reader (src/service/reader.ts): a thread's live messages in
    // conversation order (index, order_key, id), keyset-paged, whatever the workspace's size.
    index('rows_thread_messages_idx')
      .on(
        sql`json_extract(${t.payload}, '$.thread_id')`,
        sql`json_extract(${t.payload}, '$.index')`,
        sql`coalesce(json_extract(${t.payload}, '$.order_key'), '')`,
        t.pk,
      )
      .where(sql`table_name = 'messages' AND deleted = 0 AND json_valid(payload)`),
  ],
);

/** Per-device pull cursors: GC never deletes what the slowest live device still needs. */
export const deviceCursors = sqliteTable('device_cursors', {
  deviceId: text('device_id').primaryKey(),
  userId: text('user_id').notNull(),
  version: integer('version').notNull(),
  updatedAt: integer('updated_at').notNull(),
});

/**
 * Blob references derived from `file_hashes` of live messages and posts: a file's ref count is
 * the number of entries with its hash. Never taken from clients.
 */
export const fileRefs = sqliteTable(
  'file_refs',
  {
    hash: text('hash').notNull(),
    tableName: text('table_name').notNull(),
    pk: text('pk').notNull(),
  },
  (t) => [primaryKey({ columns: [t.hash, t.tableName, t.pk] }), index('file_refs_entity_idx').on(t.tableName, t.pk)],
);

/** Single-use WebSocket tickets, kept until they expire. */
export const wsTickets = sqliteTable('ws_tickets', {
  nonce: text('nonce').primaryKey(),
  expiresAt: integer('expires_at').notNull(),
});

/**
 * Committed blobs of the workspace: what counts towards its quota. `gc_started_at` marks a blob
 * whose R2 object is being deleted by GC; uploads and commits of that hash wait until it is gone.
 */
export const blobs = sqliteTable(
  'blobs',
  {
    hash: text('hash').primaryKey(),
    sizeBytes: integer('size_bytes').notNull(),
    mimeType: text('mime_type').notNull(),
    storageKey: text('storage_key').notNull(),
    name: text('name'),
    kind: text('kind'),
    committedAt: integer('committed_at').notNull(),
    gcStartedAt: integer('gc_started_at'),
  },
  (t) => [index('blobs_committed_idx').on(t.committedAt)],
);

/**
 * Upload intents (docs/api.md "Upload intents"): what presign-upload hands out, a one-time
 * authorization for one commit and a reservation of `reserved_bytes` of the storage quota while
 * `active` and unexpired. `consumed` by its commit, `cancelled`, or `expired` (an expired
 * intent reserves nothing, whether or not its status was updated yet).
 */
export const uploadIntents = sqliteTable(
  'upload_intents',
  {
    id: text('id').primaryKey(),
    hash: text('hash').notNull(),
    mimeType: text('mime_type').notNull(),
    sizeBytes: integer('size_bytes').notNull(),
    reservedBytes: integer('reserved_bytes').notNull(),
    status: text('status', { enum: ['active', 'consumed', 'cancelled', 'expired'] }).notNull(),
    userId: text('user_id').notNull(),
    /** 1 when the presign declared `file_kind_capability` (a client that commits with the intent): its file_meta must wait for the commit. */
    strict: integer('strict').notNull().default(0),
    expiresAt: integer('expires_at').notNull(),
    createdAt: integer('created_at').notNull(),
    consumedAt: integer('consumed_at'),
  },
  (t) => [index('upload_intents_active_idx').on(t.status, t.expiresAt), index('upload_intents_hash_idx').on(t.hash, t.status)],
);

/**
 * The workspace's webhooks (docs/webhooks.md): kept here, beside the data they watch, so the push
 * path decides "does any hook want this event?" from the object's own memory, never from D1.
 * `secret` signs deliveries; `previous_secret` is still honoured until `previous_until` (ms)
 * after a rotation. `failing_since`: the first failed delivery since the last success;
 * `disabled_reason` says why the object turned the hook off.
 */
export const webhooks = sqliteTable('webhooks', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  /** JSON array of event names (or "*"). */
  events: text('events').notNull(),
  enabled: integer('enabled').notNull(),
  secret: text('secret').notNull(),
  previousSecret: text('previous_secret'),
  previousUntil: integer('previous_until'),
  createdBy: text('created_by').notNull(),
  createdAt: integer('created_at').notNull(),
  updatedAt: integer('updated_at').notNull(),
  failingSince: integer('failing_since'),
  disabledReason: text('disabled_reason'),
});

/**
 * The outbox: one row per commit that raised webhook events, written in the push's own
 * transaction (`events`: JSON `[eventId, serverVersion, event, hookIds[]][]`), deleted once its
 * deliveries are on the Queue. The bodies are not copied: the change log holds each winning
 * write, and the consumer builds the body from it.
 */
export const webhookOutbox = sqliteTable('webhook_outbox', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  events: text('events').notNull(),
});

/** Bodies of the events that have no change-log entry: test pings and deployment events. */
export const webhookEvents = sqliteTable(
  'webhook_events',
  {
    id: text('id').primaryKey(),
    event: text('event').notNull(),
    body: text('body').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('webhook_events_created_idx').on(t.createdAt)],
);

/**
 * The delivery log: one entry per (event, hook), id `<eventId>:<hookId>`, written by the Queue
 * consumer's reports (never on the push path). `server_version`: the change-log entry the body is
 * made from (null: the body is in webhook_events).
 */
export const webhookDeliveries = sqliteTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    hookId: text('hook_id').notNull(),
    eventId: text('event_id').notNull(),
    event: text('event').notNull(),
    serverVersion: integer('server_version'),
    status: text('status', { enum: ['pending', 'success', 'failed'] }).notNull(),
    attempts: integer('attempts').notNull().default(0),
    lastResponseCode: integer('last_response_code'),
    lastAttemptAt: integer('last_attempt_at'),
    lastError: text('last_error'),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('webhook_deliveries_hook_idx').on(t.hookId, t.createdAt), index('webhook_deliveries_created_idx').on(t.createdAt)],
);

/**
 * Service tokens (docs/service-api.md): only the SHA-256 of the secret is kept. The object is the
 * authority, so a revocation holds from the very next request.
 */
export const serviceTokens = sqliteTable('service_tokens', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  tokenHash: text('token_hash').notNull(),
  /** JSON array: "read", "write". */
  scopes: text('scopes').notNull(),
  createdBy: text('created_by').notNull(),
  createdAt: integer('created_at').notNull(),
  expiresAt: integer('expires_at').notNull(),
  revokedAt: integer('revoked_at'),
  lastUsedAt: integer('last_used_at'),
});

/**
 * The workspace's members: this object is their authority (docs/architecture.md "Members live
 * with their workspace"); D1 and each user's object hold copies. src/workspace-db/roster.ts.
 */
export const rosterMembers = sqliteTable('roster_members', {
  userId: text('user_id').primaryKey(),
  role: text('role').notNull(),
  createdAt: integer('created_at').notNull(),
  updatedAt: integer('updated_at').notNull(),
});

/** When a user was last removed, so a late add made in D1 first is not adopted over a newer removal. */
export const rosterRemoved = sqliteTable('roster_removed', {
  userId: text('user_id').primaryKey(),
  removedAt: integer('removed_at').notNull(),
});

/** One row: when the roster was seeded from D1 (once), and the workspace's row as the object knows it. */
export const rosterState = sqliteTable(
  'roster_state',
  {
    id: integer('id').primaryKey(),
    seededAt: integer('seeded_at').notNull(),
    present: integer('present').notNull(),
    deleted: integer('deleted').notNull(),
    name: text('name').notNull(),
    description: text('description'),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [check('roster_state_single_row', sql`${t.id} = 1`)],
);

/** Users whose copies (D1, their user object's list) must still follow the roster. */
export const rosterOutbox = sqliteTable('roster_outbox', {
  userId: text('user_id').primaryKey(),
  copy: integer('copy').notNull(),
  queuedAt: integer('queued_at').notNull(),
});
