/**
 * Webhooks end to end (docs/webhooks.md): the real Worker started by wrangler's test harness with
 * its real local Queue, delivering to a real Node HTTP receiver (../receiver.ts) that checks
 * both signatures. Development config with OR3_WEBHOOK_ALLOW_LOOPBACK (so http://127.0.0.1 is a
 * valid target) and a fast retry schedule (the documented test knob, 1 s instead of 30 s → 1 h).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../../client/test/harness';
import { startReceiver, type Receiver } from '../receiver';
import { startEchoBot, type EchoBotOptions } from '../echo-bot';
import { api, createHook, deliveries, message, newUser, op, push, sleep, thread, type User } from './helpers';

let server: TestServer;
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver();
  server = await startServer({
    OR3_WEBHOOK_ALLOW_LOOPBACK: 'true',
    OR3_WEBHOOK_RETRY_DELAYS_SECONDS: '1,1,1',
    OR3_WEBHOOK_DISABLE_AFTER_SECONDS: '2',
  });
});
afterAll(async () => {
  await server?.close();
  await receiver?.close();
});

/** A hook at its own path of the receiver, with its secret registered there. */
async function hookFor(user: User, path: string, events?: string[]) {
  const created = await createHook(server, user, `${receiver.url}${path}`, events);
  receiver.secrets.push(created.secret);
  return created;
}
const at = (path: string) => receiver.received.filter((r) => r.path === path);

describe('events from applied writes', () => {
  it('delivers each applied write once, signed both ways, with table, key, version, payload and actor', async () => {
    const user = await newUser(server);
    const hook = await hookFor(user, '/applied');
    const t = op('threads', 't1', thread('t1'));
    const m = op('messages', 'm1', message('m1', { thread_id: 't1', data: 'hi there' }));
    const res = await push(server, user, [t, m]);
    expect(res.status).toBe(200);
    await receiver.waitFor(() => at('/applied').length >= 2);
    await sleep(1500); // nothing more arrives
    const got = at('/applied');
    expect(got.map((r) => r.json.event).sort()).toEqual(['message.created', 'thread.created']);
    for (const r of got) {
      expect(r.verifiedWith).toBeGreaterThanOrEqual(0);
      expect(receiver.secrets[r.verifiedWith]).toBe(hook.secret);
      expect(r.or3Verified).toBe(true);
      expect(r.headers['webhook-id']).toBe(r.json.event_id);
      expect(r.headers['x-or3-event-id']).toBe(r.json.event_id);
      expect(r.headers['x-or3-event']).toBe(r.json.event);
      expect(r.json.workspace_id).toBe(user.workspaceId);
      expect(r.json.user_id).toBe(user.userId);
      expect(r.json.actor).toMatchObject({ type: 'user', id: user.userId, device_id: 'device-a' });
    }
    const msg = got.find((r) => r.json.event === 'message.created')!;
    expect(msg.json).toMatchObject({ table: 'messages', key: 'm1', op: 'put', server_version: res.json.results[1].serverVersion });
    expect(msg.json.data).toMatchObject({ id: 'm1', thread_id: 't1', data: 'hi there' });

    // An update, then a deletion.
    await push(server, user, [op('messages', 'm1', message('m1', { thread_id: 't1', data: 'edited' }), { clock: 2 })]);
    await push(server, user, [op('messages', 'm1', undefined, { operation: 'delete', clock: 3 })]);
    const more = await receiver.waitFor((all) => {
      const list = all.filter((r) => r.path === '/applied').slice(2);
      return list.length >= 2 && list;
    });
    expect(more.map((r) => r.json.event)).toEqual(['message.updated', 'message.deleted']);
    expect(more[1]!.json.data).toEqual({ id: 'm1', deleted: true });
  });

  it('a losing write, a replay and a refused batch emit nothing', async () => {
    const user = await newUser(server);
    await hookFor(user, '/quiet');
    const winner = op('threads', 'q1', thread('q1', { title: 'win' }), { clock: 5 });
    await push(server, user, [winner]);
    await receiver.waitFor(() => at('/quiet').length >= 1);
    // Loser: a lower clock. Replay: the same op again. Refused: a batch with an invalid payload.
    expect((await push(server, user, [op('threads', 'q1', thread('q1', { title: 'lose' }), { clock: 1 })])).status).toBe(200);
    expect((await push(server, user, [winner])).status).toBe(200);
    expect((await push(server, user, [op('threads', 'q2', thread('q2')), op('messages', 'bad', { id: 'bad' })])).status).toBe(400);
    // A marker write afterwards: once it arrives, anything the three above raised would have too.
    await push(server, user, [op('threads', 'marker', thread('marker'))]);
    await receiver.waitFor(() => at('/quiet').some((r) => r.json.key === 'marker'));
    await sleep(1000);
    expect(at('/quiet').map((r) => r.json.key)).toEqual(['q1', 'marker']);
  });

  it('an event filter picks the events', async () => {
    const user = await newUser(server);
    await hookFor(user, '/threads-only', ['thread.*']);
    await push(server, user, [op('messages', 'f1', message('f1', { thread_id: 'x' })), op('threads', 'f2', thread('f2'))]);
    await receiver.waitFor(() => at('/threads-only').length >= 1);
    await sleep(1000);
    expect(at('/threads-only').map((r) => r.json.event)).toEqual(['thread.created']);
  });
});

describe('delivery in bulk', () => {
  it('a batch is delivered at most 6 attempts at a time (the outgoing connections a Worker holds), each timed from its own start', async () => {
    const user = await newUser(server);
    await hookFor(user, '/bulk');
    receiver.holdMs = 400;
    receiver.maxInFlight = 0;
    try {
      const ops = Array.from({ length: 20 }, (_, i) => op('messages', `b${i}`, message(`b${i}`, { thread_id: 'bulk' })));
      expect((await push(server, user, ops)).status).toBe(200);
      await receiver.waitFor(() => at('/bulk').length >= 20);
      expect(receiver.maxInFlight).toBeGreaterThan(1);
      expect(receiver.maxInFlight).toBeLessThanOrEqual(6);
      expect(new Set(at('/bulk').map((r) => r.json.key)).size).toBe(20);
    } finally {
      receiver.holdMs = 0;
    }
  });
});

describe('service writes', () => {
  it('a service push names the token as the actor; a stream raises one event, at its final put, with the final text', async () => {
    const user = await newUser(server);
    await hookFor(user, '/service', ['message.*']);
    const created = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/service-tokens`, user.token, {
      name: 'writer',
      scopes: ['write'],
      expiresInSeconds: 600,
    });
    const token = created.json.token as string;
    const pushed = await api(server, 'POST', '/api/sync/push', token, {
      scope: { workspaceId: user.workspaceId },
      ops: [{ tableName: 'messages', operation: 'put', pk: 's1', payload: message('s1', { thread_id: 't', data: 'hi' }) }],
    });
    expect(pushed.status).toBe(200);
    let text = '';
    for (let i = 0; i < 5; i++) {
      text += `part${i} `;
      const body = { payload: message('s2', { thread_id: 't', role: 'assistant', data: text }), ...(i === 4 ? { final: true } : {}) };
      expect((await api(server, 'PUT', `/api/service/workspaces/${user.workspaceId}/rows/messages/s2`, token, body)).status).toBe(200);
    }
    await receiver.waitFor(() => at('/service').length >= 2);
    await sleep(1500);
    const got = at('/service');
    expect(got.map((r) => [r.json.key, r.json.event])).toEqual([
      ['s1', 'message.created'],
      ['s2', 'message.updated'],
    ]);
    expect(got[0]!.json).toMatchObject({ user_id: null, actor: { type: 'service', id: 'service:writer', device_id: 'service:writer' } });
    expect(got[1]!.json.data.data).toBe(text);
  });
});

describe('retries, failures, redelivery', () => {
  it('500 then 200: delivered on the retry with the same event id', async () => {
    const user = await newUser(server);
    const hook = await hookFor(user, '/flaky');
    receiver.respond = (path, n) => (path === '/flaky' && n === 1 ? 500 : 200);
    await push(server, user, [op('threads', 'r1', thread('r1'))]);
    const [first, second] = await receiver.waitFor(() => at('/flaky').length >= 2 && at('/flaky'));
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(second!.body).toBe(first!.body);
    let list: any[] = [];
    for (let i = 0; i < 50 && list[0]?.status !== 'success'; i++) ((list = await deliveries(server, user, hook.webhook.id)), await sleep(100));
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ eventId: first!.headers['webhook-id'], event: 'thread.created', status: 'success', attempts: 2, lastResponseCode: 200 });
  });

  it('always 500: retried on schedule, dead-lettered, logged failed; the endpoint is disabled with the reason', async () => {
    const user = await newUser(server);
    const hook = await hookFor(user, '/down');
    receiver.respond = (path) => (path === '/down' ? 500 : 200);
    await push(server, user, [op('threads', 'd1', thread('d1'))]);
    // 1 attempt + 3 retries (OR3_WEBHOOK_RETRY_DELAYS_SECONDS=1,1,1), all with one event id.
    await receiver.waitFor(() => at('/down').length >= 4, 40_000);
    let list: any[] = [];
    for (let i = 0; i < 100 && list[0]?.status !== 'failed'; i++) ((list = await deliveries(server, user, hook.webhook.id)), await sleep(100));
    expect(list[0]).toMatchObject({ status: 'failed', attempts: 4, lastResponseCode: 500 });
    expect(new Set(at('/down').map((r) => r.headers['webhook-id'])).size).toBe(1);
    await sleep(3000);
    expect(at('/down')).toHaveLength(4); // nothing after the last retry
    // Failing for longer than OR3_WEBHOOK_DISABLE_AFTER_SECONDS (2 s here, a day by default).
    const shown = await api(server, 'GET', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}`, user.token);
    expect(shown.json.webhook.enabled).toBe(false);
    expect(shown.json.webhook.disabledReason).toMatch(/HTTP 500/);
  });

  it('redeliver sends the same event again', async () => {
    const user = await newUser(server);
    const hook = await hookFor(user, '/again');
    await push(server, user, [op('threads', 'a1', thread('a1'))]);
    await receiver.waitFor(() => at('/again').length >= 1);
    let list: any[] = [];
    for (let i = 0; i < 50 && list[0]?.status !== 'success'; i++) ((list = await deliveries(server, user, hook.webhook.id)), await sleep(100));
    const res = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}/deliveries/${list[0].id}/redeliver`, user.token, {});
    expect(res.status).toBe(200);
    const [first, second] = await receiver.waitFor(() => at('/again').length >= 2 && at('/again'));
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(second!.verifiedWith).toBeGreaterThanOrEqual(0);
    const missing = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}/deliveries/nope/redeliver`, user.token, {});
    expect(missing.status).toBe(404);
  });

  it('a rotated secret verifies; the previous one is still honoured during the grace period', async () => {
    const user = await newUser(server);
    const hook = await hookFor(user, '/rotated');
    const rotated = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}/rotate`, user.token, {});
    expect(rotated.status).toBe(200);
    expect(rotated.json.secret).not.toBe(hook.secret);
    const test = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/webhooks/${hook.webhook.id}/test`, user.token, {});
    expect(test.status).toBe(200);
    const [got] = await receiver.waitFor(() => at('/rotated').length >= 1 && at('/rotated'));
    expect(got!.json.event).toBe('webhook.ping');
    const entries = got!.headers['webhook-signature']!.split(' ');
    expect(entries).toHaveLength(2); // new secret and the still-honoured old one
    const { verifyOr3, verifyStandard } = await import('../receiver');
    expect(verifyStandard(rotated.json.secret, got!.headers, got!.body)).toBe(true);
    expect(verifyOr3(rotated.json.secret, got!.headers, got!.body)).toBe(true);
    expect(verifyStandard(hook.secret, got!.headers, got!.body)).toBe(true);
    expect(verifyStandard('whsec_' + Buffer.from('x'.repeat(32)).toString('base64'), got!.headers, got!.body)).toBe(false);
  });
});

describe('the /echo bot (tools/webhooks/echo-bot.ts)', () => {
  it('answers "/echo …" in the same thread as a service, right after the message; other messages and its own answers get none', async () => {
    const user = await newUser(server);
    const created = await api(server, 'POST', `/api/workspaces/${user.workspaceId}/service-tokens`, user.token, {
      name: 'echo',
      scopes: ['read', 'write'],
      expiresInSeconds: 600,
    });
    expect(created.status).toBe(200);
    const options: EchoBotOptions = { base: server.url.replace(/\/$/, ''), workspaceId: user.workspaceId, token: created.json.token, secret: '' };
    const bot = await startEchoBot(options);
    try {
      options.secret = (await createHook(server, user, bot.url, ['message.created'])).secret;
      const pushed = await push(server, user, [
        op('threads', 'te', thread('te')),
        op('messages', 'ask', message('ask', { thread_id: 'te', index: 3, order_key: 'a3', data: '/echo hello there' })),
        op('messages', 'chat', message('chat', { thread_id: 'te', index: 4, order_key: 'a4', data: 'just chatting' })),
      ]);
      expect(pushed.status).toBe(200);
      const read = async () =>
        (await api(server, 'GET', `/api/service/workspaces/${user.workspaceId}/threads/te/messages`, created.json.token)).json.messages as any[];
      const until = Date.now() + 30_000;
      while (bot.answered.length === 0 && Date.now() < until) await sleep(100);
      await sleep(2500); // its own answer's event (and anything else) has had time to arrive
      expect(bot.answered).toHaveLength(1);
      const messages = await read();
      expect(messages.map((m) => [m.id, m.role, m.data])).toEqual([
        ['ask', 'user', '/echo hello there'],
        [bot.answered[0], 'assistant', 'hello there'],
        ['chat', 'user', 'just chatting'],
      ]);
      // A delivery that does not verify is refused.
      const forged = await fetch(bot.url, { method: 'POST', body: JSON.stringify({ event: 'message.created' }) });
      expect(forged.status).toBe(401);
    } finally {
      await bot.close();
    }
  });
});
