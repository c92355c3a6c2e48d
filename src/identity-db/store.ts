/**
 * D1 access for federated identities (the `identities` table, the authority: an identity is
 * globally unique). Read once per identity ever, by the identity's own object (object.ts); never
 * on a frequent path. Plain prepared statements, served by the (provider, issuer, subject)
 * unique index of drizzle/d1.ts.
 */

export interface FederatedIdentity {
  provider: string;
  issuer: string;
  subject: string;
  email?: string | null;
  displayName?: string | null;
}

/** The user an identity belongs to, and the email the IdP gave when the identity was first seen. */
export interface IdentityUserRow {
  id: string;
  identity_email: string | null;
}

const IDENTITY_LOOKUP = `SELECT u.id, i.email AS identity_email
                           FROM identities i JOIN users u ON u.id = i.user_id
                          WHERE i.provider = ? AND i.issuer = ? AND i.subject = ?`;

export async function findIdentityUser(db: D1Database, identity: FederatedIdentity): Promise<IdentityUserRow | null> {
  return db.prepare(IDENTITY_LOOKUP).bind(identity.provider, identity.issuer, identity.subject).first<IdentityUserRow>();
}

/** The user of a federated identity: provisioned on first sight when `autoProvision` (OR3_AUTH_AUTO_PROVISION), else only found. */
export function identityUser(db: D1Database, identity: FederatedIdentity, autoProvision: boolean): Promise<IdentityUserRow | null> {
  return autoProvision ? getOrCreateIdentityUser(db, identity) : findIdentityUser(db, identity);
}

/**
 * Finds or creates the user of a federated identity, race-free: the user insert only happens
 * while the identity does not exist, and the identity insert only when that user row was just
 * made — both inside one batch. The IdP's email is kept on the identity, never on the user, so
 * an identity is never linked to an existing account by email.
 */
export async function getOrCreateIdentityUser(db: D1Database, identity: FederatedIdentity, now = Date.now()): Promise<IdentityUserRow> {
  const existing = await findIdentityUser(db, identity);
  if (existing) return existing;
  const userId = crypto.randomUUID();
  const { provider, issuer, subject } = identity;
  await db.batch([
    db
      .prepare(
        `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, created_at, updated_at)
         SELECT ?, NULL, ?, NULL, 0, 0, ?, ? WHERE NOT EXISTS (SELECT 1 FROM identities WHERE provider = ? AND issuer = ? AND subject = ?)`,
      )
      .bind(userId, identity.displayName ?? null, now, now, provider, issuer, subject),
    db
      .prepare(
        `INSERT INTO identities (id, user_id, provider, issuer, subject, email, created_at, last_seen_at)
         SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)
         ON CONFLICT DO NOTHING`,
      )
      .bind(crypto.randomUUID(), userId, provider, issuer, subject, identity.email ?? null, now, now, userId),
  ]);
  const row = await findIdentityUser(db, identity);
  if (!row) throw new Error('federated identity vanished after creation');
  return row;
}
