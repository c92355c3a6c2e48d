/**
 * `/api/setup`: the path to the first deployment admin, open whatever the registration mode while
 * the deployment has no admin, so a fresh deployment can never lock everyone out (docs/auth.md
 * "First admin"). In production it takes the token of a one-time setup link (printed by
 * `npm run deploy` or `npm run setup-link`); in development, where every secret is public anyway,
 * it needs none.
 */
import { Hono } from 'hono';
import * as z from 'zod';
import { audit } from '../audit/emit';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, conflict, forbidden } from '../errors';
import { clientIp, enforceLimit } from '../http/rate-limit';
import { hashPassword, passwordProblem } from '../auth/passwords';
import { anyAdminExists, normalizeEmail } from '../auth/store';
import { sha256Hex } from '../crypto';
import { createFirstAdmin } from './store';

const setupSchema = z.strictObject({
  token: z.string().min(1).max(200).optional(),
  email: z.email().max(320),
  password: z.string().max(1024),
  confirmPassword: z.string().max(1024),
  displayName: z.string().trim().min(1).max(100).optional(),
});

export const setup = new Hono<AppEnv>()
  .get('/', async (c) => {
    const { production } = c.get('config');
    return c.json({ needed: !(await anyAdminExists(c.env.DB)), tokenRequired: production });
  })

  .post('/admin', async (c) => {
    await enforceLimit(c.env.RL_AUTH, `setup:${clientIp(c)}`);
    const body = await jsonBody(c, setupSchema, { maxBytes: 16 * 1024 });
    const { production } = c.get('config');
    if (production && !body.token) throw forbidden('A setup link is required: run `npm run setup-link` and open the link it prints', 'setup_token_required');
    if (body.password !== body.confirmPassword) throw badRequest('Passwords do not match', 'password_mismatch');
    const problem = passwordProblem(body.password);
    if (problem) throw badRequest(problem, 'weak_password');

    const tokenHash = production && body.token ? await sha256Hex(body.token) : null;
    const passwordHash = await hashPassword(body.password);
    const result = await createFirstAdmin(c.env.DB, { email: body.email, displayName: body.displayName ?? null, passwordHash, tokenHash });
    if (!result.ok) {
      if (result.reason === 'setup_complete') throw conflict('Setup is complete: this deployment already has an admin', 'setup_complete');
      if (result.reason === 'invalid_setup_token')
        throw forbidden('This setup link is invalid or was used; run `npm run setup-link` for a new one', 'invalid_setup_token');
      throw new ApiError(409, 'email_taken', 'That email already has an account; choose another address for the admin');
    }
    audit(c, 'auth.setup_admin.created', { actorId: result.userId, email: normalizeEmail(body.email), ip: clientIp(c) });
    return c.json({ ok: true, userId: result.userId }, 201);
  });
