/**
 * A workspace's service tokens, inside its Durable Object (docs/service-api.md). The object is
 * the authority: tokens are read from SQLite once and kept in memory, and a revocation changes
 * both at once, so the very next request with the token (a stream's next put included) is
 * refused. Each token has its own rate limit, counted here on the object's one thread.
 */
import type { Failure } from '../errors';
import { timingSafeEqual } from '../crypto';
import { FixedWindowLimiter } from '../limiter';
import type { ServiceCredential } from './token';

export type Scope = 'read' | 'write';
/** Tokens per workspace (live and revoked rows alike are pruned as names are reused). */
export const MAX_TOKENS = 50;

type TokenRow = {
  id: string;
  name: string;
  token_hash: string;
  scopes: string;
  created_by: string;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
};

export interface TokenView {
  id: string;
  name: string;
  scopes: Scope[];
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  lastUsedAt: number | null;
}

/** Who a service request is, once its token is accepted. */
export interface ServiceAccess {
  tokenId: string;
  name: string;
  /** The actor written to the change log and events, and the device id of its writes. */
  actor: string;
}

const viewOf = (t: TokenRow): TokenView => ({
  id: t.id,
  name: t.name,
  scopes: JSON.parse(t.scopes) as Scope[],
  createdBy: t.created_by,
  createdAt: t.created_at,
  expiresAt: t.expires_at,
  lastUsedAt: t.last_used_at,
});

const unauthorized: Failure = { ok: false, status: 401, code: 'unauthorized', message: 'The service token is invalid, revoked or expired' };
/** last_used_at is written at most this often per token (a streaming writer would otherwise write it on every put). */
const LAST_USED_RESOLUTION_MS = 60_000;

export class ServiceTokens {
  #tokens: Map<string, TokenRow> | null = null;
  readonly #limiter = new FixedWindowLimiter();

  constructor(private readonly sql: SqlStorage) {}

  #all(): Map<string, TokenRow> {
    this.#tokens ??= new Map(
      this.sql
        .exec<TokenRow>('SELECT * FROM service_tokens')
        .toArray()
        .map((t) => [t.id, t]),
    );
    return this.#tokens;
  }

  /** Live tokens (neither revoked nor expired), oldest first. */
  list(now: number): TokenView[] {
    return [...this.#all().values()].filter((t) => t.revoked_at === null && t.expires_at > now).map(viewOf);
  }

  create(
    input: { tokenId: string; secretHash: string; name: string; scopes: Scope[]; expiresAt: number; createdBy: string },
    now: number,
  ): TokenView | Failure {
    const same = [...this.#all().values()].find((t) => t.name === input.name);
    if (same && same.revoked_at === null && same.expires_at > now) {
      return { ok: false, status: 409, code: 'token_name_taken', message: `A live service token is already named ${input.name}` };
    }
    if (!same && this.list(now).length >= MAX_TOKENS)
      return { ok: false, status: 409, code: 'too_many_tokens', message: `At most ${MAX_TOKENS} service tokens per workspace` };
    // A revoked or expired token's name may be used again: its row goes.
    if (same) this.sql.exec('DELETE FROM service_tokens WHERE id = ?', same.id);
    this.sql.exec(
      'INSERT INTO service_tokens (id, name, token_hash, scopes, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      input.tokenId,
      input.name,
      input.secretHash,
      JSON.stringify(input.scopes),
      input.createdBy,
      now,
      input.expiresAt,
    );
    this.#tokens = null;
    return viewOf(this.#all().get(input.tokenId)!);
  }

  revoke(tokenId: string, now: number): boolean {
    const token = this.#all().get(tokenId);
    if (!token || token.revoked_at !== null) return false;
    this.sql.exec('UPDATE service_tokens SET revoked_at = ? WHERE id = ?', now, tokenId);
    token.revoked_at = now;
    return true;
  }

  /** Revokes every live token `userId` created (their account was disabled or deleted); how many. */
  revokeCreatedBy(userId: string, now: number): number {
    const live = [...this.#all().values()].filter((t) => t.created_by === userId && t.revoked_at === null);
    for (const token of live) this.revoke(token.id, now);
    return live.length;
  }

  /** The token's access for `scope`, or 401 (unknown, wrong secret, revoked, expired), 403 (scope), 429 (its rate limit). */
  authorize(credential: ServiceCredential, scope: Scope, perMinute: number, now: number): ServiceAccess | Failure {
    const token = this.#valid(credential, scope, now);
    if ('ok' in token) return token;
    const limited = this.#limiter.refuseKey(`svc:${token.id}`, perMinute, now);
    if (limited) return limited;
    if (token.last_used_at === null || now - token.last_used_at >= LAST_USED_RESOLUTION_MS) {
      this.sql.exec('UPDATE service_tokens SET last_used_at = ? WHERE id = ?', now, token.id);
      token.last_used_at = now;
    }
    return { tokenId: token.id, name: token.name, actor: `service:${token.name}` };
  }

  /** Whether the token still holds for `scope` (a second look after an await), without counting a request. */
  stillValid(credential: ServiceCredential, scope: Scope, now: number): Failure | null {
    const token = this.#valid(credential, scope, now);
    return 'ok' in token ? token : null;
  }

  #valid(credential: ServiceCredential, scope: Scope, now: number): TokenRow | Failure {
    const token = this.#all().get(credential.tokenId);
    if (!token || !timingSafeEqual(token.token_hash, credential.secretHash) || token.revoked_at !== null || token.expires_at <= now) return unauthorized;
    if (!(JSON.parse(token.scopes) as Scope[]).includes(scope)) {
      return { ok: false, status: 403, code: 'insufficient_scope', message: `This service token does not have the ${scope} scope` };
    }
    return token;
  }
}
