/**
 * Reading an OR3 deployment (docs/migrating-from-or3.md): the sync provider's SQLite database
 * (Saluana/or3-provider-sqlite, migrations 001–017), the basic-auth provider's SQLite database
 * (Saluana/or3-provider-basic-auth) and the materialized state, turned into our import lines.
 * Read-only, with Node's built-in `node:sqlite`.
 *
 * Units: the sync database keeps Unix seconds, the basic-auth database milliseconds; our lines
 * carry milliseconds (`createdAt`, `expiresAt`) and seconds only where the wire does
 * (`serverDeletedAt`).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';

export const SYNCED_TABLES = ['threads', 'messages', 'projects', 'posts', 'kv', 'file_meta', 'notifications'] as const;
const ROLES = new Set(['owner', 'editor', 'viewer']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/**
 * Every table and column the importer reads, checked before anything is written (a missing one
 * stops the import with the file, table and column named). docs/migrating-from-or3.md lists the
 * same, and a test keeps the two in step. `auth_invites` is optional (older OR3 versions).
 */
export const READS = {
  sync: {
    users: ['id', 'email', 'display_name', 'created_at'],
    auth_accounts: ['id', 'user_id', 'provider', 'provider_user_id', 'created_at'],
    workspaces: ['id', 'name', 'description', 'owner_user_id', 'deleted', 'created_at'],
    workspace_members: ['id', 'workspace_id', 'user_id', 'role', 'created_at'],
    change_log: ['workspace_id', 'server_version', 'op_id', 'table_name', 'pk', 'op', 'payload_json', 'clock', 'hlc', 'device_id', 'created_at'],
    tombstones: ['workspace_id', 'table_name', 'pk', 'clock', 'hlc', 'op_id', 'deleted_at'],
    ...(Object.fromEntries(
      SYNCED_TABLES.map((t) => [`s_${t}`, ['id', 'workspace_id', 'data_json', 'deleted', 'clock', 'hlc', 'op_id', 'device_id', 'created_at', 'updated_at']]),
    ) as Record<`s_${(typeof SYNCED_TABLES)[number]}`, string[]>),
  },
  syncOptional: {
    auth_invites: ['id', 'workspace_id', 'status', 'role', 'token_hash', 'invited_by_user_id', 'created_at', 'expires_at'],
  },
  auth: {
    basic_auth_accounts: ['id', 'email', 'password_hash', 'display_name', 'created_at'],
  },
} as const;

/** Opens an OR3 SQLite file read-only, with an error that names the file and the flag. */
function open(path: string, flag: string): DatabaseSync {
  if (!existsSync(path)) throw new Error(`${path}: no such file (${flag})`);
  try {
    return new DatabaseSync(path, { readOnly: true });
  } catch (err) {
    throw new Error(`${path}: cannot be opened as an SQLite database (${flag}): ${(err as Error).message}`);
  }
}

/** The missing tables and columns of `tables` in `db`, as messages naming the file, the table and the column. */
function schemaProblems(db: DatabaseSync, path: string, tables: Record<string, readonly string[]>, optional = false): string[] {
  const problems: string[] = [];
  for (const [table, columns] of Object.entries(tables)) {
    const present = new Set(
      db
        .prepare(`SELECT name FROM pragma_table_info(?)`)
        .all(table)
        .map((c) => String(c.name)),
    );
    if (present.size === 0) {
      if (!optional) problems.push(`${path}: table ${table} is missing`);
      continue;
    }
    for (const column of columns) if (!present.has(column)) problems.push(`${path}: table ${table} has no column ${column}`);
  }
  return problems;
}

export interface Problem {
  kind: string;
  key: string;
  reason: string;
}

export interface SourceUser {
  line: Record<string, unknown>;
  or3Id: string;
  email: string | null;
}

export interface SourceWorkspace {
  id: string;
  name: string;
  deleted: boolean;
  ownerId: string;
}

export interface BlobWanted {
  /** The hash exactly as OR3 stored it (file_meta pk or file_hashes entry). */
  hash: string;
  meta: { name?: string; mime_type?: string; kind?: string; size_bytes?: number; width?: number; height?: number; page_count?: number } | null;
}

type Row = Record<string, unknown>;
const str = (v: unknown) => (typeof v === 'string' ? v : v === null || v === undefined ? null : String(v));
const num = (v: unknown) => Number(v ?? 0);

/**
 * An OR3 opId that is not an RFC 4122 UUID (`legacy:<table>:<pk>:<clock>:<hlc>` from OR3's
 * migration 006, or empty) as a stable UUID derived from it: newer OR3 clients refuse a pull
 * page holding any other opId, and a rerun must produce the same one.
 */
export function uuidFor(workspaceId: string, opId: string): string {
  if (UUID.test(opId)) return opId;
  const h = createHash('sha256').update(`or3-import:${workspaceId}:${opId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export class Or3Source {
  readonly sync: DatabaseSync;
  readonly auth: DatabaseSync | null;
  readonly problems: Problem[] = [];
  /** OR3 users.id (or a basic-auth account id with no users row) → our user id. */
  readonly userIds = new Map<string, string>();
  /** Non-UUID opIds replaced by derived UUIDs. */
  rewrittenOpIds = 0;

  /** Opens both files and checks every table and column it will read; throws before anything is written. */
  constructor(syncPath: string, authPath: string | null) {
    this.sync = open(syncPath, '--or3-db');
    this.auth = authPath ? open(authPath, '--or3-auth-db') : null;
    const problems = [...schemaProblems(this.sync, syncPath, READS.sync), ...schemaProblems(this.sync, syncPath, READS.syncOptional, true)];
    if (problems.length) problems.push(`(is ${syncPath} OR3's sync provider database, or3-provider-sqlite, migrated to 017?)`);
    const authProblems = this.auth && authPath ? schemaProblems(this.auth, authPath, READS.auth) : [];
    if (authProblems.length) authProblems.push(`(is ${authPath} OR3's basic-auth database, or3-provider-basic-auth?)`);
    if (problems.length || authProblems.length) {
      this.close();
      throw new Error(`the OR3 database does not have what the importer reads:\n  ${[...problems, ...authProblems].join('\n  ')}`);
    }
  }

  #hasTable(db: DatabaseSync, name: string) {
    return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  }

  close() {
    this.sync.close();
    this.auth?.close();
  }

  /**
   * The accounts as user lines: every `users` row (joined to its basic-auth account for the email,
   * display name and bcrypt hash), and basic-auth accounts that never opened a session (no
   * `users` row: their account id becomes their user id). Federated `auth_accounts` rows become
   * identities when `issuers` names their provider's issuer (OR3 does not store it).
   * `adminEmail`/`adminId`: an OR3 account with the importing admin's email maps onto the admin.
   */
  users(issuers: Map<string, string>, admin: { email: string; id: string }): SourceUser[] {
    const accounts = new Map<string, Row>();
    if (this.auth)
      for (const a of this.auth.prepare('SELECT id, email, password_hash, display_name, created_at FROM basic_auth_accounts').all())
        accounts.set(String(a.id), a);
    const links = this.sync.prepare('SELECT user_id, provider, provider_user_id FROM auth_accounts ORDER BY created_at, id').all();
    const linked = new Set<string>();
    const out: SourceUser[] = [];
    for (const u of this.sync.prepare('SELECT id, email, display_name, created_at FROM users ORDER BY created_at, id').all()) {
      const id = String(u.id);
      const basic = links.find((l) => l.user_id === id && l.provider === 'basic-auth');
      const account = basic ? accounts.get(String(basic.provider_user_id)) : undefined;
      if (basic) linked.add(String(basic.provider_user_id));
      if (basic && !account && this.auth)
        this.problems.push({ kind: 'user', key: id, reason: `basic-auth account ${basic.provider_user_id} is not in the basic-auth database: no password` });
      const identities: Row[] = [];
      for (const l of links.filter((l) => l.user_id === id && l.provider !== 'basic-auth')) {
        const issuer = issuers.get(String(l.provider));
        if (!issuer) {
          this.problems.push({
            kind: 'identity',
            key: `${id} ${l.provider}`,
            reason: `no issuer known for provider "${l.provider}": the user is imported without this identity${u.email ? ` (with their email ${String(u.email)})` : ''}; pass --oidc-issuer ${l.provider}=<issuer URL> to keep it`,
          });
          continue;
        }
        identities.push({ provider: String(l.provider), issuer, subject: String(l.provider_user_id), ...(u.email ? { email: String(u.email) } : {}) });
      }
      // A federated (e.g. Clerk) user keeps the email OR3 recorded for them. Only a password
      // account's email may map an OR3 account onto the importing admin (see #user).
      const email = normalize(str(account?.email) ?? str(u.email));
      out.push(
        this.#user(
          id,
          email,
          str(account?.display_name) ?? str(u.display_name),
          str(account?.password_hash),
          identities,
          num(u.created_at) * 1000,
          admin,
          basic !== undefined,
        ),
      );
    }
    for (const [id, account] of accounts) {
      if (linked.has(id)) continue;
      out.push(this.#user(id, normalize(str(account.email)), str(account.display_name), str(account.password_hash), [], num(account.created_at), admin, true));
    }
    // An OR3 account mapped onto the importing admin brings only its identities: the server links
    // them to the admin only when the operator confirms it (--link-admin-identities), and reports
    // them otherwise; never the account's email, password or name.
    return out.flatMap((u) => {
      if (u.line.id !== admin.id || u.or3Id === admin.id) return [u];
      return u.line.identities ? [{ ...u, line: { type: 'user', id: admin.id, identities: u.line.identities } }] : [];
    });
  }

  #user(
    id: string,
    email: string | null,
    displayName: string | null,
    passwordHash: string | null,
    identities: Row[],
    createdAt: number,
    admin: { email: string; id: string },
    passwordAccount: boolean,
  ): SourceUser {
    const ours = passwordAccount && email !== null && email === admin.email ? admin.id : id;
    this.userIds.set(id, ours);
    if (ours !== id) this.problems.push({ kind: 'note', key: id, reason: `OR3 account ${email} is the importing admin here: mapped onto ${admin.id}` });
    const line: Row = { type: 'user', id: ours, createdAt };
    if (email) line.email = email;
    if (displayName) line.displayName = displayName.slice(0, 100);
    if (passwordHash) line.passwordHash = passwordHash;
    if (identities.length) line.identities = identities;
    return { line, or3Id: id, email };
  }

  #mapUser(id: unknown): string {
    const s = String(id ?? '');
    return this.userIds.get(s) ?? s;
  }

  workspaces(only: Set<string> | null): SourceWorkspace[] {
    return this.sync
      .prepare('SELECT id, name, owner_user_id, deleted FROM workspaces ORDER BY created_at, id')
      .all()
      .filter((w) => !only || only.has(String(w.id)))
      .map((w) => ({ id: String(w.id), name: String(w.name), deleted: num(w.deleted) !== 0, ownerId: this.#mapUser(w.owner_user_id) }));
  }

  /** Every line of one workspace's stream, in order: header, members, invites, history, state. */
  *workspaceLines(ws: SourceWorkspace, nowMs: number): Generator<Row> {
    const w = this.sync.prepare('SELECT id, name, description, created_at FROM workspaces WHERE id = ?').get(ws.id)!;
    yield {
      type: 'header',
      format: 'or3-edge-export/v1',
      workspaceId: ws.id,
      name: String(w.name).trim().slice(0, 100) || 'Workspace',
      description: str(w.description)?.slice(0, 1000) ?? null,
      createdAt: num(w.created_at) * 1000,
      exportedBy: ws.ownerId,
      source: 'or3',
    };
    for (const m of this.sync
      .prepare('SELECT user_id, role, created_at FROM workspace_members WHERE workspace_id = ? ORDER BY created_at, id')
      .iterate(ws.id)) {
      if (!ROLES.has(String(m.role))) {
        this.problems.push({ kind: 'member', key: `${ws.id} ${m.user_id}`, reason: `unknown role "${m.role}"` });
        continue;
      }
      yield { type: 'member', userId: this.#mapUser(m.user_id), role: String(m.role), createdAt: num(m.created_at) * 1000 };
    }
    const nowSeconds = Math.floor(nowMs / 1000);
    if (this.#hasTable(this.sync, 'auth_invites')) {
      for (const i of this.sync.prepare("SELECT * FROM auth_invites WHERE workspace_id = ? AND status = 'pending' ORDER BY created_at, id").iterate(ws.id)) {
        if (num(i.expires_at) <= nowSeconds) continue; // expired: nothing to move
        if (!ROLES.has(String(i.role)) || !/^[0-9a-f]{64}$/.test(String(i.token_hash))) {
          this.problems.push({ kind: 'invite', key: String(i.id), reason: 'unknown role or token hash format' });
          continue;
        }
        yield {
          type: 'invite',
          id: String(i.id),
          role: String(i.role),
          tokenHash: String(i.token_hash),
          createdBy: this.#mapUser(i.invited_by_user_id),
          createdAt: num(i.created_at) * 1000,
          expiresAt: num(i.expires_at) * 1000,
        };
      }
    }
    // History: what OR3's change log still holds (its GC drops old entries; the state below fills in).
    const owners = this.#notificationOwners(ws.id);
    for (const c of this.sync.prepare('SELECT * FROM change_log WHERE workspace_id = ? ORDER BY server_version').iterate(ws.id)) {
      const payload = parse(c.payload_json);
      const line: Row = {
        type: 'change',
        opId: this.#opId(ws.id, c.op_id),
        tableName: String(c.table_name),
        pk: String(c.pk),
        op: String(c.op),
        payload: String(c.op) === 'put' ? this.#payload(String(c.table_name), payload) : null,
        clock: num(c.clock),
        hlc: String(c.hlc ?? ''),
        deviceId: String(c.device_id ?? ''),
        createdAt: num(c.created_at) * 1000,
      };
      if (c.table_name === 'notifications') {
        const owner = payload?.user_id ?? owners.get(String(c.pk));
        if (owner) line.userId = this.#mapUser(owner);
      }
      yield line;
    }
    // The materialized state: every row and tombstone with its winning revision.
    const tombstones = new Map<string, Row>();
    for (const t of this.sync.prepare('SELECT * FROM tombstones WHERE workspace_id = ?').iterate(ws.id)) tombstones.set(`${t.table_name}\u0000${t.pk}`, t);
    for (const table of SYNCED_TABLES) {
      for (const r of this.sync.prepare(`SELECT * FROM s_${table} WHERE workspace_id = ? ORDER BY id`).iterate(ws.id)) {
        const data = parse(r.data_json);
        const t = tombstones.get(`${table}\u0000${r.id}`);
        tombstones.delete(`${table}\u0000${r.id}`);
        const revision = { clock: num(r.clock), hlc: String(r.hlc ?? ''), opId: this.#opId(ws.id, r.op_id) };
        const owner = table === 'notifications' && data?.user_id ? { userId: this.#mapUser(data.user_id) } : {};
        if (num(r.deleted) === 0) {
          yield {
            type: 'row',
            tableName: table,
            pk: String(r.id),
            payload: this.#payload(table, data),
            revision,
            deviceId: String(r.device_id ?? ''),
            ...owner,
          };
        } else {
          yield {
            type: 'tombstone',
            tableName: table,
            pk: String(r.id),
            revision,
            serverDeletedAt: num(t?.deleted_at ?? r.updated_at ?? r.created_at),
            deviceId: String(r.device_id ?? ''),
            ...owner,
          };
        }
      }
    }
    // Tombstones with no materialized row left.
    for (const t of tombstones.values()) {
      if (!(SYNCED_TABLES as readonly string[]).includes(String(t.table_name))) continue;
      yield {
        type: 'tombstone',
        tableName: String(t.table_name),
        pk: String(t.pk),
        revision: { clock: num(t.clock), hlc: String(t.hlc ?? ''), opId: this.#opId(ws.id, t.op_id || `legacy:tombstone:${t.table_name}:${t.pk}:${t.clock}`) },
        serverDeletedAt: num(t.deleted_at),
      };
    }
  }

  /** Notification owners from the materialized rows (a delete in the log carries no payload). */
  #notificationOwners(workspaceId: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const r of this.sync.prepare('SELECT id, data_json FROM s_notifications WHERE workspace_id = ?').iterate(workspaceId)) {
      const owner = parse(r.data_json)?.user_id;
      if (typeof owner === 'string') out.set(String(r.id), owner);
    }
    return out;
  }

  #opId(workspaceId: string, opId: unknown): string {
    const id = uuidFor(workspaceId, String(opId ?? ''));
    if (id !== opId) this.rewrittenOpIds++;
    return id;
  }

  /** A payload as stored, with a notification's owner mapped to our user id. */
  #payload(table: string, payload: Row | null): Row | null {
    if (!payload || table !== 'notifications' || typeof payload.user_id !== 'string') return payload;
    return { ...payload, user_id: this.#mapUser(payload.user_id) };
  }

  /**
   * The blobs a workspace still needs: the live `file_meta` rows, and every hash a live message
   * or post lists in `file_hashes` (OR3 never deleted bytes, so its store also holds orphans,
   * which stay behind).
   */
  blobs(workspaceId: string): BlobWanted[] {
    const wanted = new Map<string, BlobWanted>();
    const canon = (h: string) =>
      h
        .trim()
        .replace(/^[a-z0-9]+:/i, '')
        .toLowerCase();
    for (const r of this.sync.prepare('SELECT id, data_json FROM s_file_meta WHERE workspace_id = ? AND deleted = 0 ORDER BY id').iterate(workspaceId)) {
      const data = parse(r.data_json);
      if (!data || data.deleted === true || data.deleted === 1) continue;
      wanted.set(canon(String(r.id)), { hash: String(r.id), meta: data as BlobWanted['meta'] });
    }
    for (const table of ['messages', 'posts']) {
      for (const r of this.sync.prepare(`SELECT data_json FROM s_${table} WHERE workspace_id = ? AND deleted = 0`).iterate(workspaceId)) {
        const data = parse(r.data_json);
        if (!data || data.deleted === true || data.deleted === 1) continue;
        let list: unknown = data.file_hashes;
        if (typeof list === 'string') list = parseAny(list);
        if (!Array.isArray(list)) continue;
        for (const h of list) if (typeof h === 'string' && h && !wanted.has(canon(h))) wanted.set(canon(h), { hash: h, meta: null });
      }
    }
    return [...wanted.values()];
  }
}

function normalize(email: string | null): string | null {
  const e = email?.trim().toLowerCase();
  return e ? e : null;
}

function parseAny(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function parse(text: unknown): Row | null {
  if (typeof text !== 'string') return null;
  const value = parseAny(text);
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Row) : null;
}
