/**
 * `kill -9` of the dev server between the authority's write and its copies (docs/architecture.md
 * "Members live with their workspace"): a member's removal is written to the workspace's object,
 * then the server dies before D1's copy and the member's object hear of it (the window held open
 * by the development-only `OR3_DEV_MEMBER_COPY_PAUSE_MS`); a session is signed out just before.
 * After a restart on the same local state, the removed member and the revoked session are
 * refused, and the copies follow the authority once the workspace's object runs again.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { startWranglerDev, type WranglerDev } from '../../test-support/wrangler-dev';

let dev: WranglerDev | undefined;

/** Starts `wrangler dev` (its URL); the one running before is the test's to stop. */
async function startDev(vars: string[] = []): Promise<string> {
  dev = await startWranglerDev(vars);
  return dev.url;
}

const killDev = async (signal: NodeJS.Signals) => dev?.stop(signal);

afterAll(() => killDev('SIGINT'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let ip = 1;

async function call(base: string, method: string, path: string, token?: string, body?: unknown) {
  return fetch(`${base}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      'x-or3-token-transport': 'bearer',
      'cf-connecting-ip': `198.51.100.${ip++ % 250}`,
      origin: base,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function account(base: string) {
  const email = `crash-${randomUUID().slice(0, 8)}@example.com`;
  const password = 'correct horse battery staple';
  expect((await call(base, 'POST', '/api/basic-auth/register', undefined, { email, password, confirmPassword: password })).status).toBe(200);
  const signIn = () => call(base, 'POST', '/api/basic-auth/sign-in', undefined, { email, password }).then((r) => r.json() as Promise<any>);
  const first = await signIn();
  const { session } = (await (await call(base, 'GET', '/api/auth/session', first.accessToken)).json()) as any;
  return { id: session.user.id as string, workspaceId: session.workspace.id as string, token: first.accessToken as string, signIn };
}

it('kill -9 between the authority write and the copies: after restart both places agree and nothing revoked works', async () => {
  let base = await startDev(['OR3_DEV_MEMBER_COPY_PAUSE_MS:30000']);
  const owner = await account(base);
  const member = await account(base);
  const { inviteToken } = (await (await call(base, 'POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.token, { role: 'editor' })).json()) as any;
  expect((await call(base, 'POST', '/api/workspaces/invites/accept', member.token, { inviteToken })).status).toBe(200);
  const pull = (token: string) => call(base, 'POST', '/api/sync/pull', token, { scope: { workspaceId: owner.workspaceId }, cursor: 0 });
  expect((await pull(member.token)).status).toBe(200);
  const second = await member.signIn();
  expect((await pull(second.accessToken)).status).toBe(200);

  // A session revocation, then a removal held open between the authority's write and its copies.
  expect((await call(base, 'POST', '/api/basic-auth/sign-out', second.accessToken)).status).toBe(200);
  const removal = call(base, 'DELETE', `/api/workspaces/${owner.workspaceId}/members/${member.id}`, owner.token).catch(() => null);
  await sleep(3_000); // the object has written the removal and waits before copying
  await killDev('SIGKILL');
  expect(await removal).toBeNull(); // the answer never came

  base = await startDev();
  // The authority survived: the removed member and the signed-out session are refused.
  expect((await pull(member.token)).status).toBe(403);
  expect((await pull(second.accessToken)).status).toBe(401);
  expect((await pull(owner.token)).status).toBe(200);
  // The object's restart resumed the queued copies: D1's list and the member's own list follow.
  let members: string[] = [];
  for (let i = 0; i < 40; i++) {
    const list = (await (await call(base, 'GET', `/api/workspaces/${owner.workspaceId}/members`, owner.token)).json()) as any;
    members = list.members.map((m: any) => m.userId);
    if (!members.includes(member.id)) break;
    await sleep(250);
  }
  expect(members).toEqual([owner.id]);
  const mine = (await (await call(base, 'GET', '/api/workspaces', member.token)).json()) as any;
  expect(mine.workspaces.map((w: any) => w.id)).toEqual([member.workspaceId]);
}, 240_000);
