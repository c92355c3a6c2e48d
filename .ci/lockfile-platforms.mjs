// Restores the lockfile entries for workerd's macOS and Windows builds.
//
// Why: the package mirror these machines use lacks recent darwin/windows workerd builds, so
// `npm install` here writes a lockfile without their (optional, os/cpu-gated) entries, and
// `npm ci` then refuses that lockfile as out of sync. The entries below are what npm writes
// against the full registry; on Linux they are never fetched. Run after changing
// dependencies: `node .ci/lockfile-platforms.mjs`.
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const platforms = {
  'workerd-darwin-64': { os: ['darwin'], cpu: ['x64'] },
  'workerd-darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  'workerd-windows-64': { os: ['win32'], cpu: ['x64'] },
};
let added = 0;
for (const [key, entry] of Object.entries(lock.packages)) {
  if (!key.endsWith('node_modules/workerd')) continue;
  const prefix = key.slice(0, -'workerd'.length);
  for (const [name, { os, cpu }] of Object.entries(platforms)) {
    const dep = `@cloudflare/${name}`;
    const version = entry.optionalDependencies?.[dep];
    if (!version) continue;
    // npm hoists the top-level workerd's platform packages to the root node_modules.
    const target = prefix === 'node_modules/' ? `node_modules/${dep}` : `${prefix}${dep}`;
    if (lock.packages[target]?.version === version) continue;
    lock.packages[target] = { version, cpu, license: 'Apache-2.0', optional: true, os, engines: { node: '>=16' } };
    added++;
  }
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
lock.packages = sorted;
writeFileSync(path, JSON.stringify(lock, null, 2) + '\n');
console.log(`lockfile-platforms: added ${added} entr${added === 1 ? 'y' : 'ies'}`);
