/**
 * A tiny bot (docs/service-api.md "A bot in 60 lines: /echo"): a webhook receiver that answers
 * every chat message starting with `/echo ` with the rest of it, as an assistant message in the
 * same thread, written with a service token. It is the agent of docs/service-api.md with the
 * model replaced by an echo, and it runs against `wrangler dev` as it would against a deployment:
 *
 *   node tools/webhooks/echo-bot.ts --base http://127.0.0.1:8787 --workspace <id> \
 *     --token <read+write service token> --secret <the hook's whsec_…> --port 4001
 *
 * then create the hook (`POST /api/workspaces/:id/webhooks { url: "http://127.0.0.1:4001/",
 * events: ["message.created"] }`; the Worker needs OR3_WEBHOOK_ALLOW_LOOPBACK=true locally).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { verifyStandard } from './receiver.ts';

export interface EchoBotOptions {
  /** The deployment's origin, e.g. http://127.0.0.1:8787. */
  base: string;
  workspaceId: string;
  /** A service token with the read and write scopes. */
  token: string;
  /** The hook's signing secret (`whsec_…`); deliveries that do not verify are refused (401). */
  secret: string;
  port?: number;
}

export interface EchoBot {
  url: string;
  /** The ids of the messages written so far, in order. */
  answered: string[];
  close: () => Promise<void>;
}

/** What the bot answers to `text`, or null when it is not a command of its own. */
export const echoOf = (text: unknown): string | null => (typeof text === 'string' && text.startsWith('/echo ') ? text.slice(6).trim() || null : null);

export async function startEchoBot(options: EchoBotOptions): Promise<EchoBot> {
  const answered: string[] = [];
  const headers = { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' };

  /** One event: a device's new message that asks for an echo gets an assistant message right after it. */
  async function handle(event: any) {
    // Our own writes come back as events too (actor type `service`): never answer those.
    if (event.event !== 'message.created' || event.actor?.type !== 'user') return;
    const message = event.data;
    const reply = echoOf(message?.data);
    if (reply === null || message.role !== 'user') return;
    const id = crypto.randomUUID();
    const now = Math.floor(Date.now() / 1000);
    const row = {
      id,
      thread_id: message.thread_id,
      role: 'assistant',
      data: reply,
      index: message.index + 1,
      order_key: `${message.order_key}~`,
      deleted: false,
      created_at: now,
      updated_at: now,
      clock: 1,
    };
    const res = await fetch(`${options.base}/api/service/workspaces/${options.workspaceId}/rows/messages/${id}`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ payload: row, final: true }),
    });
    if (!res.ok) throw new Error(`echo-bot: writing the answer failed: ${res.status} ${await res.text()}`);
    answered.push(id);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const lower = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
      if (!verifyStandard(options.secret, lower, body)) {
        res.writeHead(401).end();
        return;
      }
      // Answer the delivery at once and work afterwards: a slow answer would be retried.
      res.writeHead(200).end();
      handle(JSON.parse(body)).catch((err: unknown) => console.error(err instanceof Error ? err.message : err));
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, answered, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const at = process.argv.indexOf(`--${name}`);
    const value = at > 0 ? process.argv[at + 1] : undefined;
    if (!value) throw new Error(`echo-bot: --${name} is required`);
    return value;
  };
  const bot = await startEchoBot({
    base: arg('base').replace(/\/$/, ''),
    workspaceId: arg('workspace'),
    token: arg('token'),
    secret: arg('secret'),
    port: Number(process.argv[process.argv.indexOf('--port') + 1]) || 4001,
  });
  console.log(`echo-bot: listening on ${bot.url}; answering "/echo …" in workspace ${process.argv[process.argv.indexOf('--workspace') + 1]}`);
}
