/**
 * The first admin in a real browser: a production-mode deployment with invite-only registration
 * and no admin, a setup link as `npm run deploy` prints it, the setup page, and the result.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../client/test/harness';
import { haveBrowser, launchChromium } from './helpers';

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  if (!haveBrowser) return;
  server = await startServer({
    ENVIRONMENT: 'production',
    OR3_BASIC_AUTH_REGISTRATION: 'invite',
    OR3_BASIC_AUTH_JWT_SECRET: randomBytes(32).toString('hex'),
    OR3_STORAGE_URL_SECRET: randomBytes(32).toString('hex'),
  });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

it.skipIf(!haveBrowser)('a setup link makes the first admin of an invite-only deployment, once', async () => {
  const token = randomBytes(32).toString('base64url');
  const hash = createHash('sha256').update(token).digest('hex');
  await server.env.DB.prepare('INSERT INTO setup_tokens (token_hash, created_at) VALUES (?, ?)').bind(hash, Date.now()).run();

  const page = await browser.newPage();
  // Without the link's token, the page says where to get one.
  await page.goto(`${server.url}setup`);
  await page.getByText('Open the setup link').waitFor();

  await page.close();
  const context = await browser.newContext();
  const linked = await context.newPage();
  await linked.goto(`${server.url}setup#token=${token}`);
  await linked.getByRole('heading', { name: 'Create the first admin' }).waitFor();
  await linked.getByLabel('Email').fill('owner@example.com');
  await linked.getByLabel('Password').fill('first admin password');
  await linked.getByRole('button', { name: 'Create admin' }).click();
  // Done: the sign-in form, at the app's root.
  await linked.getByRole('button', { name: 'Sign in' }).waitFor();
  expect(new URL(linked.url()).pathname).toBe('/');
  const row = (await server.env.DB.prepare('SELECT is_admin FROM users WHERE email = ?').bind('owner@example.com').first()) as { is_admin: number } | null;
  expect(row?.is_admin).toBe(1);

  // The same link again: setup is over.
  const again = await context.newPage();
  await again.goto(`${server.url}setup#token=${token}`);
  await again.getByText('Setup is complete').waitFor();
  await context.close();
});
