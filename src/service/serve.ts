/**
 * What the workspace's object does for the service API, kept out of its class: token management,
 * the reader, and preparing server-authored writes (docs/service-api.md). Returns `Failure`
 * values (thrown errors lose their type over RPC).
 */
import { WireError, type Failure } from '../errors';
import { prepareBatch, type PreparedOp } from '../../protocol/rules';
import { TABLES } from '../../protocol/sync';
import { decodeCursor, readMessages, readRow, type MessagePage } from './reader';
import { stampOps, type ServerClock, type ServiceOp } from './stamp';
import type { Scope, ServiceAccess, ServiceTokens, TokenView } from './tokens';

export type TokenRequest =
  | { op: 'list' }
  | { op: 'create'; tokenId: string; secretHash: string; name: string; scopes: Scope[]; expiresAt: number; createdBy: string }
  | { op: 'revoke'; id: string };

export type TokenReply = { ok: true; serviceTokens: TokenView[] } | { ok: true; serviceToken: TokenView } | { ok: true };

export function manageTokens(tokens: ServiceTokens, request: TokenRequest, now: number): TokenReply | Failure {
  if (request.op === 'list') return { ok: true, serviceTokens: tokens.list(now) };
  if (request.op === 'revoke') {
    return tokens.revoke(request.id, now) ? { ok: true } : { ok: false, status: 404, code: 'token_not_found', message: 'No such service token' };
  }
  const created = tokens.create(request, now);
  return 'ok' in created ? created : { ok: true, serviceToken: created };
}

export type ReadRequest = { kind: 'messages'; threadId: string; after: string | null; limit: number } | { kind: 'row'; table: string; pk: string };
export type ReadReply = ({ ok: true } & MessagePage) | { ok: true; row: Record<string, unknown>; serverVersion: number };

const bad = (message: string, code = 'invalid_query'): Failure => ({ ok: false, status: 400, code, message });
/** Notifications belong to their users; a service token is not one. */
const NOT_FOR_SERVICES = new Set(['notifications']);

export function read(sql: SqlStorage, request: ReadRequest): ReadReply | Failure {
  if (request.kind === 'messages') {
    const after = request.after === null ? null : decodeCursor(request.after);
    if (request.after !== null && !after) return bad('after is not a cursor this API returned');
    return { ok: true, ...readMessages(sql, request.threadId, after, request.limit) };
  }
  if (!(TABLES as readonly string[]).includes(request.table) || NOT_FOR_SERVICES.has(request.table))
    return bad(`Unknown table ${request.table.slice(0, 64)}`, 'invalid_param');
  const found = readRow(sql, request.table, request.pk);
  return found ? { ok: true, ...found } : { ok: false, status: 404, code: 'row_not_found', message: 'No such row' };
}

/** Stamps and prepares a service token's ops for the push transaction (the same rules as a device's). */
export async function prepareServiceOps(
  sql: SqlStorage,
  clock: ServerClock,
  access: ServiceAccess,
  workspaceId: string,
  ops: ServiceOp[],
): Promise<PreparedOp[] | Failure> {
  const refused = ops.find((op) => NOT_FOR_SERVICES.has(op.tableName));
  if (refused) return bad(`A service token cannot write ${refused.tableName}: they belong to users`, 'invalid_body');
  const currentClock = (table: string, pk: string) =>
    sql.exec<{ clock: number }>('SELECT clock FROM rows WHERE table_name = ? AND pk = ?', table, pk).toArray()[0]?.clock ?? null;
  const stamped = stampOps(ops, access.actor, clock, currentClock);
  try {
    return await prepareBatch(stamped, workspaceId, access.actor);
  } catch (err) {
    if (err instanceof WireError) return { ok: false, status: err.status as Failure['status'], code: err.code, message: err.message };
    throw err;
  }
}
