/**
 * Built-in email + password auth (`/api/basic-auth/*`) and session resolution
 * (`GET /api/auth/session`), speaking OR3's contract (docs/auth.md "Built-in email + password").
 *
 * Browsers get HttpOnly cookies; clients that send `x-or3-token-transport: bearer` get the
 * tokens in the body instead (and refresh with `{ refreshToken }`).
 */
import { Hono, type Context } from 'hono';
import { getCookie } from 'hono/cookie';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { emitDeploymentEvent } from '../events/deployment';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, conflict, forbidden, rateLimited, unauthorized } from '../errors';
import { clientIp, enforceLimit } from '../http/rate-limit';
import { inviteIsClaimable, provisionDefaultWorkspace } from '../workspace-records/store';
import { adoptAcceptedInvite, adoptMember } from '../workspace-records/member-writes';
import { authenticate, requireUser, verifyCredential, type Principal } from './authenticate';
import { issueAccessToken, rotate } from './refresh';
import { REFRESH_COOKIE, clearAuthCookies, setAccessCookie, setAuthCookies } from './cookies';
import { hashPassword, passwordProblem, verifyPassword } from './passwords';
import { logEvent } from '../http/logger';
import {
  anyAdminExists,
  attemptKey,
  changePassword,
  createInvitedUser,
  createBootstrapAdmin,
  createPasswordUser,
  findUserByEmail,
  findUserById,
  normalizeEmail,
  rehashPassword,
} from './store';
import { CAPABILITY_V1 } from '../../protocol/capabilities';
import { legacyTokenOwner } from '../user-db/legacy';
import { parseRefreshToken } from '../user-db/tokens';
import { sha256Hex } from '../crypto';

/** Auth bodies are a few short strings; a small cap answers oversized ones with 413 before any work. */
const AUTH_BODY = { maxBytes: 16 * 1024 };

const invalidCredentials = () => new ApiError(401, 'invalid_credentials', 'Invalid credentials');

const wantsBearer = (c: Context<AppEnv>) => c.req.header('x-or3-token-transport')?.toLowerCase() === 'bearer';

/** Signs an access token and hands both tokens over by cookie or, for bearer clients, in the body. */
async function deliverTokens(c: Context<AppEnv>, userId: string, sessionId: string, tokenVersion: number, refreshToken: string | null) {
  const { token, expiresAt } = await issueAccessToken(c, { userId, sessionId, tokenVersion });
  if (wantsBearer(c)) {
    return c.json({ ok: true, accessToken: token, ...(refreshToken ? { refreshToken } : {}), expiresAt: new Date(expiresAt).toISOString() });
  }
  if (refreshToken) setAuthCookies(c, token, refreshToken);
  else setAccessCookie(c, token);
  return c.json({ ok: true });
}

// Checked once per isolate (per configuration); D1's conditional insert makes the admin once
// per deployment.
const bootstrapRuns = new WeakMap<object, Promise<void>>();

async function ensureBootstrapAdmin(c: Context<AppEnv>) {
  const config = c.get('config');
  const bootstrap = config.auth.bootstrap;
  if (!bootstrap) return;
  let run = bootstrapRuns.get(config);
  if (!run) {
    run = (async () => {
      if (await anyAdminExists(c.env.DB)) return;
      const created = await createBootstrapAdmin(c.env.DB, bootstrap.email, await hashPassword(bootstrap.password));
      if (created) audit(c, 'auth.bootstrap_admin.created', { email: bootstrap.email });
    })().catch((err) => {
      bootstrapRuns.delete(config); // retry on the next sign-in
      throw err;
    });
    bootstrapRuns.set(config, run);
  }
  await run;
}

/**
 * A refusal of registration on a deployment with no admin yet names the way in: the setup path
 * (src/setup/routes.ts), open whatever the mode, so nobody is ever locked out. One D1 read, on a
 * refusal only.
 */
async function withSetupHint(c: Context<AppEnv>, message: string) {
  if (await anyAdminExists(c.env.DB)) return message;
  return `${message}. This deployment has no admin yet: create the first one with the setup link that \`npm run deploy\` printed (or \`npm run setup-link\`), at /setup`;
}

const email = z.string().trim().min(3).max(320);
const signInSchema = z.strictObject({ email, password: z.string().min(1).max(1024) });
const registerSchema = z.strictObject({
  email: z.email().max(320),
  password: z.string().max(1024),
  confirmPassword: z.string().max(1024),
  displayName: z.string().trim().min(1).max(100).optional(),
  inviteToken: z.string().min(1).max(200).optional(),
});
const refreshSchema = z.strictObject({ refreshToken: z.string().max(200).optional() });
const changePasswordSchema = z.strictObject({
  currentPassword: z.string().min(1).max(1024),
  newPassword: z.string().max(1024),
  confirmNewPassword: z.string().max(1024),
});

/**
 * Waits until `at`. A verification slower than the answer time (an overloaded isolate) answers
 * late and is logged: the operator should raise OR3_BASIC_AUTH_FAILED_SIGN_IN_MS.
 */
async function waitUntilAnswer(at: number) {
  const left = at - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  else logEvent('warn', 'sign_in_answer_late', { lateMs: -left });
}

export const basicAuth = new Hono<AppEnv>()
  .post('/sign-in', async (c) => {
    // Every failure is answered at this fixed time after arrival (docs/auth.md "Sign-in timing").
    const answerAt = Date.now() + c.get('config').auth.failedSignInMs;
    const ip = clientIp(c);
    await enforceLimit(c.env.RL_AUTH, `signin:${ip}`);
    const body = await jsonBody(c, signInSchema, AUTH_BODY);
    await ensureBootstrapAdmin(c);
    const db = c.env.DB;
    const accountKey = normalizeEmail(body.email);

    // Counted before checking, cleared on success, in the key's own object, which counts one
    // attempt at a time: parallel guesses cannot outrun the backoff (src/login-attempts/). An
    // unknown email is counted too: nothing here may tell whether the account exists.
    const attempts = c.env.LOGIN_ATTEMPTS.getByName(await attemptKey.signIn(accountKey));
    const attempt = await attempts.count();
    if (!attempt.allowed) throw rateLimited(attempt.retryAfterMs / 1000);

    // Only a live account's stored hash is verified; unknown, disabled and password-less
    // accounts cost no CPU. What hides which case it was is the answer time: every failure,
    // whatever hash the account holds, is answered at `answerAt` (a timer costs the Worker no
    // CPU), which is later than the slowest verification accepted (bcrypt cost 12, passwords.ts).
    const user = await findUserByEmail(db, accountKey);
    const verdict = user?.password_hash && user.disabled_at === null ? await verifyPassword(body.password, user.password_hash) : null;
    if (!user || !verdict?.ok) {
      audit(c, 'auth.sign_in.failure', { email: accountKey, ip, outcome: 'invalid_credentials' });
      await waitUntilAnswer(answerAt);
      throw invalidCredentials();
    }
    await attempts.clear();
    if (verdict.needsRehash) await rehashPassword(db, user.id, await hashPassword(body.password));

    const { auth } = c.get('config');
    // The session lives in the user's object (src/user-db/): D1 was read once above, for the user,
    // and nothing else central was touched.
    const session = await c.env.USER_DB.getByName(user.id).createSession({
      refreshTtlMs: auth.refreshTtlSeconds * 1000,
      userAgent: c.req.header('user-agent') ?? null,
    });
    audit(c, 'auth.sign_in.success', { actorId: user.id, email: accountKey, ip, provider: 'basic-auth' });
    return deliverTokens(c, user.id, session.sessionId, user.token_version, session.refreshToken);
  })

  .post('/register', async (c) => {
    await enforceLimit(c.env.RL_AUTH, `register:${clientIp(c)}`);
    const body = await jsonBody(c, registerSchema, AUTH_BODY);
    const { auth } = c.get('config');
    if (auth.registration === 'closed') throw forbidden(await withSetupHint(c, 'Registration is closed'), 'registration_closed');
    if (body.password !== body.confirmPassword) throw badRequest('Passwords do not match', 'password_mismatch');
    const problem = passwordProblem(body.password);
    if (problem) throw badRequest(problem, 'weak_password');

    const db = c.env.DB;
    const inviteHash = body.inviteToken ? await sha256Hex(body.inviteToken) : null;
    if (auth.registration === 'invite' && !inviteHash) throw forbidden(await withSetupHint(c, 'Registration requires an invite'), 'invite_required');
    if (inviteHash) {
      // An early answer before the slow hash; the claim in createInvitedUser checks again.
      if (!(await inviteIsClaimable(db, inviteHash))) throw forbidden('The invite is invalid, used or expired', 'invalid_invite');
    }

    // Hash even when the email turns out to be taken, so both answers take as long.
    const passwordHash = await hashPassword(body.password);
    const input = { email: body.email, displayName: body.displayName ?? null, passwordHash };
    let userId: string | null | undefined;
    if (inviteHash) {
      const invited = await createInvitedUser(db, { ...input, inviteHash });
      // Lost a race for the invite (or its workspace went away) since the check above.
      if (invited.result === 'invalid_invite') throw forbidden('The invite is invalid, used or expired', 'invalid_invite');
      userId = invited.userId;
      if (userId) await adoptAcceptedInvite(c.env, inviteHash, userId);
    } else {
      userId = await createPasswordUser(db, input);
    }
    // An existing email gets the same answer as a new one: registration must not reveal accounts.
    if (userId) {
      audit(c, 'auth.register', { actorId: userId, email: normalizeEmail(body.email), invited: inviteHash !== null });
      emitDeploymentEvent(c, 'admin.user.created', { user_id: userId, invited: inviteHash !== null });
    }
    return c.json({ ok: true });
  })

  .post('/refresh', async (c) => {
    const silent = c.req.query('silent') === '1';
    const body = await jsonBody(c, refreshSchema, { ...AUTH_BODY, allowEmpty: true });
    const token = body.refreshToken ?? getCookie(c, REFRESH_COOKIE);
    // Silent mode answers 200 { ok: false } (OR3's probe); otherwise the usual 401 envelope.
    const fail = () => {
      if (!wantsBearer(c)) clearAuthCookies(c);
      if (silent) return c.json({ ok: false });
      throw unauthorized('Session expired; sign in again');
    };
    if (!token) return fail();
    const result = await rotate(c, token);
    if (!result) return fail();
    return deliverTokens(c, result.userId, result.sessionId, result.tokenVersion, result.refreshToken);
  })

  .post('/sign-out', async (c) => {
    const body = await jsonBody(c, refreshSchema, { ...AUTH_BODY, allowEmpty: true });
    // Ended in the user's object, which closes the session's sockets: no D1 query (one read for
    // a refresh token issued before sessions moved there). A token whose signature verifies is
    // enough to end its own session; nothing else is needed to sign out.
    const credential = await verifyCredential(c);
    const refresh = body.refreshToken ?? getCookie(c, REFRESH_COOKIE);
    let ended: { userId: string } | null = null;
    if (credential?.kind === 'session') {
      await c.env.USER_DB.getByName(credential.userId).signOut({ sessionId: credential.sessionId });
      ended = { userId: credential.userId };
    } else if (refresh) {
      const parsed = parseRefreshToken(refresh);
      const owner = parsed ? (parsed.userId ?? (await legacyTokenOwner(c.env.DB, parsed.id))) : null;
      if (parsed && owner) {
        const sessionId = await c.env.USER_DB.getByName(owner).signOut({ tokenId: parsed.id, secret: parsed.secret, legacy: !parsed.userId });
        if (sessionId) ended = { userId: owner };
      }
    }
    clearAuthCookies(c);
    if (ended) audit(c, 'auth.sign_out', { actorId: ended.userId });
    return c.json({ ok: true });
  })

  .post('/change-password', async (c) => {
    const principal = await requireUser(c);
    const body = await jsonBody(c, changePasswordSchema, AUTH_BODY);
    await enforceLimit(c.env.RL_AUTH, `change-password:${principal.userId}`);
    const db = c.env.DB;
    const user = await findUserById(db, principal.userId);
    if (!user?.password_hash || !principal.sessionId) throw badRequest('This account signs in through an identity provider; it has no password', 'no_password');
    if (body.newPassword !== body.confirmNewPassword) throw badRequest('Passwords do not match', 'password_mismatch');
    const problem = passwordProblem(body.newPassword);
    if (problem) throw badRequest(problem, 'weak_password');
    // Its own counter: failed sign-ins for this email (anyone's) must not block the owner here.
    const attempts = c.env.LOGIN_ATTEMPTS.getByName(attemptKey.changePassword(user.id));
    const attempt = await attempts.count();
    if (!attempt.allowed) throw rateLimited(attempt.retryAfterMs / 1000);
    if (!(await verifyPassword(body.currentPassword, user.password_hash)).ok) {
      throw badRequest('Current password is incorrect', 'invalid_current_password');
    }
    await attempts.clear();
    const version = await changePassword(db, user.id, user.password_hash, await hashPassword(body.newPassword));
    if (version === null) throw conflict('The password was changed by another request; sign in again', 'password_changed');
    // The user's object takes the new token version, ends the other sessions and closes every
    // socket of the user (4001), this session's too: they were opened with the old token version,
    // so they could no longer sync; the SDK re-dials with its new credential.
    await c.env.USER_DB.getByName(user.id).reloadFacts({ endSessions: { except: principal.sessionId } });
    audit(c, 'auth.password.changed', { actorId: user.id });
    // The token version moved on; this session continues with a fresh access token.
    return deliverTokens(c, user.id, principal.sessionId, version, null);
  });

/** The OR3 SessionContext for a principal, provisioning user → default workspace → active workspace. */
async function sessionContext(c: Context<AppEnv>, principal: Principal) {
  // The membership from the user's own list of workspaces (src/user-db/workspaces.ts): no D1 query.
  const user = c.env.USER_DB.getByName(principal.userId);
  const membershipIn = async (workspaceId: string | null) => {
    const found = workspaceId ? await user.membershipOf(workspaceId) : null;
    return found && workspaceId ? { workspaceId, ...found } : null;
  };
  let membership = await membershipIn(principal.activeWorkspaceId);
  if (!membership) {
    // First sight, or the active workspace went away: D1 provisions or repoints (a rare path).
    const created = await provisionDefaultWorkspace(c.env.DB, principal.userId);
    if (created) await adoptMember(c.env, created.id, principal.userId, 'owner', created.createdAt);
    membership = await membershipIn((await user.reloadProfile()).activeWorkspaceId);
  }
  return {
    authenticated: true,
    provider: principal.provider,
    providerUserId: principal.providerUserId,
    user: {
      id: principal.userId,
      ...(principal.email ? { email: principal.email } : {}),
      ...(principal.displayName ? { displayName: principal.displayName } : {}),
    },
    ...(membership ? { workspace: { id: membership.workspaceId, name: membership.name }, role: membership.role } : {}),
    expiresAt: new Date(principal.expiresAt).toISOString(),
    deploymentAdmin: principal.isAdmin,
  };
}

/**
 * Newer OR3 clients read two more fields beside `session` (docs/api.md "Session"): whether the
 * caller may use the app (any signed-in user here; access is decided per workspace) and the
 * workspace-item capability this server speaks.
 */
export const session = new Hono<AppEnv>().get('/session', async (c) => {
  const principal = await authenticate(c);
  const server = { workspaceItemCapability: CAPABILITY_V1 };
  if (!principal) return c.json({ session: null, appAccessAllowed: false, ...server });
  return c.json({ session: await sessionContext(c, principal), appAccessAllowed: true, ...server });
});
