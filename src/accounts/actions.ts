/**
 * What the account actions do beyond D1 (docs/admin.md "Account actions"): after the D1 write,
 * every workspace object the user belongs to drops its cached facts about them and closes their
 * sockets (4001), so the very next request with an old token is 401 there too; and the one-time
 * password-reset link.
 */
import type { Context } from 'hono';
import * as z from 'zod';
import type { AppEnv, Bindings } from '../env';
import { seal, unseal } from '../crypto';
import { badRequest, conflict, gone, notFound } from '../errors';
import { logEvent } from '../http/logger';
import { removeMember, upsertMember, workspaceRowChanged } from '../workspace-records/member-writes';
import { memberWorkspaceIds } from '../workspace-records/store';
import { deleteUser, soleOwnedWorkspaces, type Disposition } from './store';

/** How long a reset link stays redeemable. */
export const RESET_TTL_MS = 60 * 60 * 1000;
const EXPIRES_AT = 2;

const resetKey = (c: Context<AppEnv>) => `password-reset:${c.get('config').auth.jwtSecret}`;

/**
 * A reset link bound to the user's token version at issue: redeeming moves the version on, so
 * it works once, and anything else that ends the user's sessions afterwards voids it too.
 */
export async function resetLink(c: Context<AppEnv>, userId: string, tokenVersion: number, now = Date.now()) {
  const expiresAt = now + RESET_TTL_MS;
  const token = await seal(resetKey(c), [userId, tokenVersion, expiresAt]);
  const url = new URL('/admin/reset.html', c.req.url);
  url.searchParams.set('token', token);
  return { resetUrl: url.toString(), expiresAt: new Date(expiresAt).toISOString() };
}

/** The user and token version a reset token names; 400 when not ours, 410 when expired. */
export async function openResetToken(c: Context<AppEnv>, token: string): Promise<{ userId: string; tokenVersion: number }> {
  const opened = await unseal(resetKey(c), token, EXPIRES_AT);
  if (!opened.ok) {
    if (opened.reason === 'expired') throw gone('This reset link has expired', 'reset_expired');
    throw badRequest('This reset link is invalid or was already used', 'invalid_reset_token');
  }
  const [userId, tokenVersion] = opened.fields;
  if (typeof userId !== 'string' || typeof tokenVersion !== 'number') throw badRequest('This reset link is invalid', 'invalid_reset_token');
  return { userId, tokenVersion };
}

/**
 * Tells each workspace object: forget the user's cached facts and close their sockets (4001);
 * `endServiceTokens` (disable, delete) also revokes the service tokens the user created there.
 * Never throws: the D1 change has happened; a lost message is bounded by the cache lifetime.
 */
export async function endEverywhere(env: Bindings, userId: string, workspaceIds: string[], endServiceTokens = false): Promise<void> {
  await Promise.all(
    workspaceIds.map((id) =>
      env.WORKSPACE.getByName(id)
        .closeSessionSockets({ userId, endServiceTokens })
        .catch((err: unknown) => logEvent('warn', 'socket_close_failed', { workspaceId: id, message: err instanceof Error ? err.message : String(err) })),
    ),
  );
}

export const dispositionSchema = z.union([z.strictObject({ transferTo: z.string().trim().min(1).max(100) }), z.strictObject({ delete: z.literal(true) })]);

/**
 * Deletes a user with the rules both the admin route and self-deletion follow: a disposition
 * is required while they alone own a workspace; `transferTo` must be another existing user;
 * then D1 in one batch, then every object they were in is told. Returns what happened.
 */
export async function removeAccount(c: Context<AppEnv>, userId: string, disposition: Disposition | null) {
  const db = c.env.DB;
  const sole = await soleOwnedWorkspaces(db, userId);
  if (sole.length && !disposition) {
    throw badRequest(`This user alone owns ${sole.length} workspace(s); say { "transferTo": "<userId>" } or { "delete": true }`, 'disposition_required');
  }
  if (disposition && 'transferTo' in disposition) {
    if (disposition.transferTo === userId) throw badRequest('transferTo must be another user', 'invalid_transfer');
    const target = await db.prepare('SELECT disabled_at FROM users WHERE id = ?').bind(disposition.transferTo).first<{ disabled_at: number | null }>();
    if (!target) throw notFound('transferTo names no user', 'no_transfer_user');
  }
  const memberOf = await memberWorkspaceIds(db, userId);
  const outcome = await deleteUser(
    db,
    userId,
    sole.map((w) => w.id),
    disposition ?? { delete: true },
  );
  if (outcome === 'no_user') throw notFound('No such user', 'no_user');
  if (outcome === 'last_admin') throw conflict('The last deployment admin cannot be deleted', 'last_admin');
  await c.env.USER_DB.getByName(userId).erase();
  await endEverywhere(c.env, userId, memberOf, true);
  const moved = sole.map((w) => w.id);
  // D1's batch decided (the last-admin guard lives there); the workspaces' objects, the members'
  // authority, follow: the new owner first (a workspace keeps an owner), then the user leaves.
  if (disposition && 'transferTo' in disposition) {
    const to = disposition.transferTo;
    await Promise.all(moved.map((id) => upsertMember(c.env, id, to, 'owner').catch(() => 'failed')));
  } else {
    await Promise.all(moved.map((id) => workspaceRowChanged(c.env, id))); // deleted: everyone's sockets end
  }
  await Promise.all(memberOf.map((id) => removeMember(c.env, id, userId).catch(() => 'failed')));
  return disposition && 'transferTo' in disposition ? { workspaces: moved, transferredTo: disposition.transferTo } : { workspaces: moved, deleted: true };
}
