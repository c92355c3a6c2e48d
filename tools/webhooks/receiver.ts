/**
 * A local webhook receiver (docs/webhooks.md "Local testing"): a Node HTTP server that checks
 * both signatures of every delivery (Standard Webhooks' `webhook-signature` and OR3's
 * `X-OR3-Signature`) and keeps what it received. The tests use it as the real receiver; run it
 * by hand next to `wrangler dev`:
 *
 *   node tools/webhooks/receiver.ts --port 4000 --secret whsec_…
 *
 * (the Worker needs OR3_WEBHOOK_ALLOW_LOOPBACK=true in .env.local to send to http://127.0.0.1).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
  json: any;
  /** Which secret verified it (its index in `secrets`), or -1. */
  verifiedWith: number;
  or3Verified: boolean;
  at: number;
}

const safeEqual = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** Standard Webhooks: the key is the base64 after `whsec_`; any `v1,` entry may match. */
export function verifyStandard(secret: string, headers: Record<string, string>, body: string): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return signatures.split(' ').some((entry) => entry.startsWith('v1,') && safeEqual(entry.slice(3), expected));
}

/** OR3's: `sha256=<hex>` of `<X-OR3-Timestamp>.<body>`, keyed with the secret text. */
export function verifyOr3(secret: string, headers: Record<string, string>, body: string): boolean {
  const timestamp = headers['x-or3-timestamp'];
  const signature = headers['x-or3-signature'];
  if (!timestamp || !signature) return false;
  return safeEqual(signature, `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`);
}

export interface Receiver {
  url: string;
  received: Received[];
  /** The secrets deliveries are checked against (set them as hooks are created or rotated). */
  secrets: string[];
  /** Decides each answer's status by path (default 200); may return a redirect target. */
  respond: (path: string, n: number) => number | { redirect: string };
  /** How long each answer is held back, in ms (0: at once), and the most requests seen in flight at one time. */
  holdMs: number;
  maxInFlight: number;
  /** Resolves once `predicate` holds for the received list (polls; rejects after `ms`). */
  waitFor: <T>(predicate: (received: Received[]) => T | undefined | false, ms?: number) => Promise<T>;
  close: () => Promise<void>;
}

export async function startReceiver(port = 0): Promise<Receiver> {
  const state: Receiver = {
    url: '',
    received: [],
    secrets: [],
    respond: () => 200,
    holdMs: 0,
    maxInFlight: 0,
    waitFor: async (predicate, ms = 30_000) => {
      const until = Date.now() + ms;
      for (;;) {
        const value = predicate(state.received);
        if (value) return value;
        if (Date.now() > until) throw new Error(`receiver: timed out; got ${state.received.map((r) => `${r.path} ${r.json?.event}`).join(', ')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const counts = new Map<string, number>();
  let inFlight = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    state.maxInFlight = Math.max(state.maxInFlight, ++inFlight);
    res.on('close', () => inFlight--);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (state.holdMs > 0) await new Promise((r) => setTimeout(r, state.holdMs));
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const path = req.url ?? '/';
      const verifiedWith = state.secrets.findIndex((s) => verifyStandard(s, headers, body));
      const or3Verified = state.secrets.some((s) => verifyOr3(s, headers, body));
      let json: any = null;
      try {
        json = JSON.parse(body);
      } catch {
        // kept as text
      }
      state.received.push({ path, headers, body, json, verifiedWith, or3Verified, at: Date.now() });
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      const answer = state.respond(path, n);
      if (typeof answer === 'object') {
        res.writeHead(302, { location: answer.redirect });
        res.end();
      } else {
        res.writeHead(answer, { 'content-type': 'text/plain' });
        res.end(answer < 300 ? 'ok' : 'no');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

// As a command: print each delivery and whether it verified.
if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const receiver = await startReceiver(Number(arg('port') ?? 4000));
  receiver.secrets = arg('secret') ? [arg('secret')!] : [];
  const print = receiver.received.push.bind(receiver.received);
  receiver.received.push = (...items: Received[]) => {
    for (const r of items) console.log(`${r.json?.event ?? '?'} ${r.headers['webhook-id']} verified=${r.verifiedWith >= 0 && r.or3Verified} ${r.body}`);
    return print(...items);
  };
  console.log(`listening on ${receiver.url}`);
}
