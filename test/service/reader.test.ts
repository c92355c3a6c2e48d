/**
 * The canonical chat reader (docs/service-api.md "Reading a thread") and the streaming put
 * ("Streaming a message"), through the real Worker and the workspace's object.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { READER_QUERIES } from '../../src/service/reader';
import { api } from '../helpers';
import { message, op, openSocket, pull, pushOk, syncUser } from '../sync/helpers';
import { createToken, messages, servicePut } from './helpers';

const page = async (token: string, workspaceId: string, threadId: string, after: string | null, limit: number) => {
  const res = await messages(token, workspaceId, threadId, `?limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return res.json<{ messages: any[]; next: string | null }>();
};

describe('thread reader', () => {
  it('pages live messages in (index, order_key, id) order, across inserts made between pages', async () => {
    const u = await syncUser();
    const { token } = await createToken(u, u.workspaceId, { scopes: ['read'] });
    const m = (id: string, index: number, orderKey: string, extra: Record<string, unknown> = {}) =>
      op('messages', id, message(id, { thread_id: 'T', index, order_key: orderKey, ...extra }));
    await pushOk(u, u.workspaceId, [
      m('e', 3, 'a'),
      m('b', 1, 'b'),
      m('a', 1, 'a'),
      m('c2', 2, 'a'),
      m('c1', 2, 'a'),
      m('gone', 2, 'b', { deleted: true }), // soft-deleted
      m('dead', 2, 'c'),
      op('messages', 'elsewhere', message('elsewhere', { thread_id: 'U', index: 0 })),
    ]);
    await pushOk(u, u.workspaceId, [op('messages', 'dead', undefined, { operation: 'delete', clock: 2 })]); // tombstoned
    const first = await page(token, u.workspaceId, 'T', null, 2);
    expect(first.messages.map((x) => x.id)).toEqual(['a', 'b']);
    expect(first.next).toEqual(expect.any(String));
    // Inserted after the first page: one before the cursor (never shown), two after it.
    await pushOk(u, u.workspaceId, [m('early', 0, 'z'), m('c0', 2, 'a'), m('f', 4, 'a')]);
    const second = await page(token, u.workspaceId, 'T', first.next, 2);
    expect(second.messages.map((x) => x.id)).toEqual(['c0', 'c1']);
    const third = await page(token, u.workspaceId, 'T', second.next, 2);
    expect(third.messages.map((x) => x.id)).toEqual(['c2', 'e']);
    const last = await page(token, u.workspaceId, 'T', third.next, 2);
    expect(last.messages.map((x) => x.id)).toEqual(['f']);
    expect(last.next).toBeNull();
    // The whole thread in one page, and the payloads as stored.
    const all = await page(token, u.workspaceId, 'T', null, 100);
    expect(all.messages.map((x) => x.id)).toEqual(['early', 'a', 'b', 'c0', 'c1', 'c2', 'e', 'f']);
    expect(all.messages[1]).toMatchObject({ id: 'a', thread_id: 'T', role: 'user', index: 1, order_key: 'a' });
    // Bad input.
    for (const q of ['?after=nonsense', '?limit=0', '?limit=501', '?limit=x', '?other=1']) {
      expect((await messages(token, u.workspaceId, 'T', q)).status, q).toBe(400);
    }
  });

  it('reads from the index: the plan searches rows_thread_messages_idx, never scans', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'x', message('x', { thread_id: 'P' }))]);
    const plans = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      [
        [READER_QUERIES.first, 'P', 10],
        [READER_QUERIES.after, 'P', 10, 0, '', ''],
      ].map(([q, ...args]) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${q}`, ...args)
          .toArray()
          .map((r) => r.detail)
          .join(' | '),
      ),
    );
    for (const plan of plans) {
      expect(plan).toMatch(/SEARCH rows USING INDEX rows_thread_messages_idx/);
      expect(plan).not.toMatch(/SCAN|TEMP B-TREE/);
    }
  });
});

describe('streaming put', () => {
  it('200 puts of one row reach a second device as the final text, with a bounded number of pokes', async () => {
    const u = await syncUser();
    const { token } = await createToken(u, u.workspaceId);
    const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
    await socket.next((m) => m.type === 'hello');
    let text = '';
    const started = Date.now();
    for (let i = 0; i < 200; i++) {
      text += `tok${i} `;
      const res = await servicePut(token, u.workspaceId, 'messages', 'answer', {
        payload: message('answer', { thread_id: 'S', role: 'assistant', data: text }),
        ...(i === 199 ? { final: true } : {}),
      });
      expect(res.status).toBe(200);
    }
    const elapsed = Date.now() - started;
    const final = text;
    // The device applies what its pokes carry; the last one holds the final text.
    const lastPoke = await socket.next(
      (m) => m.type === 'poke' && m.changes?.some((c: any) => c.pk === 'answer' && c.payload.data === final),
      'the final text',
    );
    expect(lastPoke.changes.filter((c: any) => c.pk === 'answer')).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 400));
    const pokes = socket.messages.filter((m) => m.type === 'poke');
    // At most one poke per 250 ms of streaming, plus the first and the final one.
    expect(pokes.length).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 2);
    expect(pokes.length).toBeLessThan(200);
    // A device that pulls gets the row once, at its final text.
    const pulled = await pull(u, u.workspaceId, 0);
    expect(pulled.changes.filter((c) => c.pk === 'answer').map((c) => c.payload.data)).toEqual([final]);
    socket.ws.close();
  }, 60_000);
});
