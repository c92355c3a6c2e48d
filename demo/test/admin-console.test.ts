/**
 * The admin console (/admin/) in Debian's Chromium against the real Worker: an admin signs in,
 * finds a user, disables them (the user's own browser is signed out), resets a password and the
 * link works, looks at a workspace's usage and at the audit entries of what they did; a
 * non-admin gets the 403 page. Screenshots go to test-results/admin/ (docs/images/ keeps copies).
 */
import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../client/test/harness';
import { CHROMIUM, haveBrowser, launchChromium } from './helpers';

const SHOTS = new URL('../../test-results/admin/', import.meta.url).pathname;
const PASSWORD = 'correct horse battery staple';
if (!haveBrowser && process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}`);

let server: TestServer;
let browser: Browser;
const problems: string[] = [];

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

async function register(email: string) {
  const res = await fetch(new URL('/api/basic-auth/register', server.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD, confirmPassword: PASSWORD }),
  });
  expect(res.status).toBe(200);
}

/** A browser context signed in with cookies, as the user's own browser would be. */
async function browserOf(email: string | null, width = 1280): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) problems.push(msg.text());
  });
  if (email) {
    const res = await page.request.post(new URL('/api/basic-auth/sign-in', server.url).toString(), { data: { email, password: PASSWORD } });
    expect(res.status()).toBe(200);
  }
  return { context, page };
}

const sessionOf = async (page: Page) => (await (await page.request.get(new URL('/api/auth/session', server.url).toString())).json()).session;
const shot = (page: Page, name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });

describe.skipIf(!haveBrowser)('admin console', () => {
  it('an admin disables a user (their browser is signed out), resets a password, sees usage and audit; a non-admin sees 403', async () => {
    const stamp = Date.now();
    const adminEmail = `admin-${stamp}@example.com`;
    const userEmail = `user-${stamp}@example.com`;
    const otherEmail = `other-${stamp}@example.com`;
    for (const email of [adminEmail, userEmail, otherEmail]) await register(email);
    await server.env.DB.prepare('UPDATE users SET is_admin = 1 WHERE email = ?').bind(adminEmail).run();

    // The user's own browser, signed in, with a workspace that has some traffic.
    const user = await browserOf(userEmail);
    const userSession = await sessionOf(user.page);
    expect(userSession.user.email).toBe(userEmail);
    const hlc = `${String(Date.now()).padStart(15, '0')}:000001:dev`;
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      id: 'm1',
      thread_id: 't1',
      role: 'user',
      index: 0,
      order_key: 'a0',
      deleted: false,
      created_at: now,
      updated_at: now,
      clock: 1,
      data: 'hello',
    };
    const pushed = await user.page.request.post(new URL('/api/sync/push', server.url).toString(), {
      data: {
        scope: { workspaceId: userSession.workspace.id },
        ops: [{ tableName: 'messages', operation: 'put', pk: 'm1', payload, stamp: { deviceId: 'd1', opId: crypto.randomUUID(), hlc, clock: 1 } }],
      },
    });
    expect(pushed.status()).toBe(200);

    // A non-admin sees the 403 page, not a blank screen.
    const other = await browserOf(otherEmail, 390);
    await other.page.goto(new URL('/admin/', server.url).toString());
    await other.page.getByTestId('forbidden').waitFor();
    expect(await other.page.getByRole('heading', { level: 1 }).textContent()).toContain('403');
    await shot(other.page, 'admin-403');

    // The admin signs in through the console.
    const admin = await browserOf(null);
    await admin.page.goto(new URL('/admin/', server.url).toString());
    await admin.page.getByLabel('Email').fill(adminEmail);
    await admin.page.getByLabel('Password').fill(PASSWORD);
    await admin.page.getByRole('button', { name: 'Sign in' }).click();
    await admin.page.locator('[data-metric="or3_sync_ops_pushed_today"]').waitFor();
    expect(await admin.page.locator('[data-metric="or3_sync_ops_pushed_today"] b').textContent()).toBe('1');
    await shot(admin.page, 'admin-overview');

    // Finds the user and disables them (confirming); their browser's session ends at once.
    await admin.page.getByRole('button', { name: 'Users' }).click();
    await admin.page.getByLabel('Search users').fill(userEmail);
    await admin.page.getByRole('button', { name: 'Search' }).click();
    const row = admin.page.locator(`tr[data-user="${userEmail}"]`);
    await row.waitFor();
    await expect.poll(() => admin.page.locator('tbody tr').count()).toBe(1);
    admin.page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Disable' }).click();
    await admin.page.getByText(`${userEmail} is disabled.`).waitFor();
    await shot(admin.page, 'admin-user-disabled');
    expect(await sessionOf(user.page)).toBeNull();

    // Enables them again and resets the password: the one-time link works once.
    await row.getByRole('button', { name: 'Enable' }).click();
    await admin.page.getByText(`${userEmail} may sign in again.`).waitFor();
    admin.page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Reset password' }).click();
    const linkText = await admin.page.getByText('One-time reset link').textContent();
    await shot(admin.page, 'admin-reset-link');
    const resetUrl = /(https?:\/\/\S+)$/.exec(linkText ?? '')![1]!;
    const reset = await browserOf(null);
    await reset.page.goto(resetUrl);
    await reset.page.getByLabel('New password').fill('a brand new passphrase 42');
    await reset.page.getByLabel('Repeat it').fill('a brand new passphrase 42');
    await reset.page.getByRole('button', { name: 'Set password' }).click();
    await reset.page.getByText('Your password was changed').waitFor();
    await reset.page.getByRole('button', { name: 'Set password' }).click();
    await reset.page.getByText('Could not change the password').waitFor();

    // The workspace's usage, and the audit entries of what the admin just did.
    await admin.page.getByRole('button', { name: 'Workspaces' }).click();
    await admin.page.getByRole('row').filter({ hasText: userSession.workspace.id }).getByRole('button', { name: 'Usage' }).click();
    const usage = admin.page.getByTestId('usage');
    await usage.waitFor();
    expect(await usage.locator('tr').nth(1).locator('td').nth(1).textContent()).toBe('1');
    await shot(admin.page, 'admin-workspace-usage');
    await admin.page.getByRole('button', { name: 'Audit' }).click();
    const audit = admin.page.getByTestId('audit');
    await audit.getByText('admin.user.disabled').waitFor();
    await audit.getByText('admin.user.password_reset').waitFor();
    await shot(admin.page, 'admin-audit');

    // Deleting asks first and says what will happen to the workspaces the user alone owns.
    await admin.page.getByRole('button', { name: 'Users' }).click();
    await admin.page.getByLabel('Search users').fill(otherEmail);
    await admin.page.getByRole('button', { name: 'Search' }).click();
    const otherRow = admin.page.locator(`tr[data-user="${otherEmail}"]`);
    await otherRow.waitFor();
    let asked = '';
    admin.page.once('dialog', (d) => ((asked = d.message()), void d.accept()));
    await otherRow.getByRole('button', { name: 'Delete' }).click();
    await admin.page.getByText(`${otherEmail} was deleted; 1 workspace(s)`).waitFor();
    expect(asked).toContain(`1 workspace(s) owned only by ${otherEmail} will be deleted`);
    expect(await sessionOf(other.page)).toBeNull();

    expect(problems).toEqual([]);
    for (const c of [user.context, other.context, admin.context, reset.context]) await c.close();
  });
});
