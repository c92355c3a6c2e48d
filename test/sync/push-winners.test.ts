/**
 * Push results as OR3's newest clients validate them (docs/api.md "Push results"): `replayed`
 * for an opId already applied, `applied: false` with the key's current `winner` for an op that
 * does not hold its key. Every answer is checked against our own zod copy of OR3's refinement
 * rules (its shared/sync/schemas.ts `PushResultSchema`, rules restated here in our words).
 */
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { message, op, push, syncUser } from './helpers';

const revision = z.object({ clock: z.number().int().nonnegative(), hlc: z.string().min(1), opId: z.string().min(1) });
const winner = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('put'), payload: z.record(z.string(), z.unknown()), revision }),
  z.object({ kind: z.literal('delete'), revision, serverDeletedAt: z.number().nonnegative().optional() }),
]);
const errorCodes = [
  'VALIDATION_ERROR',
  'UNAUTHORIZED',
  'CONFLICT',
  'NOT_FOUND',
  'RATE_LIMITED',
  'OVERSIZED',
  'NETWORK_ERROR',
  'SERVER_ERROR',
  'UNKNOWN',
] as const;
const result = z
  .object({
    opId: z.string().min(1),
    success: z.boolean(),
    serverVersion: z.number().int().positive().optional(),
    error: z.string().optional(),
    replayed: z.boolean().optional(),
    applied: z.boolean().optional(),
    winner: winner.optional(),
    errorCode: z.enum(errorCodes).optional(),
  })
  .superRefine((r, ctx) => {
    // A replay is always a success; a replay that no longer holds its key names the winner.
    if (r.replayed && !r.success) ctx.addIssue({ code: 'custom', path: ['replayed'], message: 'replayed but not successful' });
    if (r.replayed && r.applied === false && !r.winner) ctx.addIssue({ code: 'custom', path: ['winner'], message: 'superseded replay without its winner' });
  });
const pushResponse = z.object({ results: z.array(result).max(100), serverVersion: z.number().int().nonnegative() }).superRefine((response, ctx) => {
  const seen = new Set<string>();
  response.results.forEach((r, i) => {
    if (seen.has(r.opId)) ctx.addIssue({ code: 'custom', path: ['results', i, 'opId'], message: 'duplicate opId' });
    if (r.serverVersion !== undefined && r.serverVersion > response.serverVersion)
      ctx.addIssue({ code: 'custom', path: ['results', i, 'serverVersion'], message: 'above the response serverVersion' });
    seen.add(r.opId);
  });
});

async function pushChecked(u: { headers: Record<string, string> }, workspaceId: string, ops: unknown[]) {
  const res = await push(u, workspaceId, ops);
  expect(res.status).toBe(200);
  const parsed = pushResponse.safeParse(await res.json());
  if (!parsed.success) throw new Error(`push response breaks OR3's rules: ${JSON.stringify(parsed.error.issues)}`);
  return parsed.data;
}

describe('push results: replayed and winner', () => {
  it('a fresh winning op is applied; its replay is replayed with the original version and still applied', async () => {
    const u = await syncUser();
    const a = op('messages', 'm1', message('m1'));
    const first = await pushChecked(u, u.workspaceId, [a]);
    expect(first.results[0]).toEqual({ opId: a.stamp.opId, success: true, serverVersion: 1, applied: true });
    const again = await pushChecked(u, u.workspaceId, [a]);
    expect(again.results[0]).toEqual({ opId: a.stamp.opId, success: true, serverVersion: 1, replayed: true, applied: true });
  });

  it('a replay of a superseded op carries the current winner (put), and a losing new op too', async () => {
    const u = await syncUser();
    const a = op('messages', 'm1', message('m1', { data: 'old' }), { clock: 1 });
    const b = op('messages', 'm1', message('m1', { data: 'new' }), { clock: 2 });
    await pushChecked(u, u.workspaceId, [a]);
    await pushChecked(u, u.workspaceId, [b]);
    const replay = await pushChecked(u, u.workspaceId, [a]);
    expect(replay.results[0]).toMatchObject({ opId: a.stamp.opId, success: true, serverVersion: 1, replayed: true, applied: false });
    expect(replay.results[0]!.winner).toEqual({
      kind: 'put',
      payload: expect.objectContaining({ id: 'm1', data: 'new' }),
      revision: { clock: 2, hlc: b.stamp.hlc, opId: b.stamp.opId },
    });
    const late = op('messages', 'm1', message('m1', { data: 'late' }), { clock: 1 });
    const lost = await pushChecked(u, u.workspaceId, [late]);
    expect(lost.results[0]).toMatchObject({ success: true, serverVersion: 3, applied: false, winner: { kind: 'put', revision: { opId: b.stamp.opId } } });
    expect(lost.results[0]!.replayed).toBeUndefined();
  });

  it('a replay of a put whose key was deleted since carries a delete winner with serverDeletedAt in epoch seconds', async () => {
    const u = await syncUser();
    const a = op('messages', 'm1', message('m1'), { clock: 1 });
    const del = op('messages', 'm1', undefined, { operation: 'delete', clock: 2 });
    await pushChecked(u, u.workspaceId, [a, del]);
    const replay = await pushChecked(u, u.workspaceId, [a]);
    const w = replay.results[0]!.winner!;
    expect(w).toMatchObject({ kind: 'delete', revision: { clock: 2, opId: del.stamp.opId } });
    expect(w.kind === 'delete' && Number.isInteger(w.serverDeletedAt) && Math.abs(w.serverDeletedAt! - Date.now() / 1000) < 120).toBe(true);
  });

  it('within one batch, an op superseded by a later one names it as the winner; conflicts and refusals carry no winner', async () => {
    const u = await syncUser();
    const a = op('messages', 'm1', message('m1', { data: 'a' }), { clock: 1 });
    const b = op('messages', 'm1', message('m1', { data: 'b' }), { clock: 2 });
    const reply = await pushChecked(u, u.workspaceId, [a, b]);
    expect(reply.results[0]).toMatchObject({ success: true, applied: false, winner: { kind: 'put', revision: { opId: b.stamp.opId } } });
    expect(reply.results[1]).toMatchObject({ success: true, applied: true });
    expect(reply.results[1]!.winner).toBeUndefined();
    const conflict = await pushChecked(u, u.workspaceId, [{ ...a, payload: message('m1', { data: 'changed' }) }]);
    expect(conflict.results[0]).toMatchObject({ success: false, errorCode: 'CONFLICT' });
    expect(conflict.results[0]!.winner).toBeUndefined();
  });
});
