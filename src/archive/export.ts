/**
 * `GET /api/workspaces/:id/export` (owner): the workspace's members, full history, current
 * state and blob records as one JSONL stream, readable line by line while it downloads, and the
 * format `POST /api/admin/import` takes (docs/operations.md "Export", docs/admin.md "Import"):
 *
 *   {"type":"header","format":"or3-edge-export/v1","workspaceId",…,"name","description","createdAt","exportedBy"}
 *   {"type":"member",…}   userId, role, email?, displayName? (never a password hash or a token)
 *   {"type":"change",…}   every change, archived segments first (by day manifest), then the live
 *                         log, in version order, each version once
 *   {"type":"row"|"tombstone",…}   the current state, as in a snapshot
 *   {"type":"file",…}     the committed blobs' records (hash, size_bytes, mime_type, name, kind)
 *   {"type":"end","changes":N,"items":M,"members":K,"files":F}
 *
 * Other users' notifications are left out, as in pull. Written in chunks as it is read, so a
 * large workspace never sits in memory.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import type { SnapshotItem } from '../workspace-db/reads';
import type { BlobRecord } from '../workspace-db/blobs';
import { listMembers, workspaceRecord } from '../workspace-records/store';
import { parseJsonl, type ManifestEntry } from '../r2-jsonl';
import { archivePrefix, type ArchivedEntry } from '../workspace-db/history-archive';

/** The two object methods an export uses (typed here: RPC's mapped types are too deep for these). */
export interface ExportSource {
  exportLog(after: number, limit: number, userId: string | null): Promise<{ entries: ArchivedEntry[]; through: number; done: boolean }>;
  exportState(after: [string, string] | null, pageSize: number, userId: string): Promise<{ items: SnapshotItem[]; next: [string, string] | null }>;
  exportFiles(after: string, limit: number): Promise<BlobRecord[]>;
}

const PAGE = 500;

/** The export (and import) format's name and version. */
export const EXPORT_FORMAT = 'or3-edge-export/v1';

/**
 * A workspace's whole history in version order, in pages: the archived segments (by day
 * manifest), then the live log after them, each version once. `userId` null includes every
 * user's notifications; otherwise only that user's.
 */
export async function* readHistory(bucket: R2Bucket, ws: ExportSource, workspaceId: string, userId: string | null): AsyncGenerator<ArchivedEntry[]> {
  let lastVersion = 0;
  const manifests: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: `${archivePrefix(workspaceId)}manifests/`, ...(cursor ? { cursor } : {}) });
    manifests.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  for (const key of manifests.sort()) {
    const manifest = await bucket.get(key);
    if (!manifest) continue;
    for (const segment of parseJsonl<ManifestEntry>(await manifest.text()).sort((a, b) => a.first - b.first)) {
      if (segment.last <= lastVersion) continue;
      const body = await bucket.get(segment.key);
      if (!body) continue;
      const entries = parseJsonl<ArchivedEntry>(await body.text()).filter(
        (e) => e.serverVersion > lastVersion && (userId === null || e.tableName !== 'notifications' || e.userId === userId),
      );
      if (entries.length) yield entries;
      lastVersion = Math.max(lastVersion, segment.last);
    }
  }
  for (;;) {
    const page = await ws.exportLog(lastVersion, PAGE, userId);
    if (page.entries.length) yield page.entries;
    lastVersion = page.through;
    if (page.done) return;
  }
}

export async function exportWorkspace(c: Context<AppEnv>, workspaceId: string, userId: string): Promise<Response> {
  const ws = c.env.WORKSPACE.getByName(workspaceId) as unknown as ExportSource;
  const bucket = c.env.BLOBS;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const encoder = new TextEncoder();
  const emit = (lines: unknown[]) => (lines.length ? writer.write(encoder.encode(lines.map((l) => JSON.stringify(l)).join('\n') + '\n')) : Promise.resolve());

  const write = async () => {
    let changes = 0;
    let items = 0;
    let files = 0;
    const change = (e: ArchivedEntry) => ({ type: 'change', ...e });
    const record = await workspaceRecord(c.env.DB, workspaceId);
    await emit([
      {
        type: 'header',
        format: EXPORT_FORMAT,
        workspaceId,
        exportedAt: new Date().toISOString(),
        exportedBy: userId,
        ...(record ? { name: record.name, description: record.description, createdAt: record.createdAt } : {}),
      },
    ]);
    const members = await listMembers(c.env.DB, workspaceId);
    await emit(members.map((m) => ({ type: 'member', ...m })));

    for await (const entries of readHistory(bucket, ws, workspaceId, userId)) {
      await emit(entries.map(change));
      changes += entries.length;
    }

    // The current state.
    let after: [string, string] | null = null;
    for (;;) {
      const page = await ws.exportState(after, PAGE, userId);
      await emit(page.items.map((i) => ({ type: i.kind, ...i })));
      items += page.items.length;
      if (!page.next) break;
      after = page.next;
    }
    // The blob records (the bytes stay in R2, under ws/<workspaceId>/).
    let afterHash = '';
    for (;;) {
      const page = await ws.exportFiles(afterHash, PAGE);
      await emit(page.map((f) => ({ type: 'file', ...f })));
      files += page.length;
      if (page.length < PAGE) break;
      afterHash = page[page.length - 1]!.hash;
    }
    await emit([{ type: 'end', changes, items, members: members.length, files }]);
    await writer.close();
  };

  c.executionCtx.waitUntil(write().catch((err) => writer.abort(err)));
  return new Response(readable, {
    headers: {
      'content-type': 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="workspace-${workspaceId}.jsonl"`,
    },
  });
}
