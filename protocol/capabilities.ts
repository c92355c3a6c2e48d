/**
 * Capabilities that newer OR3 clients declare (docs/api.md "Capabilities"), and the rows that
 * need them. Pure: the Worker classifies payloads on the way in; the workspace's object keeps
 * the result as `rows.flags`, so the gates never parse a stored payload again.
 *
 * - `fileKindCapability: 'v1'` (storage: `file_kind_capability`): the client understands
 *   generic files, `file_meta.kind: 'file'` (anything but a PDF or a PNG/JPEG/WebP/GIF image).
 * - `workspaceItemCapability: 'v1'`: the client understands workspace items (Files and Trash
 *   kept as posts and projects: a `post_type` of `or3:file`, an `or3.workspace-item` entry in a
 *   post's `meta`, a project whose `data` lists an entry of `kind: 'file'`).
 *
 * A client without the capability is refused with 426 and OR3's code rather than served or
 * allowed to write rows it would mangle. The rules are OR3 Chat's own (its
 * shared/files/file-capability.ts, shared/files/file-kind.ts and
 * shared/posts/workspace-item-capability.ts), written here in our own code.
 */
import * as z from 'zod';
import type { Failure } from './errors';

export const CAPABILITY_V1 = 'v1' as const;
/** A declared capability: only 'v1' exists; anything else is a 400. */
export const capabilityField = z.literal(CAPABILITY_V1).optional();

export interface Capabilities {
  fileKind: boolean;
  workspaceItem: boolean;
}
/** What a client that declares nothing may do (OR3's Feb generation, and older). */
export const NO_CAPABILITIES: Capabilities = { fileKind: false, workspaceItem: false };
/** Clients that keep every field of every row (our own SDK, sync over the socket). */
export const ALL_CAPABILITIES: Capabilities = { fileKind: true, workspaceItem: true };

export function declared(body: { fileKindCapability?: string; workspaceItemCapability?: string }): Capabilities {
  return { fileKind: body.fileKindCapability === CAPABILITY_V1, workspaceItem: body.workspaceItemCapability === CAPABILITY_V1 };
}

/** `rows.flags` bits: what a stored row needs of its readers and writers. */
export const FLAG_GENERIC_FILE = 1;
export const FLAG_WORKSPACE_ITEM = 2;

/** The flags a client lacks, as a bit mask to test rows against. */
export function missingFlags(caps: Capabilities): number {
  return (caps.fileKind ? 0 : FLAG_GENERIC_FILE) | (caps.workspaceItem ? 0 : FLAG_WORKSPACE_ITEM);
}

// ---------------------------------------------------------------------------------------------
// Classification

/** Raster formats OR3 treats as images; every other MIME but PDF is a generic file. */
const RASTER = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/gif']);

/** OR3's file kind of a declared MIME type (parameters ignored, case-insensitive). */
export function fileKindOf(mimeType: string | null | undefined): 'image' | 'pdf' | 'file' {
  const mime = (mimeType ?? '').split(';')[0]!.trim().toLowerCase() || 'application/octet-stream';
  if (mime === 'application/pdf') return 'pdf';
  return RASTER.has(mime) ? 'image' : 'file';
}

const FILE_CATALOG_POST_TYPE = 'or3:file';
const WORKSPACE_ITEM_META_KEY = 'or3.workspace-item';

/** JSON text decoded (null when it is not JSON); other values as they are. */
function decoded(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return null;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether a row carries workspace-item semantics, even when their version or content is malformed. */
export function hasWorkspaceItemSemantics(tableName: string, payload: Record<string, unknown>): boolean {
  if (tableName === 'posts') {
    if ((payload.post_type ?? payload.postType) === FILE_CATALOG_POST_TYPE) return true;
    const meta = decoded(payload.meta);
    if (Array.isArray(meta)) return meta.some((entry) => isRecord(entry) && entry.key === WORKSPACE_ITEM_META_KEY);
    return isRecord(meta) && (Object.hasOwn(meta, WORKSPACE_ITEM_META_KEY) || meta.key === WORKSPACE_ITEM_META_KEY);
  }
  if (tableName === 'projects') {
    const entries = decoded(payload.data);
    return Array.isArray(entries) && entries.some((entry) => isRecord(entry) && entry.kind === 'file');
  }
  return false;
}

/** The flags of a row payload (a put's; a delete carries none of its own). */
export function rowFlags(tableName: string, payload: Record<string, unknown> | null | undefined): number {
  if (!payload) return 0;
  if (tableName === 'file_meta') return payload.kind === 'file' ? FLAG_GENERIC_FILE : 0;
  return hasWorkspaceItemSemantics(tableName, payload) ? FLAG_WORKSPACE_ITEM : 0;
}

// ---------------------------------------------------------------------------------------------
// Refusals (HTTP 426, OR3's codes and messages)

export const FILE_KIND_UPDATE_REQUIRED = 'OR3_FILE_KIND_UPDATE_REQUIRED';
export const WORKSPACE_ITEM_UPDATE_REQUIRED = 'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED';

export const fileKindRequired = (): Failure => ({
  ok: false,
  status: 426,
  code: FILE_KIND_UPDATE_REQUIRED,
  message: 'Update OR3 Chat to use general files',
  extra: { code: FILE_KIND_UPDATE_REQUIRED, requiredCapability: CAPABILITY_V1 },
});
export const workspaceItemRequired = (): Failure => ({
  ok: false,
  status: 426,
  code: WORKSPACE_ITEM_UPDATE_REQUIRED,
  message: 'Update OR3 Chat to use workspace Files and Trash',
  extra: { code: WORKSPACE_ITEM_UPDATE_REQUIRED, requiredCapability: CAPABILITY_V1 },
});

/** The refusal for rows carrying `flags` that a client lacking `missing` may not touch, or null. */
export function capabilityFailure(flags: number, missing: number): Failure | null {
  const lacking = flags & missing;
  if (lacking & FLAG_WORKSPACE_ITEM) return workspaceItemRequired();
  if (lacking & FLAG_GENERIC_FILE) return fileKindRequired();
  return null;
}
