/** The SDK against a Worker with a small sync storage quota: a refused batch is a permanent error for that batch. */
import { describe, expect, it } from 'vitest';
import { device, messageRow, PASSWORD, serverPerFile, uniqueEmail } from './harness';

const ctx = serverPerFile({ OR3_SYNC_WORKSPACE_QUOTA_BYTES: '6000' });

describe('sync storage quota', () => {
  it('refuses the whole batch once, with a clear message, takes it back locally, and still accepts deletes', async () => {
    const d = device(ctx.server);
    await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    const ws = await d.client.openWorkspace();
    ctx.open.push(ws);
    await ws.db.messages.put(messageRow('kept', { data: 'k'.repeat(1_000) }));
    await ws.syncNow();
    expect(ws.status.pending).toBe(0);

    const rejected: { pk: string; code: string; message: string }[] = [];
    ws.on('rejected', ({ op, error }) => rejected.push({ pk: op.pk, code: error.code, message: error.message }));
    d.online = false;
    for (const id of ['big1', 'big2', 'big3']) await ws.db.messages.put(messageRow(id, { data: 'x'.repeat(1_000) }));
    d.online = true;
    const pushesBefore = d.calls.filter((c) => c === 'POST /api/sync/push').length;
    await ws.syncNow();
    // One request for the batch: not split op by op, since every op of it is over the quota.
    expect(d.calls.filter((c) => c === 'POST /api/sync/push').length - pushesBefore).toBe(1);
    expect(rejected.map((r) => r.pk).sort()).toEqual(['big1', 'big2', 'big3']);
    expect(new Set(rejected.map((r) => r.code))).toEqual(new Set(['quota_exceeded']));
    expect(rejected[0]!.message).toMatch(/at its quota \(\d+ of 6000 bytes/);
    // Taken back locally, kept in the outbox as failed for the app to show.
    expect(await ws.db.messages.get('big1')).toBeUndefined();
    expect((await ws.failedOps()).map((o) => o.pk).sort()).toEqual(['big1', 'big2', 'big3']);

    // Deletes are always accepted.
    await ws.discardFailedOps();
    await ws.db.messages.delete('kept');
    await ws.syncNow();
    expect(ws.status).toMatchObject({ pending: 0, failed: 0 });
  });
});
