/** Service-token plumbing for tests: create a token as the owner, call with it. */
import { call } from '../auth/helpers';

export async function createToken(owner: { headers: Record<string, string> }, workspaceId: string, body: Record<string, unknown> = {}) {
  const res = await call('POST', `/api/workspaces/${workspaceId}/service-tokens`, owner.headers, {
    name: `bot-${crypto.randomUUID().slice(0, 8)}`,
    scopes: ['read', 'write'],
    expiresInSeconds: 3600,
    ...body,
  });
  if (res.status !== 200) throw new Error(`token ${res.status} ${await res.text()}`);
  return res.json<{ token: string; serviceToken: { id: string; name: string; scopes: string[]; expiresAt: number } }>();
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

export const servicePut = (token: string, workspaceId: string, table: string, pk: string, body: Record<string, unknown>) =>
  call('PUT', `/api/service/workspaces/${workspaceId}/rows/${table}/${encodeURIComponent(pk)}`, bearer(token), body);

export const messages = (token: string, workspaceId: string, threadId: string, query = '') =>
  call('GET', `/api/service/workspaces/${workspaceId}/threads/${threadId}/messages${query}`, bearer(token));
