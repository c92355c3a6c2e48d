/**
 * What a new user tripped on in the demo, each checked in Chromium against the real Worker: a
 * refused upload (its reason, a remove button, never sent), a failed attachment on the other
 * device (named, and no endless download), the list following the newest message once images
 * load, presence while offline ("unknown", not "offline"), no role flash after joining, pending
 * counts, the composer without a thread, and the thread's title above the conversation.
 */
import { type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../client/test/harness';
import { haveBrowser, launchChromium, message, pngBytes, register, send, signIn } from './helpers';

let server: TestServer;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!haveBrowser) return;
  server = await startServer();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function device(url = server.url, init?: () => void) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(url);
  return { context, page };
}

type Demo = { or3demo: { ws: { db: Record<string, { put(r: object): Promise<unknown>; get(k: string): Promise<Record<string, unknown> | undefined> }> } } };
const put = (page: Page, table: string, row: object) => page.evaluate(([t, r]) => (window as unknown as Demo).or3demo.ws.db[t]!.put(r), [table, row] as const);
const get = (page: Page, table: string, key: string) => page.evaluate(([t, k]) => (window as unknown as Demo).or3demo.ws.db[t]!.get(k), [table, key] as const);

async function newThread(page: Page, title: string) {
  await page.getByTestId('new-thread').fill(title);
  await page.getByTestId('new-thread').press('Enter');
  await page.locator('.thread.active', { hasText: title }).waitFor();
}

describe.skipIf(!haveBrowser)('the demo on a first day', () => {
  it('composer, title, refused uploads, failed attachments, scrolling and pending counts', async () => {
    const email = `ada-${crypto.randomUUID().slice(0, 8)}@example.com`;
    const a = await device();
    await register(a.page, email, 'Ada');

    // No thread yet: nothing to send to, and the page says so.
    await expect.poll(() => a.page.getByTestId('send').isDisabled()).toBe(true);
    await expect.poll(() => a.page.getByTestId('no-thread-note').isVisible()).toBe(true);
    expect(await a.page.getByTestId('readonly-note').isVisible()).toBe(false);
    expect(await a.page.getByTestId('thread-title').textContent()).toBe('No thread selected');
    await newThread(a.page, 'Launch plans');
    await expect.poll(() => a.page.getByTestId('thread-title').textContent()).toBe('Launch plans');
    expect(await a.page.getByTestId('send').isDisabled()).toBe(false);
    expect(await a.page.getByTestId('no-thread-note').isVisible()).toBe(false);

    // A refused upload shows the server's reason and can be removed...
    const txt = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('plain text is not allowed here') };
    await a.page.getByTestId('attach-input').setInputFiles(txt);
    await expect.poll(() => a.page.getByTestId('staged-reason').textContent(), { timeout: 15_000 }).toMatch(/^Not sent: .*text\/plain/);
    await a.page.getByTestId('staged-remove').click();
    expect(await a.page.getByTestId('staged').count()).toBe(0);
    // ...and is never sent, even when it is still staged at Send.
    await a.page.getByTestId('attach-input').setInputFiles(txt);
    await expect.poll(() => a.page.getByTestId('staged-reason').textContent(), { timeout: 15_000 }).toMatch(/^Not sent/);
    await send(a.page, 'Notes follow');
    await message(a.page, 'Notes follow').waitFor();
    expect(await a.page.locator('.message', { hasText: 'Notes follow' }).getByTestId('attachment').count()).toBe(0);
    const sentId = await a.page.locator('.message', { hasText: 'Notes follow' }).getAttribute('data-id');
    expect((await get(a.page, 'messages', sentId!))?.file_hashes).toBeUndefined();

    // Offline, one message is one pending write (once what came before has been pushed).
    await expect.poll(() => a.page.getByTestId('pending').textContent(), { timeout: 15_000 }).toBe('Pending: 0');
    await a.context.setOffline(true);
    await expect.poll(() => a.page.getByTestId('network').textContent()).toBe('Offline');
    await send(a.page, 'One offline message');
    await expect.poll(() => a.page.getByTestId('pending').textContent()).toBe('Pending: 1');
    await a.context.setOffline(false);
    await expect.poll(() => a.page.getByTestId('pending').textContent(), { timeout: 15_000 }).toBe('Pending: 0');

    // A message whose file never arrived: the other device names it as failed, and stops asking.
    const lost = `sha256:${'0'.repeat(63)}1`;
    const now = Math.floor(Date.now() / 1000);
    await put(a.page, 'file_meta', {
      hash: lost,
      name: 'lost-report.pdf',
      mime_type: 'application/pdf',
      kind: 'pdf',
      size_bytes: 1234,
      deleted: false,
      created_at: now,
      updated_at: now,
      clock: 0,
    });
    const threadId = await a.page.evaluate(() => localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('or3demo:thread:'))!));
    await put(a.page, 'messages', {
      id: 'with-lost-file',
      thread_id: threadId,
      role: 'user',
      index: 100,
      order_key: 'z',
      data: 'See attached',
      file_hashes: JSON.stringify([lost]),
      deleted: false,
      created_at: now,
      updated_at: now,
      clock: 0,
    });
    const b = await device();
    const downloads: string[] = [];
    b.page.on('request', (r) => void (r.url().includes('/api/storage/') && downloads.push(r.url())));
    await signIn(b.page, email);
    await b.page.getByRole('button', { name: 'Launch plans' }).click();
    await message(b.page, 'See attached').waitFor({ timeout: 10_000 });
    await expect.poll(() => b.page.getByTestId('attachment-failed').textContent(), { timeout: 60_000 }).toContain('lost-report.pdf');
    const asked = downloads.length;
    await send(b.page, 'Got it?'); // a redraw of the list must not start the download again
    await message(b.page, 'Got it?').waitFor();
    await b.page.waitForTimeout(3_000);
    expect(downloads.length).toBe(asked);

    // Enough messages to scroll, then a tall image: the list still ends at the newest message once it has loaded.
    for (let i = 0; i < 12; i++) await send(a.page, `Filler ${i}`);
    await a.page.getByTestId('attach-input').setInputFiles({ name: 'tall.png', mimeType: 'image/png', buffer: pngBytes(64, 700) });
    await send(a.page, 'A tall chart');
    for (const page of [a.page, b.page]) {
      await page.locator('.message', { hasText: 'A tall chart' }).getByTestId('attachment-image').waitFor({ timeout: 20_000 });
      await expect
        .poll(() => page.getByTestId('messages').evaluate((box) => box.scrollHeight - box.scrollTop - box.clientHeight), { timeout: 10_000 })
        .toBeLessThan(5);
    }
    expect(pageErrors).toEqual([]);
  });

  it('joining as an editor never shows another role; offline, others are "unknown", not offline', async () => {
    const ada = await device();
    await register(ada.page, `ada-${crypto.randomUUID().slice(0, 8)}@example.com`, 'Ada');
    await newThread(ada.page, 'Standup');
    await ada.page.getByTestId('invite-role').selectOption('editor');
    await ada.page.getByTestId('create-invite').click();
    await expect.poll(() => ada.page.getByTestId('invite-link').inputValue()).toContain('#invite=');

    // Every role the status bar ever shows on the new member's page, from the first paint.
    const bob = await device(await ada.page.getByTestId('invite-link').inputValue(), () => {
      const seen: string[] = ((window as unknown as { roles: string[] }).roles = []);
      new MutationObserver(() => {
        const text = document.querySelector('[data-testid=role]')?.textContent;
        if (text && seen.at(-1) !== text) seen.push(text);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    await register(bob.page, `bob-${crypto.randomUUID().slice(0, 8)}@example.com`, 'Bob');
    await expect.poll(() => bob.page.getByTestId('workspace-select').textContent(), { timeout: 10_000 }).toContain('(editor)');
    await expect.poll(() => bob.page.getByTestId('role').textContent()).toBe('Role: editor');
    const roles = await bob.page.evaluate(() => (window as unknown as { roles: string[] }).roles);
    expect(roles.filter((r) => r !== 'Role: …')).toEqual(['Role: editor']);

    // Online, each sees the other; offline, Ada cannot know, so Bob is "unknown" on her page.
    const row = (page: Page, name: string) => page.getByTestId('member').filter({ hasText: name });
    await expect.poll(() => row(ada.page, 'Bob').getAttribute('data-online'), { timeout: 10_000 }).toBe('true');
    await ada.context.setOffline(true);
    await expect.poll(() => row(ada.page, 'Bob').getAttribute('data-online'), { timeout: 10_000 }).toBe('unknown');
    expect(await row(ada.page, 'Bob').locator('[data-presence]').textContent()).toBe('unknown');
    await ada.context.setOffline(false);
    await expect.poll(() => row(ada.page, 'Bob').getAttribute('data-online'), { timeout: 15_000 }).toBe('true');
    expect(pageErrors).toEqual([]);
  });
});
