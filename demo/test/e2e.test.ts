/**
 * The demo app in a real browser (Debian's Chromium, driven by playwright-core) against the
 * real Worker serving it: two devices of one user stay in step, an offline device catches up,
 * an attachment crosses byte-for-byte, and a viewer can read but not write. Screenshots of each
 * step go to test-results/e2e/.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../client/test/harness';
import { CHROMIUM, haveBrowser, launchChromium, message, pngBytes, register, send, signIn } from './helpers';

const SHOTS = new URL('../../test-results/e2e/', import.meta.url).pathname;
// Without a browser there is nothing to drive: fail in CI (which installs it), skip elsewhere.
if (!haveBrowser && process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}: .ci/run installs Debian's chromium`);
if (!haveBrowser) console.warn(`e2e: skipped, no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);

let server: TestServer;
let browser: Browser;
const cspViolations: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!haveBrowser) return;
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function device(url = server.url): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  await page.goto(url);
  return { context, page };
}

const shot = (page: Page, name: string) => page.screenshot({ path: `${SHOTS}${name}.png` });

describe.skipIf(!haveBrowser)('demo app in Chromium', () => {
  it('keeps two devices in step, online and offline, with attachments and roles', async () => {
    const email = `ada-${crypto.randomUUID().slice(0, 8)}@example.com`;

    // Device A registers and starts a thread; device B signs in as the same user.
    const a = await device();
    const headers = (await a.page.request.get(server.url)).headers();
    expect(headers['content-security-policy']).toContain("default-src 'self'");
    expect(headers['x-content-type-options']).toBe('nosniff');
    await register(a.page, email, 'Ada');
    await a.page.getByTestId('new-thread').fill('Launch plans');
    await a.page.getByTestId('new-thread').press('Enter');
    await a.page.locator('.thread.active', { hasText: 'Launch plans' }).waitFor();
    await send(a.page, 'Hello from A');
    await message(a.page, 'Hello from A').waitFor();
    await shot(a.page, '1-device-a');

    const b = await device();
    await signIn(b.page, email);
    await b.page.getByRole('button', { name: 'Launch plans' }).click();
    await message(b.page, 'Hello from A').waitFor({ timeout: 10_000 });
    await expect.poll(() => b.page.getByTestId('sync-status').textContent(), { timeout: 10_000 }).toContain('idle');

    // Live: a message on A shows up on B without a reload.
    await send(a.page, 'Are you there, B?');
    await message(b.page, 'Are you there, B?').waitFor({ timeout: 10_000 });
    await shot(b.page, '2-device-b-live');

    // B goes offline, writes, and catches up when it is back.
    await b.context.setOffline(true);
    await expect.poll(() => b.page.getByTestId('network').textContent()).toBe('Offline');
    // Offline is offline everywhere in the bar: never "Offline · … · Realtime: live".
    await expect.poll(() => b.page.getByTestId('realtime').textContent()).not.toContain('live');
    expect(await b.page.getByTestId('sync-status').textContent()).toBe('Sync: offline');
    await send(b.page, 'Written on the train');
    await message(b.page, 'Written on the train').waitFor();
    // One message is one pending write (the thread row is not touched by a message).
    await expect.poll(() => b.page.getByTestId('pending').textContent()).toBe('Pending: 1');
    await shot(b.page, '3-device-b-offline');
    // Offline start: the service worker serves the shell, the data comes from IndexedDB.
    await b.page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await b.page.reload();
    await message(b.page, 'Written on the train').waitFor({ timeout: 10_000 });
    await message(b.page, 'Hello from A').waitFor();
    expect(await message(a.page, 'Written on the train').count()).toBe(0);
    await b.context.setOffline(false);
    await message(a.page, 'Written on the train').waitFor({ timeout: 15_000 });
    await expect.poll(() => b.page.getByTestId('pending').textContent(), { timeout: 15_000 }).toBe('Pending: 0');
    // Both devices end with the same thread, and a status bar that agrees with itself.
    const texts = (page: Page) => page.getByTestId('message-text').allTextContents();
    await expect.poll(async () => JSON.stringify(await texts(a.page)), { timeout: 10_000 }).toBe(JSON.stringify(await texts(b.page)));
    expect(await texts(a.page)).toEqual(['Hello from A', 'Are you there, B?', 'Written on the train']);
    await expect.poll(() => b.page.getByTestId('status').textContent(), { timeout: 10_000 }).toMatch(/^Online.*Sync: idle.*Realtime: live/);

    // An image attached on A downloads on B with identical bytes.
    const bytes = pngBytes();
    await a.page.getByTestId('attach-input').setInputFiles({ name: 'chart.png', mimeType: 'image/png', buffer: bytes });
    await a.page.locator('.chip').waitFor();
    await send(a.page, 'The chart');
    await b.page.getByTestId('attachment-image').first().waitFor({ timeout: 20_000 });
    const hash = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const downloaded = await b.page.evaluate(async (h) => {
      const blob = await (window as unknown as { or3demo: { ws: { files: { get(h: string): Promise<Blob> } } } }).or3demo.ws.files.get(h);
      const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
      return `sha256:${[...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
    }, hash);
    expect(downloaded).toBe(hash);
    await shot(b.page, '4-device-b-attachment');

    // The owner invites a second user as a viewer: they read, but cannot write.
    await a.page.getByTestId('invite-role').selectOption('viewer');
    await a.page.getByTestId('create-invite').click();
    await expect.poll(() => a.page.getByTestId('invite-link').inputValue()).toContain('#invite=');
    const link = await a.page.getByTestId('invite-link').inputValue();
    await shot(a.page, '5-owner-invite');

    const c = await device(link);
    await c.page.getByText('You were invited to a workspace').waitFor();
    await register(c.page, `grace-${crypto.randomUUID().slice(0, 8)}@example.com`, 'Grace');
    // The role comes from the server, not from the app's default.
    await expect.poll(() => c.page.getByTestId('workspace-select').textContent(), { timeout: 10_000 }).toContain('(viewer)');
    await c.page.getByRole('button', { name: 'Launch plans' }).click();
    await message(c.page, 'Written on the train').waitFor({ timeout: 10_000 });
    await expect.poll(() => c.page.getByTestId('readonly-note').isVisible()).toBe(true);
    expect(await c.page.getByTestId('send').isDisabled()).toBe(true);
    expect(await c.page.getByTestId('composer-text').isDisabled()).toBe(true);
    // Even a write forced past the UI is refused by the server, and kept visible as refused.
    await c.page.evaluate(() =>
      (window as unknown as { or3demo: { ws: { db: { kv: { put(r: object): Promise<unknown> } } } } }).or3demo.ws.db.kv.put({
        id: 'forced',
        name: 'x',
        created_at: 1,
        updated_at: 1,
        clock: 0,
      }),
    );
    await c.page.locator('.status .error').filter({ hasText: 'Refused: 1' }).waitFor({ timeout: 10_000 });
    await shot(c.page, '6-viewer');
    expect(
      await a.page.evaluate(() =>
        (window as unknown as { or3demo: { ws: { db: { kv: { get(k: string): Promise<unknown> } } } } }).or3demo.ws.db.kv.get('forced'),
      ),
    ).toBeUndefined();
    // The refused write was taken back on the viewer's device too.
    expect(
      await c.page.evaluate(() =>
        (window as unknown as { or3demo: { ws: { db: { kv: { get(k: string): Promise<unknown> } } } } }).or3demo.ws.db.kv.get('forced'),
      ),
    ).toBeUndefined();
    // The app ran under its Content Security Policy without a violation, and threw nothing.
    expect(cspViolations).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

describe.skipIf(!haveBrowser)('presence in the demo', () => {
  it('shows who is online and where, who is typing, and updates the list when someone leaves', async () => {
    // Ada starts a thread and invites Bob as an editor.
    const ada = await device();
    await register(ada.page, `ada-${crypto.randomUUID().slice(0, 8)}@example.com`, 'Ada');
    await ada.page.getByTestId('new-thread').fill('Standup');
    await ada.page.getByTestId('new-thread').press('Enter');
    await ada.page.locator('.thread.active', { hasText: 'Standup' }).waitFor();
    await ada.page.getByTestId('invite-role').selectOption('editor');
    await ada.page.getByTestId('create-invite').click();
    await expect.poll(() => ada.page.getByTestId('invite-link').inputValue()).toContain('#invite=');
    const bob = await device(await ada.page.getByTestId('invite-link').inputValue());
    await register(bob.page, `bob-${crypto.randomUUID().slice(0, 8)}@example.com`, 'Bob');
    await bob.page.getByRole('button', { name: 'Standup' }).click();

    // Each sees the other online, in the thread.
    const row = (page: Page, name: string) => page.getByTestId('member').filter({ hasText: name });
    await expect.poll(() => row(bob.page, 'Ada').getAttribute('data-online'), { timeout: 10_000 }).toBe('true');
    await expect.poll(() => row(bob.page, 'Ada').textContent()).toContain('in Standup');
    await expect.poll(() => row(ada.page, 'Bob').getAttribute('data-online'), { timeout: 10_000 }).toBe('true');
    expect(await bob.page.getByTestId('typing').textContent()).toBe('');

    // Ada types: Bob sees it; she sends: Bob sees the message and the typing line goes.
    await ada.page.getByTestId('composer-text').pressSequentially('Morning, Bob', { delay: 20 });
    await expect.poll(() => bob.page.getByTestId('typing').textContent(), { timeout: 10_000 }).toBe('Ada is typing…');
    expect(await ada.page.getByTestId('typing').textContent()).toBe('');
    await shot(bob.page, '7-typing');
    await ada.page.getByTestId('send').click();
    await message(bob.page, 'Morning, Bob').waitFor({ timeout: 10_000 });
    await expect.poll(() => bob.page.getByTestId('typing').textContent(), { timeout: 5_000 }).toBe('');

    // Ada closes her window: Bob's list shows her offline.
    await ada.context.close();
    await expect.poll(() => row(bob.page, 'Ada').getAttribute('data-online'), { timeout: 10_000 }).toBe('false');
    expect(await row(bob.page, 'Bob').getAttribute('data-online')).toBe('true');
    await shot(bob.page, '8-ada-left');
    expect(cspViolations).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
