/** Plumbing for the webhook tests: a user with a bearer token and their workspace, pushes, hook calls. */
import type { TestServer } from '../../../client/test/harness';

export interface User {
  token: string;
  workspaceId: string;
  userId: string;
}

let n = 0;

export async function api(server: TestServer, method: string, path: string, token?: string, body?: unknown, extra: Record<string, string> = {}) {
  const res = await fetch(`${server.url.replace(/\/$/, '')}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

export async function newUser(server: TestServer): Promise<User> {
  const email = `hooks-${Date.now()}-${++n}@example.com`;
  const password = 'a long enough password';
  // Each user from its own address: the sign-in rate limit counts per address.
  const ip = { 'cf-connecting-ip': `10.9.${n & 255}.${1 + Math.floor(Math.random() * 250)}` };
  const reg = await api(server, 'POST', '/api/basic-auth/register', undefined, { email, password, confirmPassword: password }, ip);
  if (reg.status !== 200) throw new Error(`register ${reg.status} ${JSON.stringify(reg.json)}`);
  const signIn = await api(server, 'POST', '/api/basic-auth/sign-in', undefined, { email, password }, { ...ip, 'x-or3-token-transport': 'bearer' });
  const token = signIn.json.accessToken as string;
  const session = await api(server, 'GET', '/api/auth/session', token);
  return { token, workspaceId: session.json.session.workspace.id, userId: session.json.session.user.id };
}

export { message, op, thread } from '../../../test/fixtures/rows';

export const push = (server: TestServer, user: User, ops: unknown[]) =>
  api(server, 'POST', '/api/sync/push', user.token, { scope: { workspaceId: user.workspaceId }, ops });

export async function createHook(server: TestServer, user: User, url: string, events: string[] = ['*']) {
  const res = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks`, user.token, { url, events });
  if (res.status !== 200) throw new Error(`create hook ${res.status} ${JSON.stringify(res.json)}`);
  return res.json as { webhook: { id: string; url: string }; secret: string };
}

export const deliveries = async (server: TestServer, user: User, hookId: string) =>
  (await api(server, 'GET', `/api/workspaces/${user.workspaceId}/webhooks/${hookId}/deliveries`, user.token)).json.deliveries as any[];

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
