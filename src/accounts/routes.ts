/**
 * Account actions (docs/admin.md "Account actions", docs/api.md "Account administration"):
 * - `accountAdmin`, mounted under `/api/admin` (its guard: deployment admin + intent header):
 *   disable, enable, sign-out, reset-password, delete.
 * - `accountSelf`, under `/api/auth`: a user's own change-email and account deletion.
 * - `passwordReset`, under `/api/basic-auth`: redeeming a reset link.
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { requireUser } from '../auth/authenticate';
import { hashPassword, passwordProblem, verifyPassword } from '../auth/passwords';
import { clearAuthCookies } from '../auth/cookies';
import { attemptKey, findUserById, normalizeEmail } from '../auth/store';
import type { AppEnv } from '../env';
import { emitDeploymentEvent } from '../events/deployment';
import { badRequest, conflict, notFound, rateLimited } from '../errors';
import { jsonBody } from '../http/body';
import { clientIp, enforceLimit } from '../http/rate-limit';
import { param } from '../http/param';
import { memberWorkspaceIds } from '../workspace-records/store';
import { dispositionSchema, endEverywhere, openResetToken, removeAccount, resetLink } from './actions';
import { changeEmail, disableUser, enableUser, endAllSessions, resetPassword, soleOwnedWorkspaces, type Disposition } from './store';

const SMALL = { maxBytes: 16 * 1024 };
const userParam = (c: Context<AppEnv>) => param(c.req.param('id'), 'user id');
const actor = async (c: Context<AppEnv>) => (await requireUser(c)).userId;

/** Ends every session of the user: the token version in D1, the sessions in their object, then at every workspace object. */
async function endSessions(c: Context<AppEnv>, userId: string): Promise<number> {
  const version = await endAllSessions(c.env.DB, userId);
  if (version === null) throw notFound('No such user', 'no_user');
  await c.env.USER_DB.getByName(userId).reloadFacts({ endSessions: {} });
  await endEverywhere(c.env, userId, await memberWorkspaceIds(c.env.DB, userId));
  return version;
}

export const accountAdmin = new Hono<AppEnv>()
  /** What a destructive action would touch: the workspaces this user alone owns, and where they are a member. */
  .get('/users/:id', async (c) => {
    const userId = userParam(c);
    const user = await findUserById(c.env.DB, userId);
    if (!user) throw notFound('No such user', 'no_user');
    const [sole, memberOf] = await Promise.all([soleOwnedWorkspaces(c.env.DB, userId), memberWorkspaceIds(c.env.DB, userId)]);
    return c.json({
      user: { id: user.id, email: user.email, displayName: user.display_name, deploymentAdmin: user.is_admin === 1, disabled: user.disabled_at !== null },
      soleOwnedWorkspaces: sole,
      memberships: memberOf.length,
    });
  })

  .post('/users/:id/disable', async (c) => {
    const userId = userParam(c);
    const outcome = await disableUser(c.env.DB, userId);
    if (outcome === 'no_user') throw notFound('No such user', 'no_user');
    if (outcome === 'last_admin') throw conflict('The last enabled deployment admin cannot be disabled', 'last_admin');
    await c.env.USER_DB.getByName(userId).reloadFacts({ endSessions: {} });
    await endEverywhere(c.env, userId, await memberWorkspaceIds(c.env.DB, userId), true);
    audit(c, 'admin.user.disabled', { actorId: await actor(c), targetUserId: userId });
    emitDeploymentEvent(c, 'admin.user.disabled', { userId });
    return c.json({ ok: true });
  })

  .post('/users/:id/enable', async (c) => {
    const userId = userParam(c);
    if (!(await enableUser(c.env.DB, userId))) throw notFound('No such user', 'no_user');
    await c.env.USER_DB.getByName(userId).reloadFacts();
    audit(c, 'admin.user.enabled', { actorId: await actor(c), targetUserId: userId });
    return c.json({ ok: true });
  })

  .post('/users/:id/sign-out', async (c) => {
    const userId = userParam(c);
    await endSessions(c, userId);
    audit(c, 'admin.user.signed_out', { actorId: await actor(c), targetUserId: userId });
    return c.json({ ok: true });
  })

  /** A one-time link (never a temporary password): the secret is in this answer only. */
  .post('/users/:id/reset-password', async (c) => {
    const userId = userParam(c);
    const version = await endSessions(c, userId);
    audit(c, 'admin.user.password_reset', { actorId: await actor(c), targetUserId: userId });
    return c.json(await resetLink(c, userId, version));
  })

  .delete('/users/:id', async (c) => {
    const userId = userParam(c);
    const body = await jsonBody(c, dispositionSchema, SMALL);
    if (!(await findUserById(c.env.DB, userId))) throw notFound('No such user', 'no_user');
    const result = await removeAccount(c, userId, body);
    audit(c, 'admin.user.deleted', {
      actorId: await actor(c),
      targetUserId: userId,
      workspaces: result.workspaces.length,
      transferredTo: result.transferredTo ?? null,
    });
    emitDeploymentEvent(c, 'admin.user.deleted', { userId, workspaces: result.workspaces.length, transferredTo: result.transferredTo ?? null });
    return c.json({ ok: true, ...result });
  });

const changeEmailSchema = z.strictObject({ newEmail: z.email().max(320), currentPassword: z.string().min(1).max(1024) });

export const accountSelf = new Hono<AppEnv>()
  .post('/change-email', async (c) => {
    const principal = await requireUser(c);
    const body = await jsonBody(c, changeEmailSchema, SMALL);
    await enforceLimit(c.env.RL_AUTH, `change-email:${principal.userId}`);
    const db = c.env.DB;
    const user = await findUserById(db, principal.userId);
    if (!user?.password_hash) throw badRequest('This account signs in through an identity provider; it has no password', 'no_password');
    const attempts = c.env.LOGIN_ATTEMPTS.getByName(attemptKey.changePassword(user.id)); // the same backoff as password changes
    const attempt = await attempts.count();
    if (!attempt.allowed) throw rateLimited(attempt.retryAfterMs / 1000);
    if (!(await verifyPassword(body.currentPassword, user.password_hash)).ok) throw badRequest('Current password is incorrect', 'invalid_current_password');
    await attempts.clear();
    const email = normalizeEmail(body.newEmail);
    if ((await changeEmail(db, user.id, email)) === 'taken') throw conflict('That email address is in use', 'email_taken');
    await c.env.USER_DB.getByName(user.id).reloadProfile(); // the session endpoint answers from the user's object
    audit(c, 'auth.email.changed', { actorId: user.id, email });
    return c.json({ ok: true });
  })

  .delete('/account', async (c) => {
    const principal = await requireUser(c);
    const body = await jsonBody(c, z.union([dispositionSchema, z.strictObject({})]), { ...SMALL, allowEmpty: true });
    const result = await removeAccount(c, principal.userId, 'transferTo' in body || 'delete' in body ? (body as Disposition) : null);
    clearAuthCookies(c);
    audit(c, 'auth.account.deleted', { actorId: principal.userId, workspaces: result.workspaces.length, transferredTo: result.transferredTo ?? null });
    return c.json({ ok: true });
  });

const redeemSchema = z.strictObject({ token: z.string().min(1).max(1000), newPassword: z.string().max(1024), confirmNewPassword: z.string().max(1024) });

export const passwordReset = new Hono<AppEnv>().post('/reset-password', async (c) => {
  await enforceLimit(c.env.RL_AUTH, `reset:${clientIp(c)}`);
  const body = await jsonBody(c, redeemSchema, SMALL);
  if (body.newPassword !== body.confirmNewPassword) throw badRequest('Passwords do not match', 'password_mismatch');
  const problem = passwordProblem(body.newPassword);
  if (problem) throw badRequest(problem, 'weak_password');
  const { userId, tokenVersion } = await openResetToken(c, body.token);
  const user = await findUserById(c.env.DB, userId);
  if (!user || user.token_version !== tokenVersion) throw badRequest('This reset link is invalid or was already used', 'invalid_reset_token');
  if (!(await resetPassword(c.env.DB, userId, tokenVersion, await hashPassword(body.newPassword)))) {
    throw badRequest('This reset link is invalid or was already used', 'invalid_reset_token');
  }
  if (user.email) await c.env.LOGIN_ATTEMPTS.getByName(await attemptKey.signIn(user.email)).clear();
  await c.env.USER_DB.getByName(userId).reloadFacts({ endSessions: {} });
  await endEverywhere(c.env, userId, await memberWorkspaceIds(c.env.DB, userId));
  audit(c, 'auth.password.reset', { actorId: userId });
  return c.json({ ok: true });
});
