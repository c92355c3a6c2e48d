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
/** One message pushed through the sync API as the page's user: traffic for the metrics. */
async function pushOne(page: Page, workspaceId: string) {
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
  const stamp = { deviceId: 'd1', opId: crypto.randomUUID(), hlc: `${String(Date.now()).padStart(15, '0')}:000001:dev`, clock: 1 };
  const pushed = await page.request.post(new URL('/api/sync/push', server.url).toString(), {
    data: { scope: { workspaceId }, ops: [{ tableName: 'messages', operation: 'put', pk: 'm1', payload, stamp }] },
  });
  expect(pushed.status()).toBe(200);
}

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
    await pushOne(user.page, userSession.workspace.id);

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
    await admin.page.locator(`tr[data-workspace="${userSession.workspace.id}"]`).getByRole('button', { name: 'Open' }).click();
    const usage = admin.page.getByTestId('usage');
    await usage.waitFor();
    expect(await usage.locator('tbody tr').first().locator('td').nth(1).textContent()).toBe('1');
    expect(await admin.page.getByTestId('chart-workspace-ops').getAttribute('data-total')).toBe('1');
    await shot(admin.page, 'admin-workspace-usage');
    await admin.page.getByRole('button', { name: 'Audit' }).click();
    await admin.page.getByLabel('Event').fill('admin.user.*');
    await admin.page.getByRole('button', { name: 'Filter' }).click();
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
    await otherRow.getByRole('button', { name: 'Delete' }).click();
    const dialog = admin.page.getByRole('dialog');
    await dialog.getByText(`1 workspace(s) owned only by ${otherEmail}`).waitFor();
    await dialog.getByLabel('Delete them').check();
    await dialog.getByRole('button', { name: 'Delete user' }).click();
    await admin.page.getByText(`${otherEmail} was deleted; 1 workspace(s) they alone owned were deleted.`).waitFor();
    expect(await sessionOf(other.page)).toBeNull();

    expect(problems).toEqual([]);
    for (const c of [user.context, other.context, admin.context, reset.context]) await c.close();
  });

  it('an admin manages members (last owner refused), invites, export/import/fork/delete, webhooks, audit filters and paging, and a delete with transfer', async () => {
    const stamp = Date.now();
    const [adminEmail, ownerEmail, memberEmail, leaverEmail] = ['admin2', 'owner', 'member', 'leaver'].map((n) => `${n}-${stamp}@example.com`) as [
      string,
      string,
      string,
      string,
    ];
    for (const email of [adminEmail, ownerEmail, memberEmail, leaverEmail]) await register(email);
    await server.env.DB.prepare('UPDATE users SET is_admin = 1 WHERE email = ?').bind(adminEmail).run();
    const owner = await browserOf(ownerEmail);
    const ownerSession = await sessionOf(owner.page);
    const workspaceId: string = ownerSession.workspace.id;
    await pushOne(owner.page, workspaceId);
    const ownerWorkspaceRole = async (email: string, ws = workspaceId) =>
      (
        await server.env.DB.prepare('SELECT m.role FROM members m JOIN users u ON u.id = m.user_id WHERE u.email = ? AND m.workspace_id = ?')
          .bind(email, ws)
          .first()
      )?.role ?? null;

    const admin = await browserOf(adminEmail);
    const page = admin.page;
    const adminId: string = (await sessionOf(page)).user.id;
    await page.goto(new URL('/admin/', server.url).toString());
    await page.getByRole('button', { name: 'Workspaces' }).click();
    await page.getByLabel('Search workspaces').fill(workspaceId);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator(`tr[data-workspace="${workspaceId}"]`).getByRole('button', { name: 'Open' }).click();
    const state = page.getByTestId('workspace-state');
    await state.getByText('Head version').waitFor();
    expect(await state.locator('tr').filter({ hasText: 'Head version' }).locator('td').textContent()).toBe('1');
    expect(await state.locator('tr').filter({ hasText: 'State' }).locator('td').textContent()).toBe('live');

    // Members: add, promote, and the last owner is kept with a clear error.
    await page.getByLabel('Add by email or id').fill(memberEmail);
    await page.getByRole('button', { name: 'Add member' }).click();
    const memberRow = page.locator(`tr[data-member="${memberEmail}"]`);
    await memberRow.waitFor();
    await memberRow.getByLabel(`Role of ${memberEmail}`).selectOption('owner');
    await memberRow.getByRole('button', { name: 'Save role' }).click();
    await page.getByText(`${memberEmail} is now owner.`).waitFor();
    const ownerRow = page.locator(`tr[data-member="${ownerEmail}"]`);
    await ownerRow.getByLabel(`Role of ${ownerEmail}`).selectOption('editor');
    await ownerRow.getByRole('button', { name: 'Save role' }).click();
    await page.getByText(`${ownerEmail} is now editor.`).waitFor();
    await page.locator(`tr[data-member="${memberEmail}"]`).getByLabel(`Role of ${memberEmail}`).selectOption('viewer');
    await page.locator(`tr[data-member="${memberEmail}"]`).getByRole('button', { name: 'Save role' }).click();
    await page.getByRole('alert').getByText('409: A workspace must keep at least one owner').waitFor();
    await shot(page, 'admin-members-last-owner');
    await page.locator(`tr[data-member="${memberEmail}"]`).getByRole('button', { name: 'Remove' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await page.getByRole('alert').getByText('409: A workspace must keep at least one owner').waitFor();
    expect(await ownerWorkspaceRole(memberEmail)).toBe('owner');
    await page.locator(`tr[data-member="${ownerEmail}"]`).getByLabel(`Role of ${ownerEmail}`).selectOption('owner');
    await page.locator(`tr[data-member="${ownerEmail}"]`).getByRole('button', { name: 'Save role' }).click();
    await page.getByText(`${ownerEmail} is now owner.`).waitFor();
    await page.locator(`tr[data-member="${memberEmail}"]`).getByRole('button', { name: 'Remove' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await page.getByText(`${memberEmail} was removed.`).waitFor();
    expect(await ownerWorkspaceRole(memberEmail)).toBeNull();

    // Invites: the link is shown once; the list names the invitee; revoking removes it.
    const invitee = `invitee-${stamp}@example.com`;
    await page.getByLabel('Invite email').fill(invitee);
    await page.getByLabel('Invite role').selectOption('editor');
    await page.getByLabel('Expires in').selectOption({ label: '1 day' });
    await page.getByRole('button', { name: 'Create invite' }).click();
    const link = await page.getByTestId('invite-link').getByText('shown once').textContent();
    expect(link).toMatch(new RegExp(`${server.url.replace(/\/$/, '')}/\\?invite=\\S+$`));
    const inviteRow = page.locator(`tr[data-invite="${invitee}"]`);
    expect(await inviteRow.locator('td').nth(1).textContent()).toBe('editor');
    await shot(page, 'admin-invite-link');
    await inviteRow.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await page.getByText(`The invite for ${invitee} is revoked.`).waitFor();
    expect(await inviteRow.count()).toBe(0);
    await shot(page, 'admin-workspace');

    // Export (the link the page offers), then a dry-run import of it; fork; delete and restore.
    const href = await page.getByRole('link', { name: 'Export (JSONL)' }).getAttribute('href');
    const exported = await page.request.get(new URL(href!, server.url).toString());
    expect(exported.status()).toBe(200);
    const body = await exported.body();
    expect(JSON.parse(body.toString().split('\n')[0]!)).toMatchObject({ type: 'header', workspaceId });
    await page.getByLabel('Export file').setInputFiles({ name: 'export.jsonl', mimeType: 'application/x-ndjson', buffer: body });
    await page.getByRole('button', { name: 'Import' }).click();
    await page.getByTestId('import-report').getByText(`Dry run of workspace ${workspaceId}`).waitFor();
    await page.getByRole('button', { name: 'Fork' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Fork' }).click();
    await page.getByText('Forked into workspace').waitFor();
    await page.getByTestId('workspace').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete workspace' }).click();
    await state.locator('tr').filter({ hasText: 'State' }).getByText('deleted at').waitFor();
    await page.getByRole('button', { name: 'Restore' }).click();
    await page.getByText('is restored.').waitFor();
    expect(await state.locator('tr').filter({ hasText: 'State' }).locator('td').textContent()).toBe('live');

    // Webhooks: create (secret shown once), test, deliveries.
    await page.getByRole('button', { name: 'Webhooks' }).click();
    await page.getByLabel('URL').fill('https://hooks.example.com/or3');
    await page.getByRole('button', { name: 'Create webhook' }).click();
    await page.getByText('signing secret (shown once)').waitFor();
    const hookRow = page.locator('tr[data-webhook="https://hooks.example.com/or3"]');
    await hookRow.getByRole('button', { name: 'Test' }).click();
    await page.getByText('A test event (webhook.ping) is queued').waitFor();
    // Logged at the first attempt (the Queue's consumer; the address does not answer on this closed network).
    await expect
      .poll(
        async () => {
          await hookRow.getByRole('button', { name: 'Deliveries' }).click();
          return page.getByTestId('deliveries').getByText('webhook.ping').count();
        },
        { timeout: 60_000, interval: 1000 },
      )
      .toBeGreaterThan(0);
    await shot(page, 'admin-webhooks');

    // A user who alone owns a workspace (made at their first sign-in) is deleted and it is transferred to a named user.
    const leaver = await browserOf(leaverEmail);
    const leaverWorkspace: string = (await sessionOf(leaver.page)).workspace.id;
    await page.getByRole('button', { name: 'Users' }).click();
    await page.getByLabel('Search users').fill(leaverEmail);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator(`tr[data-user="${leaverEmail}"]`).getByRole('button', { name: 'Delete' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText(`1 workspace(s) owned only by ${leaverEmail}`).waitFor();
    await dialog.getByLabel('New owner').fill(ownerEmail);
    await shot(page, 'admin-delete-transfer');
    await dialog.getByRole('button', { name: 'Delete user' }).click();
    await page.getByText(`${leaverEmail} was deleted; 1 workspace(s) they alone owned now belong to ${ownerEmail}.`).waitFor();
    expect(await ownerWorkspaceRole(ownerEmail, leaverWorkspace)).toBe('owner');
    expect(await sessionOf(leaver.page)).toBeNull();

    // Audit: filtered to this admin's member events, ten a page, paged forward and back.
    await page.getByRole('button', { name: 'Audit' }).click();
    await page.getByLabel('Actor id').fill(adminId);
    await page.getByLabel('Per page').selectOption('10');
    await page.getByRole('button', { name: 'Filter' }).click();
    const audit = page.getByTestId('audit');
    await page.getByText('Events 1–10').waitFor();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText(/^Events 11–/).waitFor();
    await audit.getByText('admin.user.deleted').waitFor();
    await page.getByLabel('Event').fill('admin.member.*');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText(/^Events 1–/).waitFor();
    const events = await audit.locator('tbody tr td:nth-child(2)').allTextContents();
    expect(new Set(events)).toEqual(new Set(['admin.member.upserted', 'admin.member.removed']));
    await shot(page, 'admin-audit-filter');

    // The overview's charts at phone width.
    const phone = await browserOf(adminEmail, 390);
    await phone.page.goto(new URL('/admin/', server.url).toString());
    const chart = phone.page.getByTestId('chart-ops_pushed');
    await chart.waitFor();
    expect(Number(await chart.getAttribute('data-total'))).toBeGreaterThanOrEqual(1);
    expect(await phone.page.locator('svg.chart').count()).toBe(4);
    await shot(phone.page, 'admin-overview-phone');

    expect(problems).toEqual([]);
    for (const c of [owner.context, admin.context, phone.context, leaver.context]) await c.close();
  });
});
