/**
 * The row types catch a misspelled column at compile time (`npm run typecheck` checks this file:
 * an unused `@ts-expect-error` is itself an error, so this fails the type-check if a catch-all
 * column type comes back). The runtime part only keeps vitest honest about the file.
 */
import { expect, it } from 'vitest';
import type { MessageRow, ThreadRow } from '../src/index';

it('a misspelled column does not compile; the listed optional ones do', () => {
  const thread: ThreadRow = { id: 't1', status: 'ready', pinned: false, deleted: false, created_at: 1, updated_at: 1, title: 'Plans' };
  // @ts-expect-error `titel` is not a column of ThreadRow
  const typo: ThreadRow = { id: 't2', status: 'ready', pinned: 0, deleted: 0, created_at: 1, updated_at: 1, titel: 'Plans' };
  // @ts-expect-error `thread` is not `thread_id`
  const message: MessageRow = { id: 'm1', thread: 't1', role: 'user', index: 0, order_key: 'a0', deleted: false, created_at: 1, updated_at: 1 };
  expect([thread.title, typo.id, message.id]).toEqual(['Plans', 't2', 'm1']);
});
