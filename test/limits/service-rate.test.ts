/**
 * A service token's rate limit (docs/service-api.md), counted per token by the workspace's object
 * with OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE from its own configuration: 3 in this project
 * (vitest.config.ts `worker-limits`).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { call, signedInUser, type SignedIn } from '../auth/helpers';
import { syncUser } from '../sync/helpers';
import { bearer, createToken } from '../service/helpers';

let admin: SignedIn;
beforeAll(async () => {
  admin = await signedInUser({ isAdmin: true });
});

describe('service token rate limit (3 a minute here)', () => {
  it('each token has its own rate limit (429 with Retry-After), and every use is audited', async () => {
    const u = await syncUser();
    const [a, b] = [await createToken(u, u.workspaceId), await createToken(u, u.workspaceId)];
    // 3 a minute: this project's OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE, which the workspace's object reads itself.
    const get = (token: string) => call('GET', `/api/service/workspaces/${u.workspaceId}/threads/t/messages`, bearer(token));
    for (let i = 0; i < 3; i++) expect((await get(a.token)).status).toBe(200);
    const limited = await get(a.token);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await get(b.token)).status).toBe(200);

    for (let i = 0; i < 50; i++) {
      const res = await call('GET', `/api/admin/audit`, admin.headers);
      const events = ((await res.json()) as any).events as any[];
      const uses = events.filter((e) => e.event === 'service.token.used' && e.tokenId === a.serviceToken.id);
      if (uses.length >= 3) {
        expect(uses[0]).toMatchObject({ workspaceId: u.workspaceId, tokenName: a.serviceToken.name, route: 'GET messages' });
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('service.token.used never reached the audit log');
  });
});
