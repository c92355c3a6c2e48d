/**
 * The webhook Queue under plain `wrangler dev` (no test harness, no setup: the local Queue comes
 * from wrangler.toml alone), delivering to a real Node receiver. Also where "redirects are not
 * followed" is checked: wrangler's test harness sends a Worker's outbound requests through Node's
 * fetch, which loses `redirect: 'manual'`; `wrangler dev` runs them in workerd itself, as
 * production does.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { TestServer } from '../../../client/test/harness';
import { startWranglerDev, type WranglerDev } from '../../test-support/wrangler-dev';
import { startReceiver, type Receiver } from '../receiver';
import { api, createHook, deliveries, newUser, op, push, sleep, thread } from './helpers';

let dev: WranglerDev;
let server: TestServer;
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver();
  dev = await startWranglerDev(['OR3_WEBHOOK_ALLOW_LOOPBACK:true']);
  server = { url: dev.url, env: null, close: async () => undefined };
}, 120_000);

afterAll(async () => {
  await dev?.stop();
  await receiver?.close();
});

it('delivers through the local Queue of plain wrangler dev', async () => {
  const user = await newUser(server);
  const hook = await createHook(server, user, `${receiver.url}/dev`);
  receiver.secrets.push(hook.secret);
  await push(server, user, [op('threads', 'w1', thread('w1'))]);
  const [got] = await receiver.waitFor(
    () => receiver.received.filter((r) => r.path === '/dev').length > 0 && receiver.received.filter((r) => r.path === '/dev'),
  );
  expect(got!.json).toMatchObject({ event: 'thread.created', key: 'w1' });
  expect(got!.verifiedWith).toBeGreaterThanOrEqual(0);
  expect(got!.or3Verified).toBe(true);
});

it('does not follow redirects', async () => {
  const user = await newUser(server);
  const hook = await createHook(server, user, `${receiver.url}/moved`);
  receiver.respond = (path) => (path === '/moved' ? { redirect: `${receiver.url}/elsewhere` } : 200);
  expect((await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}/test`, user.token, {})).status).toBe(200);
  await receiver.waitFor(() => receiver.received.some((r) => r.path === '/moved'));
  let list: any[] = [];
  for (let i = 0; i < 100 && !list[0]?.lastResponseCode; i++) ((list = await deliveries(server, user, hook.webhook.id)), await sleep(100));
  expect(list[0]).toMatchObject({ lastResponseCode: 302, lastError: 'Redirects are not followed' });
  expect(receiver.received.filter((r) => r.path === '/elsewhere')).toHaveLength(0);
});
