#!/usr/bin/env node
/**
 * A stand-in for the `wrangler` executable, for scripts/deploy.test.ts only: the Cloudflare API
 * cannot be reached from tests. It answers the handful of commands `npm run deploy` uses the way
 * wrangler 4.164 does (output shapes, the "Worker not found" failure, the required-secrets check
 * before a first deploy), keeps a fake account in FAKE_WRANGLER_STATE (JSON) and appends every
 * call to FAKE_WRANGLER_LOG (JSON lines). Secret values are kept as SHA-256 digests only.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const statePath = process.env.FAKE_WRANGLER_STATE;
const state = JSON.parse(readFileSync(statePath, 'utf8'));
const save = () => writeFileSync(statePath, JSON.stringify(state, null, 2));
const toml = readFileSync('wrangler.toml', 'utf8');
const databaseName = /database_name\s*=\s*"([^"]+)"/.exec(toml)[1];
const bucketName = /bucket_name\s*=\s*"([^"]+)"/.exec(toml)[1];
const required = [.../\[secrets\]\s*required\s*=\s*\[([^\]]*)\]/.exec(toml)[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]);
const opt = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const fail = (message) => {
  console.error(`✘ [ERROR] ${message}`);
  process.exit(1);
};

const entry = { argv: [...argv] };
const secretsFile = opt('--secrets-file');
if (secretsFile) {
  entry.argv[argv.indexOf('--secrets-file') + 1] = '<file>';
  entry.secretsFile = { mode: (statSync(secretsFile).mode & 0o777).toString(8), values: JSON.parse(readFileSync(secretsFile, 'utf8')) };
}
appendFileSync(process.env.FAKE_WRANGLER_LOG, JSON.stringify(entry) + '\n');

const cmd = argv
  .filter((a) => !a.startsWith('-'))
  .slice(0, 2)
  .join(' ');
if (argv[0] === 'whoami') {
  // wrangler 4.164: `whoami --json` fails when not logged in (plain `whoami` exits 0 either way).
  if (!argv.includes('--json')) fail('the deploy script must use whoami --json');
  if (!state.loggedIn) fail('{"loggedIn":false}');
  console.log(JSON.stringify({ loggedIn: true, authType: 'OAuth Token', email: 'test@example.com', accounts: [] }));
} else if (cmd === 'd1 list') {
  console.log(JSON.stringify(state.databases.map((name) => ({ uuid: `uuid-${name}`, name }))));
} else if (cmd === 'd1 migrations') {
  if (!state.databases.includes(databaseName)) fail(`Couldn't find a D1 DB with the name or binding 'DB'`);
  const files = readdirSync('migrations/d1').filter((f) => f.endsWith('.sql'));
  const pending = files.filter((f) => !state.migrations.includes(f));
  state.migrations.push(...pending);
  console.log(pending.length ? `Migrations to be applied:\n${pending.join('\n')}\n✅ Applied` : '✅ No migrations to apply!');
} else if (cmd === 'secret list') {
  if (!state.workerExists) fail(`Worker "or3-edge" not found.\n\nIf this is a new Worker, run \`wrangler deploy\` first to create it.`);
  console.log(
    JSON.stringify(
      Object.keys(state.secrets).map((name) => ({ name, type: 'secret_text' })),
      null,
      '  ',
    ),
  );
} else if (argv[0] === 'deploy' && argv.includes('--dry-run')) {
  console.log('Total Upload: 1.00 KiB / gzip: 0.50 KiB\n--dry-run: exiting now.');
} else if (argv[0] === 'deploy') {
  const given = entry.secretsFile?.values ?? {};
  const unset = required.filter((name) => !(name in given) && !(name in state.secrets));
  if (unset.length && !state.workerExists) fail(`The following required secrets have not been set: ${unset.join(', ')}`);
  if (unset.length) fail(`inherit binding '${unset[0]}' is invalid`);
  for (const [name, value] of Object.entries(given)) state.secrets[name] = createHash('sha256').update(value).digest('hex');
  if (!state.databases.includes(databaseName)) state.databases.push(databaseName);
  if (!state.buckets.includes(bucketName)) state.buckets.push(bucketName);
  state.workerExists = true;
  state.uploads += 1;
  console.log(`Uploaded or3-edge (1.00 sec)\nDeployed or3-edge triggers (0.50 sec)\n  ${state.url}\nCurrent Version ID: v${state.uploads}`);
} else if (cmd === 'd1 execute') {
  const sql = opt('--command');
  if (!argv.includes('--remote')) fail('the stand-in only knows --remote');
  const rows = (results) => console.log(JSON.stringify([{ results, success: true, meta: {} }]));
  let m;
  if (/^SELECT COUNT\(\*\) AS admins FROM users WHERE is_admin = 1$/.test(sql)) rows([{ admins: state.admins }]);
  else if ((m = /^SELECT COUNT\(\*\) AS pending FROM setup_tokens WHERE token_hash = '([0-9a-f]{64})'$/.exec(sql)))
    rows([{ pending: state.setupTokens.includes(m[1]) ? 1 : 0 }]);
  else if ((m = /^DELETE FROM setup_tokens; INSERT INTO setup_tokens \(token_hash, created_at\) VALUES \('([0-9a-f]{64})', \d+\);$/.exec(sql))) {
    state.setupTokens = [m[1]];
    console.log('🚣 Executed 2 commands');
  } else fail(`the stand-in does not know this SQL: ${sql}`);
} else {
  fail(`the stand-in does not know: wrangler ${argv.join(' ')}`);
}
save();
