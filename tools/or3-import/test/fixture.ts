/**
 * A small OR3 deployment on disk, built from OR3's own published schema: the tables of
 * Saluana/or3-provider-sqlite's migrations 001–007 (as they stand after 003's rebuild and 006's
 * columns; @1c4faaf) and of Saluana/or3-provider-basic-auth's `runMigrations` (@49f7c97), written
 * the way those providers write them (seconds in the sync database, milliseconds in the auth one,
 * bcryptjs hashes), plus a blob root holding both fs layouts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import bcrypt from 'bcryptjs';

const SYNC_SCHEMA = `
CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, display_name TEXT, active_workspace_id TEXT, created_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE TABLE auth_accounts (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, provider TEXT NOT NULL, provider_user_id TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE UNIQUE INDEX idx_auth_accounts_provider_uid ON auth_accounts (provider, provider_user_id);
CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT, owner_user_id TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()), deleted INTEGER NOT NULL DEFAULT 0, deleted_at INTEGER);
CREATE TABLE workspace_members (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'editor', created_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE UNIQUE INDEX idx_workspace_members_ws_user ON workspace_members (workspace_id, user_id);
CREATE TABLE server_version_counter (workspace_id TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0);
CREATE TABLE change_log (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, server_version INTEGER NOT NULL, table_name TEXT NOT NULL, pk TEXT NOT NULL, op TEXT NOT NULL, payload_json TEXT, clock INTEGER NOT NULL, hlc TEXT NOT NULL, device_id TEXT NOT NULL, op_id TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE INDEX idx_change_log_ws_sv ON change_log (workspace_id, server_version);
CREATE UNIQUE INDEX idx_change_log_op_id ON change_log (op_id);
CREATE TABLE device_cursors (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, device_id TEXT NOT NULL, last_seen_version INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL DEFAULT (unixepoch()), owner_user_id TEXT);
CREATE UNIQUE INDEX idx_device_cursors_ws_device ON device_cursors (workspace_id, device_id);
CREATE TABLE tombstones (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, table_name TEXT NOT NULL, pk TEXT NOT NULL, deleted_at INTEGER NOT NULL, clock INTEGER NOT NULL, server_version INTEGER NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()), hlc TEXT NOT NULL DEFAULT '', op_id TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX idx_tombstones_ws_table_pk ON tombstones(workspace_id, table_name, pk);
CREATE TABLE auth_invites (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', invited_by_user_id TEXT NOT NULL, token_hash TEXT NOT NULL, expires_at INTEGER NOT NULL, accepted_at INTEGER, accepted_user_id TEXT, revoked_at INTEGER, created_at INTEGER NOT NULL DEFAULT (unixepoch()), updated_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE TABLE admin_users (user_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL DEFAULT (unixepoch()), created_by_user_id TEXT);
${['threads', 'messages', 'projects', 'posts', 'kv', 'file_meta', 'notifications']
  .map(
    (
      t,
    ) => `CREATE TABLE s_${t} (id TEXT NOT NULL, workspace_id TEXT NOT NULL, data_json TEXT NOT NULL, clock INTEGER NOT NULL DEFAULT 0, hlc TEXT NOT NULL DEFAULT '', device_id TEXT NOT NULL DEFAULT '', deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL DEFAULT (unixepoch()), updated_at INTEGER NOT NULL DEFAULT (unixepoch()), op_id TEXT NOT NULL DEFAULT '', PRIMARY KEY (workspace_id, id));
CREATE INDEX idx_s_${t}_ws ON s_${t} (workspace_id);`,
  )
  .join('\n')}
`;

const AUTH_SCHEMA = `
CREATE TABLE basic_auth_accounts (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, display_name TEXT, token_version INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE basic_auth_sessions (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, refresh_token_hash TEXT NOT NULL, expires_at INTEGER NOT NULL, revoked_at INTEGER, created_at INTEGER NOT NULL, rotated_from_session_id TEXT, replaced_by_session_id TEXT, ip_address TEXT, user_agent TEXT, rotation_grace_until INTEGER, rotation_grace_refresh_token TEXT);
CREATE TABLE basic_auth_rate_limits (key TEXT PRIMARY KEY, subject TEXT NOT NULL, operation TEXT NOT NULL, window_started_at INTEGER NOT NULL, request_count INTEGER NOT NULL, updated_at INTEGER NOT NULL);
`;

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

export interface Person {
  /** OR3 users.id (our user id after the move). */
  id: string;
  email: string;
  password?: string;
  /** The basic-auth account id (JWT sub), when the person signs in with a password. */
  accountId?: string;
}

export interface Fixture {
  dir: string;
  syncDb: string;
  authDb: string;
  blobs: string;
  /** A suffix making every email of this fixture unique on a shared server. */
  tag: string;
  alice: Person;
  bob: Person;
  carol: Person & { clerkId: string };
  dave: Person;
  team: string;
  solo: string;
  gone: string;
  /** The raw token of Team's pending invite (OR3's core app would have mailed it). */
  inviteToken: string;
  /** Blobs by role in the fixture: their bytes and hash strings as OR3 stored them. */
  blob: Record<'png' | 'pdf' | 'missing' | 'corrupt' | 'solo', { hash: string; bytes: Uint8Array }>;
  clerkIssuer: string;
}

export function buildFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'or3-fixture-'));
  const tag = randomUUID().slice(0, 8);
  const syncDb = join(dir, 'or3.sqlite');
  const authDb = join(dir, 'or3-basic-auth.sqlite');
  const blobs = join(dir, 'storage');
  const sync = new DatabaseSync(syncDb);
  const auth = new DatabaseSync(authDb);
  sync.exec(SYNC_SCHEMA);
  auth.exec(AUTH_SCHEMA);

  const t0 = 1_767_000_000; // seconds, as the sync provider writes them
  const person = (name: string, password?: string): Person => ({
    id: randomUUID(),
    email: `${name}-${tag}@example.com`,
    ...(password ? { password, accountId: randomUUID() } : {}),
  });
  const alice = person('alice', "alice's old pw"); // 14 characters; OR3 allowed 8 and up
  const bob = person('bob', 'bobs old password');
  const dave = person('dave', 'dave never synced');
  const carol = { ...person('carol'), clerkId: `user_${tag}carol` };

  // basic-auth accounts: bcryptjs, cost 12 as OR3 writes them (cost 4 for the others, for speed).
  const insertAccount = auth.prepare('INSERT INTO basic_auth_accounts VALUES (?, ?, ?, ?, 0, ?, ?)');
  insertAccount.run(alice.accountId!, alice.email, bcrypt.hashSync(alice.password!, 12), 'Alice', t0 * 1000, t0 * 1000);
  insertAccount.run(bob.accountId!, bob.email, bcrypt.hashSync(bob.password!, 4), 'Bob', t0 * 1000, t0 * 1000);
  insertAccount.run(dave.accountId!, dave.email, bcrypt.hashSync(dave.password!, 4), null, t0 * 1000, t0 * 1000);
  auth
    .prepare('INSERT INTO basic_auth_sessions (id, account_id, refresh_token_hash, expires_at, created_at) VALUES (?, ?, ?, ?, ?)')
    .run(randomUUID(), alice.accountId!, sha256('a refresh jwt'), Date.now() + 86_400_000, t0 * 1000);

  const insertUser = sync.prepare('INSERT INTO users (id, email, display_name, active_workspace_id, created_at) VALUES (?, ?, ?, NULL, ?)');
  const insertLink = sync.prepare('INSERT INTO auth_accounts VALUES (?, ?, ?, ?, ?)');
  insertUser.run(alice.id, alice.email, 'Alice', t0);
  insertLink.run(randomUUID(), alice.id, 'basic-auth', alice.accountId!, t0);
  insertUser.run(bob.id, bob.email, 'Bob', t0 + 1);
  insertLink.run(randomUUID(), bob.id, 'basic-auth', bob.accountId!, t0 + 1);
  insertUser.run(carol.id, carol.email, 'Carol (Clerk)', t0 + 2); // OR3 records a federated user's email from the provider's claims
  insertLink.run(randomUUID(), carol.id, 'clerk', carol.clerkId, t0 + 2);
  // dave registered but never opened the app: no users row, no auth_accounts row.

  const team = randomUUID();
  const solo = randomUUID();
  const gone = randomUUID();
  const insertWs = sync.prepare('INSERT INTO workspaces VALUES (?, ?, ?, ?, ?, ?, ?)');
  insertWs.run(team, 'Team', 'Where we work', alice.id, t0 + 10, 0, null);
  insertWs.run(solo, 'My Workspace', null, alice.id, t0 + 11, 0, null);
  insertWs.run(gone, 'Old stuff', null, bob.id, t0 + 12, 1, t0 + 500);
  const insertMember = sync.prepare('INSERT INTO workspace_members VALUES (?, ?, ?, ?, ?)');
  insertMember.run(randomUUID(), team, alice.id, 'owner', t0 + 10);
  insertMember.run(randomUUID(), team, bob.id, 'editor', t0 + 20);
  insertMember.run(randomUUID(), team, carol.id, 'viewer', t0 + 30);
  insertMember.run(randomUUID(), solo, alice.id, 'owner', t0 + 11);
  insertMember.run(randomUUID(), gone, bob.id, 'owner', t0 + 12);

  // Invites: the token is the core app's `<base64url payload>.<base64url hmac>`; only its SHA-256 is stored.
  const now = Math.floor(Date.now() / 1000);
  const payload = Buffer.from(JSON.stringify({ workspaceId: team, email: `erin-${tag}@example.com`, exp: now + 7 * 86400 })).toString('base64url');
  const inviteToken = `${payload}.${createHash('sha256').update(`hmac of ${payload}`).digest('base64url')}`;
  const insertInvite = sync.prepare(
    'INSERT INTO auth_invites (id, workspace_id, email, role, status, invited_by_user_id, token_hash, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  insertInvite.run(randomUUID(), team, `erin-${tag}@example.com`, 'editor', 'pending', alice.id, sha256(inviteToken), now + 7 * 86400, now, now);
  insertInvite.run(
    randomUUID(),
    team,
    `late-${tag}@example.com`,
    'viewer',
    'pending',
    alice.id,
    sha256('an expired token'),
    now - 60,
    now - 86400,
    now - 86400,
  );
  insertInvite.run(randomUUID(), team, bob.email, 'editor', 'accepted', alice.id, sha256('a used token'), now + 86400, now - 100, now - 50);

  // Blobs: a PNG in the per-workspace layout, a PDF in the sharded layout, one missing, one corrupted.
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...Buffer.from(`png of ${tag}`)]);
  const pdf = Uint8Array.from(Buffer.from(`%PDF-1.4 a document ${tag}`));
  const lost = Uint8Array.from(Buffer.from(`never stored ${tag}`));
  const corrupt = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, ...Buffer.from(`corrupt ${tag}`)]);
  const soloPng = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, ...Buffer.from(`solo ${tag}`)]);
  const blob = {
    png: { hash: `sha256:${sha256(png)}`, bytes: png },
    pdf: { hash: `sha256:${sha256(pdf).toUpperCase()}`, bytes: pdf }, // OR3 keeps the client's spelling
    missing: { hash: `sha256:${sha256(lost)}`, bytes: lost },
    corrupt: { hash: `sha256:${sha256(corrupt)}`, bytes: corrupt },
    solo: { hash: `sha256:${sha256(soloPng)}`, bytes: soloPng },
  };
  const perWorkspace = (ws: string, hex: string, bytes: Uint8Array) => {
    const folder = join(blobs, 'workspaces', ws);
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `sha256_${hex}`), bytes);
    writeFileSync(join(folder, `sha256_${hex}.meta.json`), JSON.stringify({ workspace_id: ws, hash: `sha256:${hex}`, committed_at: new Date().toISOString() }));
  };
  const sharded = (hex: string, bytes: Uint8Array) => {
    mkdirSync(join(blobs, hex.slice(0, 2), hex.slice(2, 4)), { recursive: true });
    writeFileSync(join(blobs, hex.slice(0, 2), hex.slice(2, 4), hex), bytes);
  };
  perWorkspace(team, sha256(png), png);
  sharded(sha256(pdf), pdf);
  const flipped = Uint8Array.from(corrupt);
  flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0xff;
  perWorkspace(team, sha256(corrupt), flipped);
  sharded(sha256(soloPng), soloPng);
  perWorkspace(solo, sha256(Buffer.from('an orphan nobody references')), Buffer.from('an orphan nobody references'));
  writeFileSync(join(blobs, 'workspaces', team, `sha256_${'0'.repeat(64)}.tmp-1767000000-abcd`), 'half an upload');

  // Sync data: a push writes the change log (every op, LWW losers too) and the materialized row
  // of the winner; OR3's change-log GC has since dropped the oldest entries.
  let version = 0;
  const versions = new Map<string, number>();
  const hlc = (ms: number, n: number, node = 'abc12345') => `${ms}:${String(n).padStart(4, '0')}:${node}`;
  const logChange = (
    ws: string,
    table: string,
    pk: string,
    op: 'put' | 'delete',
    data: object | null,
    clock: number,
    stamp: string,
    device: string,
    opId: string,
    at: number,
  ) => {
    const v = (versions.get(ws) ?? 0) + 1;
    versions.set(ws, v);
    version++;
    sync
      .prepare('INSERT INTO change_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(randomUUID(), ws, v, table, pk, op, data ? JSON.stringify(data) : null, clock, stamp, device, opId, at);
  };
  const materialize = (
    ws: string,
    table: string,
    pk: string,
    data: object,
    clock: number,
    stamp: string,
    device: string,
    opId: string,
    deleted = 0,
    at = t0 + 100,
  ) =>
    sync
      .prepare(`INSERT OR REPLACE INTO s_${table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(pk, ws, JSON.stringify(data), clock, stamp, device, deleted, at, at, opId);
  const thread = (id: string, title: string, clock: number) => ({
    id,
    title,
    status: 'ready',
    deleted: false,
    pinned: false,
    created_at: t0 + 100,
    updated_at: t0 + 100 + clock,
    clock,
    last_message_at: t0 + 150,
  });
  const message = (id: string, thread: string, index: number, data: string, clock: number, extra: object = {}) => ({
    id,
    thread_id: thread,
    role: index % 2 ? 'assistant' : 'user',
    index,
    order_key: `a${index}`,
    data,
    deleted: false,
    created_at: t0 + 120 + index,
    updated_at: t0 + 120 + index + clock,
    clock,
    ...extra,
  });
  const ms = (t0 + 100) * 1000;

  // Team: threads t1 (its history collected), t2 (hard-deleted), messages with files.
  const t1 = thread('t1', 'Planning', 2);
  materialize(team, 'threads', 't1', t1, 2, hlc(ms + 5, 0), 'abc12345', randomUUID());
  const t2 = thread('t2', 'Scratch', 1);
  const t2Put = randomUUID();
  const t2Del = randomUUID();
  logChange(team, 'threads', 't2', 'put', t2, 1, hlc(ms + 10, 0), 'abc12345', t2Put, t0 + 110);
  logChange(team, 'threads', 't2', 'delete', null, 2, hlc(ms + 20, 0), 'def67890', t2Del, t0 + 120);
  materialize(team, 'threads', 't2', t2, 2, hlc(ms + 20, 0), 'def67890', t2Del, 1, t0 + 120);
  sync
    .prepare('INSERT INTO tombstones VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run(randomUUID(), team, 'threads', 't2', t0 + 120, 2, versions.get(team)!, t0 + 120, hlc(ms + 20, 0), t2Del);

  // m1: three edits; the clock-2 edit arrived last from an offline device and lost.
  const m1v1 = message('m1', 't1', 0, 'first draft', 1, { file_hashes: JSON.stringify([blob.png.hash]) });
  const m1v3 = message('m1', 't1', 0, 'final text', 3, { file_hashes: JSON.stringify([blob.png.hash, blob.corrupt.hash]) });
  const m1v2 = message('m1', 't1', 0, 'stale offline edit', 2, { file_hashes: JSON.stringify([blob.png.hash]) });
  const m1Win = randomUUID();
  logChange(team, 'messages', 'm1', 'put', m1v1, 1, hlc(ms + 30, 0), 'abc12345', randomUUID(), t0 + 130);
  logChange(team, 'messages', 'm1', 'put', m1v3, 3, hlc(ms + 50, 0), 'abc12345', m1Win, t0 + 150);
  logChange(team, 'messages', 'm1', 'put', m1v2, 2, hlc(ms + 40, 1, 'ffff0000'), 'ffff0000', randomUUID(), t0 + 160);
  materialize(team, 'messages', 'm1', m1v3, 3, hlc(ms + 50, 0), 'abc12345', m1Win);
  const m2 = message('m2', 't1', 1, 'here are the files', 1, { file_hashes: [blob.pdf.hash, blob.missing.hash] });
  const m2Op = randomUUID();
  logChange(team, 'messages', 'm2', 'put', m2, 1, hlc(ms + 60, 0), 'abc12345', m2Op, t0 + 170);
  materialize(team, 'messages', 'm2', m2, 1, hlc(ms + 60, 0), 'abc12345', m2Op);
  // Soft-deleted (Trash): a put with deleted: true, still a row.
  const m3 = message('m3', 't1', 2, 'binned', 2, { deleted: true, deleted_at: t0 + 180 });
  materialize(team, 'messages', 'm3', m3, 2, hlc(ms + 70, 0), 'abc12345', randomUUID());
  const fileMeta = (hash: string, name: string, mime: string, kind: string, size: number) => ({
    hash,
    name,
    mime_type: mime,
    kind,
    size_bytes: size,
    storage_provider_id: 'fs',
    storage_id: `${team}:${hash}`,
    deleted: false,
    created_at: t0 + 140,
    updated_at: t0 + 140,
    clock: 1,
  });
  for (const [key, name, mime, kind] of [
    ['png', 'diagram.png', 'image/png', 'image'],
    ['pdf', 'spec.pdf', 'application/pdf', 'pdf'],
    ['missing', 'lost.png', 'image/png', 'image'],
    ['corrupt', 'broken.png', 'image/png', 'image'],
  ] as const) {
    materialize(
      team,
      'file_meta',
      blob[key].hash,
      fileMeta(blob[key].hash, name, mime, kind, blob[key].bytes.byteLength),
      1,
      hlc(ms + 80, 0),
      'abc12345',
      randomUUID(),
    );
  }
  // A project written before OR3 kept op ids (its migration 006 backfilled a placeholder), a kv row, and Bob's notification.
  materialize(
    team,
    'projects',
    'p1',
    { id: 'p1', name: 'Launch', deleted: false, created_at: t0, updated_at: t0, clock: 1 },
    1,
    'legacy:0',
    '',
    'legacy:projects:p1:1:legacy:0',
  );
  materialize(
    team,
    'kv',
    'k1',
    { id: 'k1', name: 'theme', value: 'dark', created_at: t0, updated_at: t0, clock: 4 },
    4,
    hlc(ms + 90, 0),
    'abc12345',
    randomUUID(),
  );
  const note = {
    id: 'n1',
    user_id: bob.id,
    type: 'mention',
    title: 'Alice mentioned you',
    deleted: false,
    created_at: t0 + 200,
    updated_at: t0 + 200,
    clock: 1,
  };
  const noteOp = randomUUID();
  logChange(team, 'notifications', 'n1', 'put', note, 1, hlc(ms + 95, 0), 'abc12345', noteOp, t0 + 200);
  materialize(team, 'notifications', 'n1', note, 1, hlc(ms + 95, 0), 'abc12345', noteOp);
  // A tombstone whose materialized row is gone (collected from s_posts but kept in tombstones).
  sync
    .prepare('INSERT INTO tombstones VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run(randomUUID(), team, 'posts', 'post-old', t0 + 90, 3, 1, t0 + 90, hlc(ms - 10, 0), randomUUID());
  sync.prepare('INSERT INTO server_version_counter VALUES (?, ?)').run(team, versions.get(team)!);
  sync.prepare('INSERT INTO device_cursors VALUES (?, ?, ?, ?, ?, ?)').run(randomUUID(), team, 'abc12345', versions.get(team)!, t0 + 300, alice.id);

  // Solo: one message with a file (bare-hex hash), plus its file_meta.
  const s1 = message('s1', 'st1', 0, 'note to self', 1, { file_hashes: JSON.stringify([blob.solo.hash]) });
  materialize(solo, 'threads', 'st1', thread('st1', 'Notes', 1), 1, hlc(ms + 100, 0), 'abc12345', randomUUID());
  materialize(solo, 'messages', 's1', s1, 1, hlc(ms + 101, 0), 'abc12345', randomUUID());
  materialize(
    solo,
    'file_meta',
    blob.solo.hash,
    { ...fileMeta(blob.solo.hash, 'photo.png', 'image/png', 'image', soloPng.byteLength), storage_id: `${solo}:${blob.solo.hash}` },
    1,
    hlc(ms + 102, 0),
    'abc12345',
    randomUUID(),
  );

  // Gone (deleted in OR3): one thread.
  materialize(gone, 'threads', 'g1', thread('g1', 'Archive', 1), 1, hlc(ms + 110, 0), 'def67890', randomUUID());

  sync.close();
  auth.close();
  return {
    dir,
    syncDb,
    authDb,
    blobs,
    tag,
    alice,
    bob,
    carol,
    dave,
    team,
    solo,
    gone,
    inviteToken,
    blob,
    clerkIssuer: `https://${tag}.clerk.accounts.dev`,
  };
}

/**
 * What a snapshot of the moved workspace must hold, read straight from OR3's materialized state:
 * every s_* row (a row or, when deleted, a tombstone) with its revision, and OR3's tombstones
 * that lost their row. `opIdOf` maps OR3's op ids as the importer does.
 */
export function expectedSnapshot(syncDb: string, workspaceId: string, opIdOf: (opId: string) => string, visibleTo: string) {
  const db = new DatabaseSync(syncDb, { readOnly: true });
  const items: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  for (const table of ['file_meta', 'kv', 'messages', 'notifications', 'posts', 'projects', 'threads']) {
    for (const r of db.prepare(`SELECT * FROM s_${table} WHERE workspace_id = ? ORDER BY id`).all(workspaceId)) {
      const data = JSON.parse(String(r.data_json));
      if (table === 'notifications' && data.user_id !== visibleTo) continue;
      seen.add(`${table}\u0000${r.id}`);
      const revision = { clock: Number(r.clock), hlc: String(r.hlc), opId: opIdOf(String(r.op_id)) };
      if (Number(r.deleted)) {
        const t = db.prepare('SELECT deleted_at FROM tombstones WHERE workspace_id = ? AND table_name = ? AND pk = ?').get(workspaceId, table, String(r.id));
        items.push({ kind: 'tombstone', tableName: table, pk: String(r.id), revision, serverDeletedAt: Number(t?.deleted_at ?? r.updated_at) });
      } else items.push({ kind: 'row', tableName: table, pk: String(r.id), payload: data, revision });
    }
  }
  for (const t of db.prepare('SELECT * FROM tombstones WHERE workspace_id = ?').all(workspaceId)) {
    if (seen.has(`${t.table_name}\u0000${t.pk}`)) continue;
    items.push({
      kind: 'tombstone',
      tableName: String(t.table_name),
      pk: String(t.pk),
      revision: { clock: Number(t.clock), hlc: String(t.hlc), opId: opIdOf(String(t.op_id)) },
      serverDeletedAt: Number(t.deleted_at),
    });
  }
  db.close();
  return items.sort((a, b) => (`${a.tableName}\u0000${a.pk}` < `${b.tableName}\u0000${b.pk}` ? -1 : 1));
}
