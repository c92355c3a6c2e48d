/**
 * Plain `wrangler dev` for the tools projects' tests (no test harness): started on free ports in
 * its own process group, so stopping it — `kill -9` included — takes workerd with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The project's root, where wrangler.toml is. */
export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

export interface WranglerDev {
  url: string;
  process: ChildProcess;
  /** Signals the whole process group and waits for wrangler to exit (no-op once it has). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `wrangler dev` with `--var NAME:value` for each of `vars`; resolves once it is ready. */
export async function startWranglerDev(vars: string[] = []): Promise<WranglerDev> {
  const [port, inspector] = [await freePort(), await freePort()];
  const args = [
    `${projectRoot}/node_modules/wrangler/bin/wrangler.js`,
    'dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--inspector-port',
    String(inspector),
  ];
  for (const v of vars) args.push('--var', v);
  const proc = spawn(process.execPath, args, {
    cwd: projectRoot,
    detached: true,
    env: { ...process.env, CI: '1', WRANGLER_SEND_METRICS: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wrangler dev did not start:\n${output}`)), 90_000);
    const onData = (d: Buffer) => {
      output += d;
      if (/Ready on/.test(output)) (clearTimeout(timer), resolve());
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`wrangler dev exited ${code}:\n${output}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    process: proc,
    async stop(signal: NodeJS.Signals = 'SIGINT') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      process.kill(-proc.pid!, signal);
      await exited;
    },
  };
}
