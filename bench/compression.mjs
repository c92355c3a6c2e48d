/**
 * `npm run bench -- --scenario compression` (docs/performance.md "WebSocket compression"): what
 * permessage-deflate costs and saves on the workspace socket. The same client (the `ws` package)
 * offers the extension or not, in alternating passes: a cold start streamed (window 4) and 100-op
 * pushes. Then what deflate does to one page of 1000 rows as the object sends it and to the same
 * page with ordinary words in place of the bench's repeated filler: bytes saved and the time
 * zlib takes here (the library workerd compresses with).
 *
 * Locally the local server's entry negotiates the extension for every Worker whatever its
 * compatibility flags (`no_web_socket_compression` on the app changed nothing here), so the
 * client's offer is the only switch this harness has.
 */
import { deflateRawSync } from 'node:zlib';
import WebSocket from 'ws';

const PASSES = 3;
const WORDS =
  'the a to of and in is it you that he was for on are with as his they be at one have this from or had by hot word but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find'.split(
    ' ',
  );

/** ~`length` characters of ordinary words (a chat message compresses about like this, not like `xxx…`). */
const words = (length) => {
  let text = '';
  while (text.length < length) text += `${WORDS[Math.floor(Math.random() * WORDS.length)]} `;
  return text.slice(0, length);
};

export async function compressionScenario({ user, call, url, op, row, log, now, median, pullRows, pushOps }) {
  const u = await user();
  log(`  compression: a ${pullRows.toLocaleString()}-row workspace…`);
  await pushOps(u, pullRows, 100);

  /** A socket to `who`'s workspace, offering permessage-deflate or not; answers routed by id. */
  const open = async (who, deflate) => {
    const { ticket } = await call('POST', '/api/sync/ws-ticket', who.token, { workspaceId: who.workspaceId });
    const wsUrl = new URL(`/api/sync/ws?workspaceId=${who.workspaceId}&ticket=${ticket}`, url);
    wsUrl.protocol = 'ws:';
    const ws = new WebSocket(wsUrl, { perMessageDeflate: deflate });
    const handlers = new Set();
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      for (const handle of handlers) handle(msg);
    });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    if ((ws.extensions !== '') !== deflate) throw new Error(`compression: asked ${deflate}, negotiated '${ws.extensions}'`);
    return { ws, handlers };
  };
  const pull = async (deflate) => {
    const { ws, handlers } = await open(u, deflate);
    const t0 = now();
    let rows = 0;
    await new Promise((resolve, reject) => {
      handlers.add((msg) => {
        if (msg.id !== 'cold') return;
        if (msg.type === 'error') return reject(new Error(msg.message));
        rows += msg.changes.length;
        if (!msg.hasMore) return resolve();
        ws.send(JSON.stringify({ type: 'ack', id: 'cold', cursor: msg.nextCursor }));
      });
      ws.send(JSON.stringify({ type: 'pull', id: 'cold', cursor: 0, limit: 1000, window: 4 }));
    });
    ws.close();
    return rows / ((now() - t0) / 1000);
  };
  // The pushes go to a second workspace, so every pass pulls the same rows.
  const pusher = await user();
  const push = async (deflate, count) => {
    const { ws, handlers } = await open(pusher, deflate);
    const t0 = now();
    for (let i = 0; i < count / 100; i++) {
      const id = `c${i}`;
      const answered = new Promise((resolve) => {
        const handle = (msg) => {
          if (msg.id !== id) return;
          handlers.delete(handle);
          resolve();
        };
        handlers.add(handle);
      });
      ws.send(JSON.stringify({ type: 'push', id, echo: false, ops: Array.from({ length: 100 }, () => op()) }));
      await answered;
    }
    ws.close();
    return count / ((now() - t0) / 1000);
  };

  const figures = { pullOn: [], pullOff: [], pushOn: [], pushOff: [] };
  for (let pass = 0; pass < PASSES; pass++) {
    figures.pullOn.push(await pull(true));
    figures.pullOff.push(await pull(false));
    figures.pushOn.push(await push(true, pullRows / 10));
    figures.pushOff.push(await push(false, pullRows / 10));
    log(
      `  pass ${pass + 1}: pull ${Math.round(figures.pullOn[pass])} rows/s with deflate, ${Math.round(figures.pullOff[pass])} without; 100-op push ${Math.round(figures.pushOn[pass])} / ${Math.round(figures.pushOff[pass])} ops/s`,
    );
  }
  // Medians of the passes, and of each pass's ratio (with ÷ without): passes minutes apart move more than the ratio.
  const [pullOn, pullOff, pushOn, pushOff] = [figures.pullOn, figures.pullOff, figures.pushOn, figures.pushOff].map(median);
  const ratio = (on, off) => median(on.map((x, i) => x / off[i]));
  row('socket pull (window 4) without permessage-deflate', pullOff, 'rows/s', null, null, null, 'reported', true);
  row('socket pull with permessage-deflate ÷ without (median of passes)', ratio(figures.pullOn, figures.pullOff), '×', null, null, null, 'reported', true, {
    withDeflate: Math.round(pullOn),
  });
  row('socket 100-op push without permessage-deflate', pushOff, 'ops/s', null, null, null, 'reported', true);
  row(
    'socket 100-op push with permessage-deflate ÷ without (median of passes)',
    ratio(figures.pushOn, figures.pushOff),
    '×',
    null,
    null,
    null,
    'reported',
    true,
    {
      withDeflate: Math.round(pushOn),
    },
  );

  // One page as the object sends it, and the same rows with words for the bench's filler.
  const page = await call('POST', '/api/sync/pull', u.token, { scope: { workspaceId: u.workspaceId }, cursor: 0, limit: 1000 });
  const asSent = JSON.stringify({ type: 'changes', id: 'cold', ...page });
  const withWords = JSON.stringify({
    type: 'changes',
    id: 'cold',
    ...page,
    changes: page.changes.map((c) => ({ ...c, payload: c.payload && { ...c.payload, data: words(c.payload.data?.length ?? 130) } })),
  });
  for (const [label, text] of [
    ['the bench page (repeated filler)', asSent],
    ['the same page, ordinary words', withWords],
  ]) {
    const bytes = Buffer.from(text);
    const t0 = now();
    let out;
    for (let i = 0; i < 5; i++) out = deflateRawSync(bytes);
    const ms = (now() - t0) / 5;
    row(`deflate a page of 1000: ${label}`, bytes.length / out.length, '× smaller', null, null, null, 'reported', true, {
      bytes: bytes.length,
      deflated: out.length,
      zlibMs: Math.round(ms * 100) / 100,
    });
    log(`  ${label}: ${bytes.length.toLocaleString()} → ${out.length.toLocaleString()} bytes, zlib ${ms.toFixed(2)} ms here`);
  }
}
