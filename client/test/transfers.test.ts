/** Attachments between two devices through the real Worker and R2: resumable multipart upload, verified download, progress. */
import { describe, expect, it } from 'vitest';
import { hashBlob } from '../src/hash';
import { Or3Error, type Or3Workspace, type TransferProgress } from '../src/index';
import { device, engineOf, internalsOf, PASSWORD, serverPerFile, uniqueEmail, until } from './harness';

const ctx = serverPerFile();
const open = ctx.open;

const MiB = 1024 * 1024;
const transfers = { multipartThresholdBytes: 6 * MiB, partSizeBytes: 5 * MiB };

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65_536) crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65_536)));
  return bytes;
}

async function twoDevices() {
  const email = uniqueEmail();
  const a = device(ctx.server, { transfers });
  const b = device(ctx.server, { transfers });
  await a.client.basicAuth.register({ email, password: PASSWORD });
  await b.client.basicAuth.signIn(email, PASSWORD);
  const wsA = await a.client.openWorkspace();
  const wsB = await b.client.openWorkspace();
  open.push(wsA, wsB);
  return { a, b, wsA, wsB };
}

const isMonotonic = (events: TransferProgress[]) => events.every((e, i) => i === 0 || e.bytesDone >= events[i - 1]!.bytesDone);

describe('transfers', () => {
  it('an upload interrupted mid-way resumes with the missing parts, and B downloads identical bytes', async () => {
    const { a, b, wsA, wsB } = await twoDevices();
    const bytes = randomBytes(12 * MiB + 12_345);
    const blob = new Blob([bytes as BlobPart], { type: 'application/pdf' });
    // The second part's first PUT dies on the network.
    let failed = false;
    a.faults = ({ method, path }) => (method === 'PUT' && path.endsWith('/parts/2') && !failed ? ((failed = true), 'drop-before') : null);
    const progressA: TransferProgress[] = [];
    wsA.on('transfer', (e) => e.direction === 'upload' && progressA.push(e));
    const { hash, transferId } = await wsA.upload(blob, { name: 'report.pdf' });
    expect(hash).toBe(await hashBlob(blob));
    await engineOf(wsA).files.waitFor(transferId);
    expect(failed).toBe(true);
    const partPuts = a.calls.filter((c) => c.startsWith('PUT ') && c.includes('/parts/'));
    expect(partPuts.filter((c) => c.endsWith('/parts/1'))).toHaveLength(1); // not sent again
    expect(partPuts.filter((c) => c.endsWith('/parts/2'))).toHaveLength(2);
    expect(partPuts.filter((c) => c.endsWith('/parts/3'))).toHaveLength(1);
    expect(a.calls).toContain('POST /api/storage/multipart/urls'); // resumed, not restarted
    expect(isMonotonic(progressA)).toBe(true);
    expect(progressA.at(-1)).toMatchObject({ state: 'done', bytesDone: blob.size, bytesTotal: blob.size });
    expect(progressA.some((e) => e.state === 'queued' && e.error)).toBe(true);

    // B learns about the file through sync (file_meta, with its storage id) and downloads it.
    await wsA.syncNow();
    await until(async () => (await wsB.db.file_meta.get(hash))?.storage_id, 10_000, 'B to get the file_meta row');
    const progressB: TransferProgress[] = [];
    wsB.on('transfer', (e) => e.direction === 'download' && progressB.push(e));
    const downloaded = await wsB.files.get(hash);
    // Byte-for-byte (Buffer.equals: vitest's deep equality is far too slow for 12 MiB).
    expect(Buffer.from(await downloaded.arrayBuffer()).equals(Buffer.from(bytes))).toBe(true);
    expect(isMonotonic(progressB)).toBe(true);
    expect(progressB.at(-1)).toMatchObject({ state: 'done', bytesDone: blob.size });
    // Cached: a second read does not touch the network.
    const before = b.calls.length;
    await wsB.files.get(hash);
    expect(b.calls.length).toBe(before);
    // The same large file uploaded again (here from B) sends no parts: the server already has it.
    const again = await wsB.upload(new Blob([bytes as BlobPart], { type: 'application/pdf' }), { name: 'copy.pdf' });
    await engineOf(wsB).files.waitFor(again.transferId);
    expect(b.calls.filter((c) => c.startsWith('PUT '))).toEqual([]);
    expect(b.calls).toContain('POST /api/storage/commit');
  });

  it('small files go up in one PUT; the same bytes again are not uploaded twice', async () => {
    const { a, wsA } = await twoDevices();
    const blob = new Blob([randomBytes(70_000) as BlobPart], { type: 'image/png' });
    const first = await wsA.upload(blob, { name: 'a.png' });
    await engineOf(wsA).files.waitFor(first.transferId);
    const second = await wsA.upload(blob, { name: 'again.png' });
    await engineOf(wsA).files.waitFor(second.transferId);
    expect(second.hash).toBe(first.hash);
    expect(a.calls.filter((c) => c.startsWith('PUT /api/storage/blob/'))).toHaveLength(1);
    expect(a.calls.filter((c) => c === 'POST /api/storage/commit')).toHaveLength(2);
    const usage = await internalsOf(a.client).http.json<{ used_bytes: number; blob_count: number }>('GET', `/api/storage/usage?workspace_id=${wsA.id}`);
    expect(usage).toMatchObject({ used_bytes: 70_000, blob_count: 1 });
  });

  it('a retry still runs when the wall clock steps back during its backoff', async () => {
    // The backoff deadline is wall-clock time (it survives reloads) but timers run on a monotonic
    // clock, so a timer can fire while Date.now() is still short of the deadline: here because
    // the clock stepped back 300 ms; in Node also because fractional delays are truncated and
    // measured from the event loop's cached time. The queue must look again, not wait forever.
    const a = device(ctx.server, { transfers: { backoff: { baseMs: 1000, maxMs: 1000 } } }); // retry after 500–1000 ms
    await a.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    const wsA = await a.client.openWorkspace();
    open.push(wsA);
    const realNow = Date.now;
    let failed = false;
    a.faults = ({ method, path }) => {
      if (method !== 'PUT' || !path.startsWith('/api/storage/blob/') || failed) return null;
      failed = true;
      // Step back once the retry is scheduled.
      setTimeout(() => (Date.now = () => realNow() - 300), 100);
      return 'drop-before';
    };
    try {
      const { transferId } = await wsA.upload(new Blob([randomBytes(1000) as BlobPart], { type: 'image/png' }), { name: 'skew.png' });
      await Promise.race([
        engineOf(wsA).files.waitFor(transferId),
        new Promise((_, reject) => setTimeout(() => reject(new Error('the retry never ran')), 10_000)),
      ]);
      expect(failed).toBe(true);
      expect(a.calls.filter((c) => c.startsWith('PUT /api/storage/blob/'))).toHaveLength(2);
    } finally {
      Date.now = realNow;
    }
  });

  it('rejects a file over the size limit before any network, and fails for good on a refused type', async () => {
    const d = device(ctx.server, { transfers: { ...transfers, maxFileSizeBytes: 1000 } });
    await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    const ws = await d.client.openWorkspace();
    open.push(ws);
    const before = d.calls.length;
    const err = await ws.upload(new Blob([new Uint8Array(1001)]), { name: 'big.png', mimeType: 'image/png' }).catch((e) => e);
    expect(err).toBeInstanceOf(Or3Error);
    expect(err).toMatchObject({ status: 413, code: 'file_too_large' });
    expect(d.calls.length).toBe(before);
    const { transferId } = await ws.upload(new Blob([new Uint8Array(10)]), { name: 'x.exe', mimeType: 'application/x-msdownload' });
    const failure = await engineOf(ws)
      .files.waitFor(transferId)
      .catch((e) => e);
    expect(failure).toBeInstanceOf(Or3Error);
    expect((await engineOf(ws).db.file_transfers.get(transferId))?.state).toBe('failed');
  });
});
