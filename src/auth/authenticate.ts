/**
 * Who is calling: resolves the request's credentials into a `Principal`, once per request.
 *
 * Order: `Authorization: Bearer` (our access JWT, or an external OIDC JWT chosen by its
 * issuer), then `Cf-Access-Jwt-Assertion`, then the `or3_access` cookie. On the routes that
 * resolve a principal, our access tokens are checked on every request: the session must be live
 * in the user's object (src/user-db/) and the user's token version must equal the token's `ver`,
 * so sign-out, password change and reuse detection take effect at once rather than at token
 * expiry; the user's facts, profile (and membership) come in the same call, with no D1 query. A
 * federated token asks the identity's object (src/identity-db/), which asks the user's. The sync
 * and storage routes do not resolve one: they take `verifyCredential`'s stateless answer to the
 * workspace's object, which checks the same facts from its cache (docs/architecture.md
 * "Authorization at the shard").
 */
import type { Context } from 'hono';
import { getCookie } from 'hono/cookie';
import type { AppEnv } from '../env';
import { unauthorized } from '../errors';
import { ACCESS_ISSUER, signingKeys, verifyAccessToken } from './tokens';
import { ACCESS_COOKIE, REFRESH_COOKIE, clearAuthCookies, setAuthCookies } from './cookies';
import { issueAccessToken, rotate } from './refresh';
import { providerForIssuer, unverifiedIssuer, verifyFederatedToken } from './oidc';
import { identityObject, identityOf } from '../identity-db/link';
import type { Membership } from '../workspace-records/store';
import type { Role } from '../workspace-records/permissions';
import type { TokenCredential as Credential } from '../workspace-contract';

export const BASIC_PROVIDER = 'basic-auth';

export interface Principal {
  userId: string;
  provider: string;
  providerUserId: string;
  email: string | null;
  displayName: string | null;
  isAdmin: boolean;
  activeWorkspaceId: string | null;
  /** Our session id (basic auth only). */
  sessionId: string | null;
  /** When the credential that authenticated this request expires (ms). */
  expiresAt: number;
}

const principals = new WeakMap<Request, Promise<Principal | null>>();

/** A membership read together with the session from the user's object (`principal`), per request. */
const memberships = new WeakMap<Request, { workspaceId: string; membership: Membership | null }>();

/** Keeps the membership the user's object answered with the principal, for `prefetchedMembership`. */
function rememberMembership(c: Context<AppEnv>, workspaceId: string | undefined, found: { name: string; role: Role } | null | undefined) {
  if (workspaceId === undefined) return;
  memberships.set(c.req.raw, { workspaceId, membership: found ? { workspaceId, name: found.name, role: found.role } : null });
}

/**
 * The caller's membership of `workspaceId` if authentication already read it with the user's
 * facts; undefined when it did not (another workspace), and the caller reads it itself.
 */
export function prefetchedMembership(c: Context<AppEnv>, workspaceId: string): Membership | null | undefined {
  const found = memberships.get(c.req.raw);
  return found && found.workspaceId === workspaceId ? found.membership : undefined;
}
function bearerToken(c: Context<AppEnv>): string | null {
  const header = c.req.header('authorization');
  if (!header) return null;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * The caller, or null. Memoised per request. `workspaceId`: the workspace the request is about,
 * whose membership is then read along with the session when that saves a round trip.
 */
export function authenticate(c: Context<AppEnv>, workspaceId?: string): Promise<Principal | null> {
  let result = principals.get(c.req.raw);
  if (!result) {
    result = resolve(c, workspaceId);
    principals.set(c.req.raw, result);
  }
  return result;
}

/** The caller; 401 when there is none. */
export async function requireUser(c: Context<AppEnv>, workspaceId?: string): Promise<Principal> {
  const principal = await authenticate(c, workspaceId);
  if (!principal) throw unauthorized();
  return principal;
}

const credentials = new WeakMap<Request, Promise<Credential | null>>();

/**
 * Who the request claims to be, verified without D1 (signature, expiry, issuer and claim rules):
 * what the workspace's object authorizes at the shard (src/workspace-db/access.ts). Memoised per
 * request. The one D1 step is the transparent refresh of an expired access cookie.
 */
export function verifyCredential(c: Context<AppEnv>): Promise<Credential | null> {
  let result = credentials.get(c.req.raw);
  if (!result) {
    result = readCredential(c);
    credentials.set(c.req.raw, result);
  }
  return result;
}

async function readCredential(c: Context<AppEnv>): Promise<Credential | null> {
  const bearer = bearerToken(c) ?? c.req.header('cf-access-jwt-assertion');
  if (bearer) return credentialOf(c, bearer, true);
  const cookie = getCookie(c, ACCESS_COOKIE);
  const fromCookie = cookie ? await credentialOf(c, cookie, false) : null;
  return fromCookie ?? transparentRefresh(c);
}

async function credentialOf(c: Context<AppEnv>, token: string, allowFederated: boolean): Promise<Credential | null> {
  const { auth } = c.get('config');
  const issuer = unverifiedIssuer(token);
  if (issuer === ACCESS_ISSUER) {
    const claims = await verifyAccessToken(await signingKeys(auth.jwtSecret, auth.jwtSecretPrevious), token, auth.accessTtlSeconds);
    return claims ? { kind: 'session', userId: claims.sub, sessionId: claims.sid, tokenVersion: claims.ver, expiresAt: claims.exp * 1000 } : null;
  }
  if (!allowFederated) return null;
  const provider = providerForIssuer(auth.oidcProviders, issuer);
  const identity = provider ? await verifyFederatedToken(provider, token, auth.oidcMaxTokenAgeSeconds) : null;
  if (!identity) return null;
  const { subject, expiresAt } = identity;
  return {
    kind: 'federated',
    provider: identity.provider,
    issuer: identity.issuer,
    subject,
    email: identity.email ?? null,
    displayName: identity.displayName ?? null,
    expiresAt,
  };
}

/** The principal of a verified credential, checked in the user's object (the routes that are not on the hot path). */
async function resolve(c: Context<AppEnv>, workspaceId: string | undefined): Promise<Principal | null> {
  const credential = await verifyCredential(c);
  if (!credential) return null;
  return credential.kind === 'session' ? fromSession(c, credential, workspaceId) : fromIdentity(c, credential, workspaceId);
}

/**
 * A browser whose access cookie is missing or expired but whose refresh cookie is valid is
 * served as that user (docs/auth.md "Transparent refresh"; OR3's own provider does this, and without
 * it an OR3 app reloads itself when the access token expires): the refresh token rotates with
 * the /refresh route's rules and grace window, and both new cookies are set on this response.
 * A refresh cookie that does not rotate counts as no credentials and is cleared. The basic-auth
 * routes handle their cookies themselves (refresh, sign-out) and are left out, and so are
 * WebSocket upgrades: a 101 answer cannot carry the new cookies, and a rotation whose cookies
 * never reach the browser would later look like refresh-token reuse.
 */
async function transparentRefresh(c: Context<AppEnv>): Promise<Credential | null> {
  const refresh = getCookie(c, REFRESH_COOKIE);
  if (!refresh || c.req.path.startsWith('/api/basic-auth/') || c.req.header('upgrade')?.toLowerCase() === 'websocket') return null;
  const rotated = await rotate(c, refresh);
  // Materialises the context's response first: Hono then copies its Set-Cookie headers into
  // whatever the route returns, a raw Response (an export stream) or an error included.
  void c.res;
  if (!rotated) {
    clearAuthCookies(c);
    return null;
  }
  const { token } = await issueAccessToken(c, rotated);
  setAuthCookies(c, token, rotated.refreshToken);
  return credentialOf(c, token, false);
}

async function fromIdentity(
  c: Context<AppEnv>,
  credential: Extract<Credential, { kind: 'federated' }>,
  workspaceId: string | undefined,
): Promise<Principal | null> {
  const identity = identityOf(credential);
  // One call to the identity's object, which knows the identity's user (read from D1 once per
  // identity ever) and asks the user's object as `fromSession` does: no D1 query once known.
  const found = await (await identityObject(c.env, identity)).principal({ identity, autoProvision: c.get('config').auth.autoProvision, workspaceId });
  if (!found || found.disabled) return null;
  rememberMembership(c, workspaceId, found.membership);
  return {
    userId: found.userId,
    provider: credential.provider,
    providerUserId: credential.subject,
    // The IdP's email is the identity's (never the user's: an identity is not linked by email).
    email: found.identityEmail ?? credential.email ?? null,
    displayName: found.profile.displayName ?? credential.displayName ?? null,
    isAdmin: found.isAdmin,
    activeWorkspaceId: found.profile.activeWorkspaceId,
    sessionId: null,
    expiresAt: credential.expiresAt,
  };
}

async function fromSession(c: Context<AppEnv>, claims: Extract<Credential, { kind: 'session' }>, workspaceId: string | undefined): Promise<Principal | null> {
  // One call to the user's object: the session, the facts, the profile and (asked about a
  // workspace) the membership from the user's list, which the workspaces' objects keep. No D1.
  const found = await c.env.USER_DB.getByName(claims.userId).principal({ sessionId: claims.sessionId, workspaceId });
  if (!found.present || found.liveUntil <= Date.now()) return null;
  if (found.disabled || found.tokenVersion !== claims.tokenVersion) return null;
  rememberMembership(c, workspaceId, found.membership);
  return {
    userId: claims.userId,
    provider: BASIC_PROVIDER,
    providerUserId: claims.userId,
    email: found.profile.email,
    displayName: found.profile.displayName,
    isAdmin: found.isAdmin,
    activeWorkspaceId: found.profile.activeWorkspaceId,
    sessionId: claims.sessionId,
    expiresAt: claims.expiresAt,
  };
}
