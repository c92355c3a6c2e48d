/**
 * The local database of one workspace (Dexie over IndexedDB).
 *
 * Synced tables hold rows exactly as they travel on the wire (snake_case payloads). Local-only
 * tables hold the sync machinery:
 *
 *   pending_ops     the outbox: one op per local write not yet accepted by the server
 *   revisions       the (clock, hlc, opId) of every row this device knows, live or deleted:
 *                   the local tombstones, and what last-write-wins compares against
 *   sync_state      the pull cursor, the HLC and status for this workspace (one row)
 *   snapshot_stage  snapshot pages while a bootstrap downloads (installed atomically)
 *   file_blobs      cached file bytes by hash
 *   file_transfers  the upload/download queue
 *
 * The outbox middleware (below) captures every write to a synced table, in the same
 * transaction as the write, so an app writes with plain Dexie calls and nothing can be written
 * without its op, or queued without its write. Writes made by the sync engine itself are marked
 * as remote and never captured again.
 */
import { Dexie, type DBCore, type DBCoreMutateRequest, type DBCoreTable, type DBCoreTransaction, type Table } from 'dexie';
import { TABLES, type SnapshotItem, type TableName } from '../../protocol/sync.js';
import type { HybridClock } from './hlc.js';
import type { Or3Tables } from './tables.js';

export const SYNCED_TABLES = TABLES;
export type SyncedTable = TableName;
const SYNCED = new Set<string>(SYNCED_TABLES);
const OUTBOX_TABLES = ['pending_ops', 'revisions'];
/** The contract's table list and the typed rows name the same tables (a compile-time check). */
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type AssertTrue<T extends true> = T;
export type TablesMatch = AssertTrue<Exactly<TableName, keyof Or3Tables>>;

/** A row of a synced table, untyped: an open snake_case record keyed by `id` (`hash` for file_meta). */
export interface Row {
  [column: string]: unknown;
  clock?: number;
}

export interface Revision {
  tableName: string;
  pk: string;
  clock: number;
  hlc: string;
  opId: string;
  deleted: boolean;
  /**
   * True while this revision is a local edit the server has not echoed back yet. A remote
   * change that beats such a revision was concurrent with it: a `conflict`.
   */
  local?: boolean;
}

export interface PendingOp {
  seq?: number;
  opId: string;
  tableName: SyncedTable;
  pk: string;
  operation: 'put' | 'delete';
  payload?: Row;
  clock: number;
  hlc: string;
  deviceId: string;
  createdAt: number;
  attempts: number;
  /** Set when the server refused the op for good: it stays here, out of the push loop. */
  error?: { code: string; message: string };
  /**
   * The row as the server has it beneath this local edit (value and revision; null when the
   * server has none). Restored when the server refuses the op, so a refused edit does not stay
   * on this device as if it had happened.
   */
  baseline?: { row: Row | null; revision: Revision | null };
}

export interface SyncStateRow {
  id: 'state';
  cursor: number;
  hlcWall: number;
  hlcCounter: number;
  lastSyncedAt?: number;
}

export interface StagedItem {
  seq?: number;
  snapshotId: string;
  item: SnapshotItem;
}

export interface FileBlob {
  hash: string;
  blob: Blob;
  cachedAt: number;
}

export type TransferState = 'queued' | 'running' | 'paused' | 'done' | 'failed';

export interface FileTransfer {
  id: string;
  hash: string;
  direction: 'upload' | 'download';
  state: TransferState;
  bytes_done: number;
  bytes_total: number;
  attempts: number;
  mime_type: string;
  name: string;
  kind: 'image' | 'pdf';
  error?: string;
  /** Multipart uploads: the server's upload id and the parts already stored, so a retry resumes. */
  uploadId?: string;
  storageId?: string;
  partSize?: number;
  parts?: { partNumber: number; etag: string }[];
  /** The multipart upload was completed: a retry only commits. */
  completed?: boolean;
  /** A retry waits until this time (epoch ms), whatever else wakes the queue. */
  notBefore?: number;
  updatedAt: number;
}

/** Primary key of a synced row, as the server expects it (`pk` = id, or hash for file_meta). */
export const primaryKeyOf = (table: string, row: Row): string => String(table === 'file_meta' ? row.hash : row.id);

/** The app's view of a workspace's database: the synced tables, typed (`ws.db`). */
export type Or3Database = Dexie & { [K in keyof Or3Tables]: Table<Or3Tables[K], string> };

/** The SDK's own view: the synced tables and the local ones that run sync. */
export type LocalDatabase = Or3Database & {
  pending_ops: Table<PendingOp, number>;
  revisions: Table<Revision, [string, string]>;
  sync_state: Table<SyncStateRow, string>;
  snapshot_stage: Table<StagedItem, number>;
  file_blobs: Table<FileBlob, string>;
  file_transfers: Table<FileTransfer, string>;
};

/** Marks a transaction whose writes come from the server (never captured into the outbox). */
const REMOTE = Symbol('or3-remote');

export function markRemote(tx: { idbtrans: IDBTransaction } | DBCoreTransaction) {
  const target = 'idbtrans' in tx ? tx.idbtrans : tx;
  (target as unknown as Record<symbol, boolean>)[REMOTE] = true;
}

const isRemote = (trans: DBCoreTransaction) => (trans as unknown as Record<symbol, boolean>)[REMOTE] === true;

export interface OutboxHooks {
  clock: HybridClock;
  /** Called after a captured write commits (wakes the push loop, updates the pending count). */
  onCaptured: () => void;
}

export function openDatabase(name: string, hooks: OutboxHooks, deps: { indexedDB?: IDBFactory; IDBKeyRange?: typeof IDBKeyRange } = {}): LocalDatabase {
  const db = new Dexie(name, deps.indexedDB ? { indexedDB: deps.indexedDB, IDBKeyRange: deps.IDBKeyRange } : undefined) as LocalDatabase;
  db.version(1).stores({
    threads: 'id, updated_at, project_id, parent_thread_id',
    messages: 'id, thread_id, [thread_id+index]',
    projects: 'id, updated_at',
    posts: 'id, post_type, updated_at',
    kv: 'id, name',
    file_meta: 'hash',
    notifications: 'id, user_id, created_at',
    pending_ops: '++seq, &opId, [tableName+pk]',
    revisions: '[tableName+pk]',
    sync_state: 'id',
    snapshot_stage: '++seq, snapshotId',
    file_blobs: 'hash',
    file_transfers: 'id, hash, state',
  });
  db.use({ stack: 'dbcore', name: 'or3-outbox', create: (down) => outboxCore(down, hooks) });
  return db;
}

/** The DBCore middleware that captures writes to synced tables into the outbox. */
function outboxCore(down: DBCore, hooks: OutboxHooks): DBCore {
  return {
    ...down,
    // Any read-write transaction over a synced table also covers the outbox tables, so the
    // captured op is written in the same transaction as the row.
    transaction(stores, mode, options) {
      const widened = mode === 'readwrite' && stores.some((s) => SYNCED.has(s)) ? [...new Set([...stores, ...OUTBOX_TABLES])] : stores;
      return down.transaction(widened, mode, options);
    },
    table(name) {
      const table = down.table(name);
      if (!SYNCED.has(name)) return table;
      return { ...table, mutate: (req) => (isRemote(req.trans) ? table.mutate(req) : capture(down, table, name as SyncedTable, req, hooks)) };
    },
  };
}

async function capture(down: DBCore, table: DBCoreTable, name: SyncedTable, req: DBCoreMutateRequest, hooks: OutboxHooks) {
  const trans = req.trans;
  const revisions = down.table('revisions');
  const outbox = down.table('pending_ops');

  // Normalise every request shape into full rows to put and keys to delete. For put requests
  // from modify()/update()/upsert(), Dexie has already computed the full rows into `values`
  // (`updates` only describes them, for middlewares that can use it).
  let puts: Row[] = [];
  let deletes: string[] = [];
  if (req.type === 'add' || req.type === 'put') {
    puts = req.values.map((v) => structuredClone(v) as Row);
  } else if (req.type === 'delete') {
    deletes = req.keys.map(String);
  } else {
    const found = await table.query({ trans, query: { index: table.schema.primaryKey, range: req.range }, values: false });
    deletes = (found.result as unknown[]).map(String);
  }

  const pks = [...puts.map((row) => primaryKeyOf(name, row)), ...deletes];
  const known = (await revisions.getMany({ trans, keys: pks.map((pk) => [name, pk]) })) as (Revision | undefined)[];
  const current = (await table.getMany({ trans, keys: pks })) as (Row | undefined)[];
  // Ops still waiting for the same rows: superseded by these (coalescing), and they know the
  // server's state beneath the first local edit.
  const waiting: PendingOp[][] = [];
  for (const pk of pks) {
    const found = await outbox.query({
      trans,
      query: {
        index: outbox.schema.getIndexByKeyPath(['tableName', 'pk'])!,
        range: { type: 1 /* DBCoreRangeType.Equal (a const enum) */, lower: [name, pk], upper: [name, pk] },
      },
      values: true,
    });
    waiting.push((found.result as PendingOp[]).filter((w) => !w.error && w.seq !== undefined));
  }
  const now = Date.now();
  const ops: PendingOp[] = [];
  const revs: Revision[] = [];
  const stamp = (i: number, operation: 'put' | 'delete', requested: number | undefined, payload?: Row) => {
    const pk = pks[i]!;
    const previous = known[i];
    const clock = Math.max(previous?.clock ?? 0, requested ?? 0) + 1;
    const hlc = hooks.clock.next();
    const opId = crypto.randomUUID();
    if (payload) payload.clock = clock;
    const baseline = waiting[i]![0]?.baseline ?? {
      row: current[i] ? structuredClone(current[i]!) : null,
      revision: previous ? { ...previous, local: false } : null,
    };
    ops.push({
      opId,
      tableName: name,
      pk,
      operation,
      ...(payload ? { payload: structuredClone(payload) } : {}),
      clock,
      hlc,
      deviceId: hooks.clock.deviceId,
      createdAt: now,
      attempts: 0,
      baseline,
    });
    revs.push({ tableName: name, pk, clock, hlc, opId, deleted: operation === 'delete', local: true });
  };
  puts.forEach((row, i) => stamp(i, 'put', typeof row.clock === 'number' ? row.clock : undefined, row));
  deletes.forEach((_pk, i) => stamp(puts.length + i, 'delete', undefined));

  const forward: DBCoreMutateRequest =
    req.type === 'delete' || req.type === 'deleteRange'
      ? req
      : { type: req.type === 'add' ? 'add' : 'put', trans, values: puts, ...(req.mutatedParts ? { mutatedParts: req.mutatedParts } : {}) };
  const result = await table.mutate(forward);
  // Rows the store refused (an add of an existing key, caught by the app) get no op.
  const failed = new Set(Object.keys(result.failures ?? {}).map(Number));
  const keptOps = ops.filter((_op, i) => !failed.has(i));
  const keptRevs = revs.filter((_rev, i) => !failed.has(i));
  if (!keptOps.length) return result;

  // Coalesce: an op still waiting for the same row is superseded by this one. (One already sent
  // is harmless: the server orders both by revision and this one is newer.)
  const superseded = waiting
    .filter((_w, i) => !failed.has(i))
    .flat()
    .map((w) => w.seq!);
  if (superseded.length) await outbox.mutate({ type: 'delete', trans, keys: superseded });
  await revisions.mutate({ type: 'put', trans, values: keptRevs });
  await outbox.mutate({ type: 'add', trans, values: keptOps });
  // Notify once the transaction is durable, not before (it may still abort).
  const idb = trans as unknown as IDBTransaction;
  if (typeof idb.addEventListener === 'function') idb.addEventListener('complete', () => hooks.onCaptured(), { once: true });
  else queueMicrotask(hooks.onCaptured);
  return result;
}
