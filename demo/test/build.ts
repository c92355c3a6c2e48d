/** vitest globalSetup for the e2e project: a fresh demo build for the Worker to serve. */
import { build } from 'vite';

export default async function setup() {
  await build({ configFile: new URL('../vite.config.ts', import.meta.url).pathname, logLevel: 'warn' });
}
