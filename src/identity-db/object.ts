/**
 * IdentityDO: one Durable Object per federated identity (named by its hash, link.ts), which
 * remembers the user the identity belongs to — read from D1 (or provisioned there) once per
 * identity ever — and answers for that user from the user's object (src/user-db/). So a
 * federated token's request costs the Worker one call and no D1 query once the identity is known
 * (docs/architecture.md "Capacity model"). Deleting the account removes the identity and empties
 * the user's object, which then answers "absent": this object looks in D1 again, as on a first
 * sight, so the deleted user's token stops working at once. An identity D1 has no user for (auto-
 * provisioning off) is answered "none" from memory for OR3_AUTH_CACHE_TTL_SECONDS, so a token the
 * IdP signed for someone never provisioned does not cost D1 a query per request either. The RPC
 * surface only; the D1 reads are in store.ts.
 */
import { DurableObject } from 'cloudflare:workers';
import { loadConfig } from '../config';
import { devD1 } from '../dev/d1-delay';
import type { Bindings } from '../env';
import type { SessionFacts, SessionPrincipal } from '../user-db/object';
import { linkIs, type IdentityLink } from './link';
import { identityUser, type FederatedIdentity } from './store';

/** The one stored entry (the SQLite-backed object's synchronous key-value storage). */
const LINK = 'link';

export interface IdentityRequest {
  identity: FederatedIdentity;
  /** OR3_AUTH_AUTO_PROVISION: whether a first sight creates the user. */
  autoProvision: boolean;
}

/** The user's principal (user-db `principal`) with who they are and the IdP's email. */
export type IdentityPrincipal = SessionPrincipal & { userId: string; identityEmail: string | null };

/** The user's facts (user-db `check`) with who they are. */
export type IdentityFacts = SessionFacts & { userId: string };

export class IdentityDO extends DurableObject<Bindings> {
  #resolving: Promise<IdentityLink | null> | undefined;
  /**
   * Until when D1 is not asked again about an identity it has no user for, unless the request may
   * provision one. Only an operator's D1 edit or an import links such an identity later, which
   * OR3_AUTH_CACHE_TTL_SECONDS bounds as it bounds every cached authorization fact.
   */
  #noUserUntil = 0;

  /**
   * The routes that resolve a principal (src/auth/authenticate.ts): the user's facts, profile and,
   * asked about a workspace, their membership there. Null: the identity has no user (auto-
   * provisioning is off), or its user is gone.
   */
  principal(input: IdentityRequest & { workspaceId?: string }): Promise<IdentityPrincipal | null> {
    return this.#forUser(input, async (link) => {
      const found = await this.env.USER_DB.getByName(link.userId).principal({ workspaceId: input.workspaceId });
      return found.present ? { ...found, userId: link.userId, identityEmail: link.identityEmail } : null;
    });
  }

  /**
   * A workspace object's cache fill (src/workspace-db/access.ts): the user's facts, which the
   * user's object answers while recording that workspace, so later changes reach its cache.
   */
  check(input: IdentityRequest & { workspaceId: string }): Promise<IdentityFacts | null> {
    return this.#forUser(input, async (link) => {
      const facts = await this.env.USER_DB.getByName(link.userId).check({ workspaceId: input.workspaceId });
      return facts.present ? { ...facts, userId: link.userId } : null;
    });
  }

  /** Asks about the remembered user; when there is none, or it was deleted, about the one D1 names now. */
  async #forUser<T>(input: IdentityRequest, ask: (link: IdentityLink) => Promise<T | null>): Promise<T | null> {
    const stored = this.ctx.storage.kv.get<IdentityLink>(LINK);
    if (stored && !linkIs(stored, input.identity)) throw new Error('IdentityDO addressed with another identity');
    if (stored) {
      const answer = await ask(stored);
      if (answer) return answer;
    } else if (!input.autoProvision && Date.now() < this.#noUserUntil) {
      return null;
    }
    this.#resolving ??= this.#resolve(input, stored?.userId).finally(() => (this.#resolving = undefined));
    const link = await this.#resolving;
    return link ? ask(link) : null;
  }

  /** Reads (or provisions) the identity's user in D1 and remembers it; `gone`: the user just found absent. */
  async #resolve(input: IdentityRequest, gone: string | undefined): Promise<IdentityLink | null> {
    const row = await identityUser(devD1(this.env), input.identity, input.autoProvision);
    if (row && row.id === gone) return null; // D1 still names the absent user: nothing to learn
    if (!row) {
      await this.ctx.storage.deleteAll(); // no user: nothing worth keeping
      const config = loadConfig(this.env);
      this.#noUserUntil = config.ok ? Date.now() + config.config.auth.cacheTtlMs : 0; // unreadable config: ask D1 each time
      return null;
    }
    const { provider, issuer, subject } = input.identity;
    const link: IdentityLink = { provider, issuer, subject, userId: row.id, identityEmail: row.identity_email };
    this.ctx.storage.kv.put(LINK, link);
    return link;
  }
}
