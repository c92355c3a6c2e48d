/**
 * What an identity's object remembers (object.ts): the user the identity belongs to and the
 * IdP's email from the identity's first sight (D1 `identities.email`, never changed after). Which
 * user an identity belongs to never changes: only deleting the account removes the identity, and
 * then the user's object answers "absent", which makes the identity's object look again.
 */
import { sha256Hex } from '../crypto';
import type { Bindings } from '../env';
import type { Credential } from '../workspace-contract';
import type { FederatedIdentity } from './store';

export interface IdentityLink {
  provider: string;
  issuer: string;
  subject: string;
  userId: string;
  identityEmail: string | null;
}

/**
 * The object's name: a hash of the identity (provider, issuer and subject may be long or hold
 * any character; a name should not). One object per identity: the load spreads with the users.
 */
export async function identityObjectName(identity: FederatedIdentity): Promise<string> {
  return `identity:${await sha256Hex(`${identity.provider}\u0000${identity.issuer}\u0000${identity.subject}`)}`;
}

/** The identity a verified federated credential names (the Worker's and the workspace object's view alike). */
export function identityOf(credential: Extract<Credential, { kind: 'federated' }>): FederatedIdentity {
  const { provider, issuer, subject, email, displayName } = credential;
  return { provider, issuer, subject, email, displayName };
}

/** The identity's object. */
export async function identityObject(env: Bindings, identity: FederatedIdentity) {
  return env.IDENTITY.getByName(await identityObjectName(identity));
}

/** Whether a stored link is this identity's (a name is a hash: this rules out any mix-up). */
export function linkIs(link: IdentityLink, identity: FederatedIdentity): boolean {
  return link.provider === identity.provider && link.issuer === identity.issuer && link.subject === identity.subject;
}
