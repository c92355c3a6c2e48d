/** POST /api/admin/import: the export format back in, streamed, validated first, idempotent. */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import bcrypt from 'bcryptjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, oidcProvider, signedInUser, signInBearer, uniqueEmail, type SignedIn } from '../auth/helpers';
import { api, apiWithEnv } from '../helpers';
import { message, op, openSocket, pushOk, snapshotAll, syncUser, thread, type SyncUser } from '../sync/helpers';
import { bytesOf, downloadUrl, fetchUrl, put, sha256, store } from '../storage/helpers';

let admin: SignedIn;
beforeAll(async () => {
  admin = await signedInUser({ isAdmin: true });
});

const intent = (s: SignedIn) => ({ ...s.headers, 'x-or3-admin-intent': 'admin' });

/** POSTs a stream with its Content-Length, as the route requires. */
function importStream(body: string, query = '', headers: Record<string, string> = intent(admin)) {
  const bytes = new TextEncoder().encode(body);
  return api(`/api/admin/import${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', 'content-length': String(bytes.byteLength), ...headers },
    body: bytes,
  });
}

async function importOk(body: string, query = '') {
  const res = await importStream(body, query);
  if (res.status !== 200) throw new Error(`import failed ${res.status}: ${await res.text()}`);
  return res.json<any>();
}

const exportOf = async (u: SignedIn, ws: string) => {
  const res = await call('GET', `/api/workspaces/${ws}/export`, u.headers);
  expect(res.status).toBe(200);
  return new TextDecoder().decode(await res.arrayBuffer());
};
const lines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const jsonl = (objects: unknown[]) => objects.map((o) => JSON.stringify(o)).join('\n') + '\n';
const header = (workspaceId: string | null, extra: Record<string, unknown> = {}) => ({ type: 'header', format: 'or3-edge-export/v1', workspaceId, ...extra });

const workspaceRow = (id: string) => env.DB.prepare('SELECT id, name, deleted_at FROM workspaces WHERE id = ?').bind(id).first();
const headOf = (ws: string) =>
  runInDurableObject(env.WORKSPACE.getByName(ws), (_i, state) => {
    const row = state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'server_version'").toArray()[0];
    return Number(row?.value ?? 0);
  });

/** A workspace with history in the archive and the live log, LWW losers, deletes, a notification, members and a blob. */
async function richWorkspace(): Promise<{ u: SyncUser; editor: SignedIn; hash: string }> {
  const u = await syncUser();
  const editor = await signedInUser({ displayName: 'Ed' });
  await upsertMember(env, u.workspaceId, editor.id, 'editor');
  const { hash } = await store(u, u.workspaceId, bytesOf(`blob of ${u.workspaceId}`));
  await pushOk(u, u.workspaceId, [
    op('threads', 't1', thread('t1')),
    op('threads', 'gone', thread('gone')),
    op('messages', 'm1', message('m1', { data: 'v1', file_hashes: JSON.stringify([hash]) })),
    op('file_meta', hash, {
      hash,
      name: 'a.png',
      mime_type: 'image/png',
      size_bytes: 9,
      kind: 'image',
      deleted: false,
      created_at: 1,
      updated_at: 1,
      clock: 1,
    }),
  ]);
  // Archive those through GC, then keep writing: edits, an LWW loser, a hard delete, a notification.
  await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
    state.storage.sql.exec('UPDATE change_log SET created_at = created_at - 7200000'),
  );
  await call('POST', '/api/sync/gc-change-log', u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 });
  await pushOk(u, u.workspaceId, [
    op('messages', 'm1', message('m1', { data: 'v3', file_hashes: JSON.stringify([hash]) }), { clock: 3 }),
    op('messages', 'm1', message('m1', { data: 'loser' }), { clock: 2 }),
    op('threads', 'gone', undefined, { operation: 'delete', clock: 2 }),
    op('notifications', 'n1', { id: 'n1', user_id: u.id, type: 't', title: 'T', deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
    op('kv', 'k1', { id: 'k1', name: 'setting', value: 'x', created_at: 1, updated_at: 1, clock: 1 }),
  ]);
  return { u, editor, hash };
}

describe('POST /api/admin/import: access', () => {
  it('is for deployment admins with the intent header; a non-admin or a missing header gets 403 and nothing is made', async () => {
    const u = await syncUser();
    const ws = crypto.randomUUID();
    const body = jsonl([header(ws), { type: 'end' }]);
    const owner = await importStream(body, '', { ...u.headers, 'x-or3-admin-intent': 'admin' });
    expect(owner.status).toBe(403);
    expect(await owner.json()).toMatchObject({ error: 'admin_required' });
    const noIntent = await importStream(body, '', admin.headers);
    expect(noIntent.status).toBe(403);
    expect(await noIntent.json()).toMatchObject({ error: 'admin_intent_required' });
    expect((await importStream(body, '', {})).status).toBe(401);
    expect(await workspaceRow(ws)).toBeNull();
  });
});

describe('POST /api/admin/import: bad input', () => {
  const ws = () => crypto.randomUUID();
  const cases: [string, (id: string) => string, RegExp][] = [
    [
      'a stream cut off (no end line)',
      (id) => jsonl([header(id), { type: 'member', userId: 'x', role: 'owner' }]).slice(0, -1),
      /^line 3: the stream ends without its end line/,
    ],
    ['a line that is not JSON', (id) => jsonl([header(id), { type: 'end' }]).replace('\n', '\n{"type":"chan\n'), /^line 2: not valid JSON/],
    ['an unknown line type', (id) => jsonl([header(id), { type: 'mystery' }, { type: 'end' }]), /^line 2: unknown line type "mystery"/],
    [
      'another format version',
      (id) => jsonl([{ ...header(id), format: 'or3-edge-export/v2' }, { type: 'end' }]),
      /^line 1: unsupported format "or3-edge-export\/v2"/,
    ],
    ['a first line that is not the header', (id) => jsonl([{ type: 'end' }, header(id)]), /^line 1: the first line must be the header/],
    ['a change missing its fields', (id) => jsonl([header(id), { type: 'change', opId: 'x' }, { type: 'end' }]), /^line 2: change: /],
    ['content after the end line', (id) => jsonl([header(id), { type: 'end' }, { type: 'end' }]), /^line 3: content after the end line/],
    ['an end line that miscounts', (id) => jsonl([header(id), { type: 'end', changes: 2 }]), /^line 2: the end line counts 2 changes, the stream holds 0/],
  ];
  for (const [what, build, message] of cases) {
    it(`answers 400 naming the line for ${what}, and creates nothing`, async () => {
      const id = ws();
      const res = await importStream(build(id));
      expect(res.status).toBe(400);
      const body = await res.json<any>();
      expect(body.error).toBe('invalid_import');
      expect(body.message).toMatch(message);
      expect(await workspaceRow(id)).toBeNull();
      expect(await headOf(id)).toBe(0);
    });
  }

  it('creates nothing when a bad line comes after good history (validated in full before anything is written)', async () => {
    const { u } = await richWorkspace();
    const text = await exportOf(u, u.workspaceId);
    const all = text.split('\n').filter(Boolean);
    const target = ws();
    const broken = [...all.slice(0, 6), '{"type":"row"', ...all.slice(6)].join('\n') + '\n';
    const res = await importStream(broken, `?workspaceId=${target}`);
    expect(res.status).toBe(400);
    expect((await res.json<any>()).message).toMatch(/^line 7: not valid JSON/);
    expect(await workspaceRow(target)).toBeNull();
    expect(await headOf(target)).toBe(0);
  });

  it('needs a Content-Length (411), and refuses a body shorter than it declared', async () => {
    const id = ws();
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(jsonl([header(id), { type: 'end' }])));
        controller.close();
      },
    });
    const res = await api('/api/admin/import', { method: 'POST', headers: intent(admin), body: stream });
    expect(res.status).toBe(411);
    expect(await workspaceRow(id)).toBeNull();
  });

  it('refuses unknown query parameters', async () => {
    expect((await importStream(jsonl([header(ws()), { type: 'end' }]), '?bogus=1')).status).toBe(400);
  });
});

describe('POST /api/admin/import: export → import', () => {
  it('a round trip between two workspaces of this Worker gives identical snapshots, members and history; a second import changes nothing', async () => {
    const { u, editor } = await richWorkspace();
    const text = await exportOf(u, u.workspaceId);
    const exported = lines(text);
    expect(exported.filter((l) => l.type === 'member').map((m) => [m.userId, m.role])).toEqual([
      [u.id, 'owner'],
      [editor.id, 'editor'],
    ]);
    expect(exported.filter((l) => l.type === 'file')).toHaveLength(1);
    expect(text).not.toMatch(/password|scrypt|refresh|token_hash/i);

    const target = crypto.randomUUID();
    const first = await importOk(text, `?workspaceId=${target}&name=Copy`);
    expect(first).toMatchObject({
      workspaceId: target,
      workspaceCreated: true,
      members: { added: 2, updated: 0, unchanged: 0 },
      changes: { applied: 9, unchanged: 0 },
      rows: { applied: 0 },
      tombstones: { applied: 0 },
    });
    // The blob's object lives under the source workspace's key: reported, not recorded.
    expect(first.skipped).toEqual([expect.objectContaining({ type: 'file', reason: expect.stringMatching(/^no object at ws\//) })]);
    expect(first.rows.unchanged + first.tombstones.unchanged).toBe(exported.filter((l) => l.type === 'row' || l.type === 'tombstone').length);

    const source = await snapshotAll(u, u.workspaceId, 100);
    const copy = await snapshotAll(u, target, 100);
    expect(copy.items).toEqual(source.items);
    expect(copy.highWatermark).toBe(source.highWatermark);
    expect((await call('GET', `/api/workspaces/${target}/members`, u.headers)).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${target}/members`, editor.headers)).status).toBe(200);
    const list = await (await call('GET', '/api/workspaces', u.headers)).json<any>();
    expect(list.workspaces.find((w: any) => w.id === target)).toMatchObject({ name: 'Copy', role: 'owner' });
    // The copy's own export has the same history (each change with its opId and fingerprint).
    const strip = (l: any) => ({ ...l, serverVersion: undefined, createdAt: undefined });
    const again = lines(await exportOf(u, target));
    expect(again.filter((l) => l.type === 'change').map(strip)).toEqual(exported.filter((l) => l.type === 'change').map(strip));

    const second = await importOk(text, `?workspaceId=${target}`);
    expect(second).toMatchObject({
      workspaceCreated: false,
      members: { added: 0, updated: 0, unchanged: 2 },
      changes: { applied: 0, unchanged: 9 },
      rows: { applied: 0 },
      tombstones: { applied: 0 },
    });
    expect(await snapshotAll(u, target, 100)).toMatchObject({ items: source.items, highWatermark: source.highWatermark });
  });

  it('a run cut off midway and repeated ends identical to one run', async () => {
    const { u } = await richWorkspace();
    const text = await exportOf(u, u.workspaceId);
    const all = text.split('\n').filter(Boolean);
    const whole = crypto.randomUUID();
    await importOk(text, `?workspaceId=${whole}`);
    // The first run got through the members and half the history before it stopped.
    const resumed = crypto.randomUUID();
    const half = all.slice(0, all.findIndex((l) => l.includes('"type":"change"')) + 4);
    await importOk(jsonl([...half.map((l) => JSON.parse(l)), { type: 'end' }]), `?workspaceId=${resumed}`);
    expect(await headOf(resumed)).toBe(4);
    await importOk(text, `?workspaceId=${resumed}`);
    const a = await snapshotAll(u, whole, 100);
    const b = await snapshotAll(u, resumed, 100);
    expect(b.items).toEqual(a.items);
    expect(b.highWatermark).toBe(a.highWatermark);
    expect(
      (await call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: resumed }, cursor: 0, limit: 1000 }).then((r) => r.json<any>())).changes,
    ).toEqual((await call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: whole }, cursor: 0, limit: 1000 }).then((r) => r.json<any>())).changes);
  });

  it('a dry run validates and reports without writing anything', async () => {
    const { u } = await richWorkspace();
    const text = await exportOf(u, u.workspaceId);
    const target = crypto.randomUUID();
    const report = await importOk(text, `?workspaceId=${target}&dryRun=true`);
    expect(report).toMatchObject({ dryRun: true, workspaceId: target, counts: { header: 1, member: 2, change: 9, file: 1, end: 1 } });
    expect(await workspaceRow(target)).toBeNull();
    expect(await headOf(target)).toBe(0);
  });
});

describe('POST /api/admin/import: state items (a source whose log was collected)', () => {
  it('reproduces rows and tombstones with their original revisions, keeps newer local ones, and skips invalid payloads', async () => {
    const ws = crypto.randomUUID();
    const owner = await signedInUser();
    const rev = (clock: number, n: number) => ({ clock, hlc: `1736648823456:000${n}:abc12345`, opId: crypto.randomUUID() });
    const items = [
      { type: 'member', userId: owner.id, role: 'owner' },
      { type: 'row', tableName: 'threads', pk: 't1', payload: thread('t1'), revision: rev(4, 1), deviceId: 'abc12345' },
      {
        type: 'row',
        tableName: 'messages',
        pk: 'm1',
        payload: message('m1', { thread_id: 't1', file_hashes: '["sha256:' + 'a'.repeat(64) + '"]' }),
        revision: rev(2, 2),
      },
      { type: 'tombstone', tableName: 'messages', pk: 'm-gone', revision: rev(3, 3), serverDeletedAt: 1736648900 },
      { type: 'row', tableName: 'messages', pk: 'bad', payload: { id: 'bad' }, revision: rev(1, 4) },
      {
        type: 'row',
        tableName: 'notifications',
        pk: 'n1',
        payload: { id: 'n1', user_id: owner.id, type: 't', title: 'T', deleted: false, created_at: 1, updated_at: 1, clock: 1 },
        revision: rev(1, 5),
      },
    ];
    const report = await importOk(jsonl([header(ws, { name: 'From OR3' }), ...items, { type: 'end' }]));
    expect(report).toMatchObject({ rows: { applied: 3, unchanged: 0 }, tombstones: { applied: 1, unchanged: 0 }, members: { added: 1 } });
    expect(report.skipped).toEqual([{ line: 6, type: 'row', key: 'messages/bad', reason: expect.stringMatching(/^Invalid payload for messages: /) }]);
    const snap = await snapshotAll(owner, ws, 100);
    const byKey = Object.fromEntries(snap.items.map((i: any) => [`${i.tableName}/${i.pk}`, i]));
    for (const item of items.filter((i) => i.type === 'row' && i.pk !== 'bad') as any[]) {
      expect(byKey[`${item.tableName}/${item.pk}`]).toMatchObject({ kind: 'row', payload: item.payload, revision: item.revision });
    }
    expect(byKey['messages/m-gone']).toEqual({
      kind: 'tombstone',
      tableName: 'messages',
      pk: 'm-gone',
      revision: items[3]!.revision,
      serverDeletedAt: 1736648900,
    });
    const pulled = await (await call('POST', '/api/sync/pull', owner.headers, { scope: { workspaceId: ws }, cursor: 0 })).json<any>();
    expect(pulled.changes.find((c: any) => c.pk === 't1').stamp).toEqual({ deviceId: 'abc12345', ...items[1]!.revision });

    // A newer local edit is kept; importing again changes nothing.
    await pushOk(owner, ws, [op('threads', 't1', thread('t1', { title: 'newer' }), { clock: 9 })]);
    const again = await importOk(jsonl([header(ws), ...items, { type: 'end' }]));
    expect(again).toMatchObject({ rows: { applied: 0, unchanged: 3 }, tombstones: { applied: 0, unchanged: 1 }, members: { unchanged: 1 } });
    expect((await snapshotAll(owner, ws, 100)).items.find((i: any) => i.pk === 't1').payload.title).toBe('newer');
  });

  it('records a file once its object is in R2, counting it against the quota; a missing object is reported', async () => {
    const owner = await signedInUser();
    const ws = crypto.randomUUID();
    const bytes = bytesOf(`bytes for ${ws}`);
    const hash = await sha256(bytes);
    await importOk(jsonl([header(ws), { type: 'member', userId: owner.id, role: 'owner' }, { type: 'end' }]));
    // Uploaded by an admin who is not a member, through the normal signed URLs (x-or3-admin-intent).
    const presign = await call('POST', '/api/storage/presign-upload', intent(admin), {
      workspace_id: ws,
      hash,
      mime_type: 'image/png',
      size_bytes: bytes.byteLength,
    });
    expect(presign.status).toBe(200);
    const { url, headers } = await presign.json<any>();
    expect((await put(url, bytes, headers)).status).toBe(200);
    expect((await call('POST', '/api/storage/presign-upload', admin.headers, { workspace_id: ws, hash, mime_type: 'image/png', size_bytes: 1 })).status).toBe(
      403,
    );

    const missing = 'sha256:' + 'b'.repeat(64);
    const file = { type: 'file', hash, size_bytes: bytes.byteLength, mime_type: 'image/png', name: 'x.png', kind: 'image' };
    const report = await importOk(jsonl([header(ws), file, { ...file, hash: missing }, { type: 'end', files: 2 }]));
    expect(report.files).toEqual({ recorded: 1, unchanged: 0 });
    expect(report.skipped).toEqual([expect.objectContaining({ line: 3, type: 'file', key: missing })]);
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${ws}`, owner.headers)).json<any>();
    expect(usage).toMatchObject({ used_bytes: bytes.byteLength, blob_count: 1 });
    const download = await downloadUrl(owner, ws, hash);
    expect(new Uint8Array(await (await fetchUrl(download.body.url)).arrayBuffer())).toEqual(bytes);
    expect((await importOk(jsonl([header(ws), file, { type: 'end' }]))).files).toEqual({ recorded: 0, unchanged: 1 });
  });
});

describe('POST /api/admin/import: users (admin-only lines)', () => {
  it('creates users with their bcrypt hash and identities, once; a taken email is reported; exports never hold them', async () => {
    const email = uniqueEmail('or3');
    const id = crypto.randomUUID();
    const taken = await signedInUser();
    const users = [
      { type: 'user', id, email: email.toUpperCase(), displayName: 'Old User', passwordHash: bcrypt.hashSync('old password', 4), createdAt: 1_700_000_000_000 },
      {
        type: 'user',
        id: crypto.randomUUID(),
        displayName: 'Clerk User',
        identities: [{ provider: 'clerk', issuer: 'https://x.clerk.accounts.dev', subject: `user_${id}` }],
      },
      { type: 'user', id: crypto.randomUUID(), email: taken.email },
      { type: 'user', id: crypto.randomUUID(), email: uniqueEmail(), passwordHash: '$argon2id$v=19$m=1,t=1,p=1$x$y' },
      // Above OR3's cost 12: it would take longer to check than a failed sign-in's answer time.
      { type: 'user', id: crypto.randomUUID(), email: uniqueEmail(), passwordHash: `$2b$14$${'a'.repeat(53)}` },
    ];
    const first = await importOk(jsonl([header(null), ...users, { type: 'end' }]));
    expect(first.users).toEqual({ created: 2, unchanged: 0, linked: 0 });
    expect(first.skipped.map((s: any) => [s.line, s.reason])).toEqual([
      [5, expect.stringMatching(/^unsupported password hash format/)],
      [6, expect.stringMatching(/^bcrypt cost 14 is outside 4\.\.12/)],
      [4, expect.stringContaining(`belongs to another user here (${taken.id})`)],
    ]);
    const signIn = await signInBearer(email, 'old password');
    expect(signIn.res.status).toBe(200);
    const row = await env.DB.prepare('SELECT email, display_name, password_hash, created_at FROM users WHERE id = ?').bind(id).first<any>();
    expect(row).toMatchObject({ email, display_name: 'Old User', created_at: 1_700_000_000_000 });
    expect(row.password_hash).toMatch(/^\$scrypt\$/);
    const identity = await env.DB.prepare('SELECT user_id FROM identities WHERE provider = ? AND subject = ?').bind('clerk', `user_${id}`).first<any>();
    expect(identity.user_id).toBe(users[1]!.id);

    const second = await importOk(jsonl([header(null), ...users, { type: 'end' }]));
    expect(second.users).toEqual({ created: 0, unchanged: 2, linked: 0 });
    // A password changed since (here: upgraded at sign-in) is never reverted by a re-import.
    expect((await env.DB.prepare('SELECT password_hash FROM users WHERE id = ?').bind(id).first<any>()).password_hash).toBe(row.password_hash);
  });

  it('refuses lines other than users in a stream without a workspace, and user lines from a non-admin never get in', async () => {
    const res = await importStream(jsonl([header(null), { type: 'member', userId: 'x', role: 'owner' }, { type: 'end' }]));
    expect(res.status).toBe(400);
    expect((await res.json<any>()).message).toMatch(/^line 2: a stream with no workspace holds only user lines/);
  });

  it('adds pending invites by token hash (an old invite link keeps working) unless expired', async () => {
    const owner = await signedInUser();
    const ws = crypto.randomUUID();
    const token = `or3-token-${crypto.randomUUID()}`;
    const tokenHash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token)))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('');
    const invites = [
      { type: 'invite', id: crypto.randomUUID(), role: 'editor', tokenHash, createdBy: owner.id, expiresAt: Date.now() + 3600_000 },
      { type: 'invite', id: crypto.randomUUID(), role: 'viewer', tokenHash: 'c'.repeat(64), createdBy: owner.id, expiresAt: Date.now() - 1000 },
    ];
    const report = await importOk(jsonl([header(ws), { type: 'member', userId: owner.id, role: 'owner' }, ...invites, { type: 'end' }]));
    expect(report.invites).toEqual({ added: 1, unchanged: 0 });
    expect(report.skipped).toEqual([expect.objectContaining({ type: 'invite', reason: 'expired' })]);
    const joiner = await signedInUser();
    const accepted = await call('POST', '/api/workspaces/invites/accept', joiner.headers, { inviteToken: token });
    expect(await accepted.json()).toEqual({ ok: true, workspaceId: ws });
    expect((await importOk(jsonl([header(ws), ...invites, { type: 'end' }]))).invites).toEqual({ added: 0, unchanged: 1 });
  });
});

describe('POST /api/admin/import: existing accounts (SECURITY.md §7 case 40)', () => {
  const ISSUER = 'https://idp.import.example.com';
  let idp: Awaited<ReturnType<typeof oidcProvider>>;
  beforeAll(async () => {
    idp = await oidcProvider(ISSUER);
  });
  const session = async (sub: string) =>
    (
      await (
        await apiWithEnv(idp.vars, '/api/auth/session', { headers: { authorization: `Bearer ${await idp.token(sub, `${sub}@attacker.example`)}` } })
      ).json<any>()
    ).session;

  it('a user line naming an EXISTING account never links its identities to it: skipped and reported, and that identity does not sign in as the victim', async () => {
    const victim = await signedInUser({ isAdmin: true });
    const sub = `attacker-${crypto.randomUUID()}`;
    const line = { type: 'user', id: victim.id, email: 'x@attacker.example', identities: [{ provider: 'idp', issuer: ISSUER, subject: sub }] };
    const report = await importOk(jsonl([header(null), line, { type: 'end' }]));
    expect(report.users).toEqual({ created: 0, unchanged: 1, linked: 0 });
    expect(report.skipped).toEqual([
      expect.objectContaining({ line: 2, type: 'user', key: victim.id, reason: expect.stringContaining(`not linked: user ${victim.id} already exists here`) }),
    ]);
    expect(await env.DB.prepare('SELECT count(*) AS n FROM identities WHERE subject = ?').bind(sub).first<any>()).toEqual({ n: 0 });
    // Whoever holds that subject is a stranger here, not the victim (and not a deployment admin).
    const theirs = await session(sub);
    expect(theirs.user.id).not.toBe(victim.id);
    expect(theirs.deploymentAdmin).toBe(false);
    // The victim's own account is untouched (the email too).
    expect((await env.DB.prepare('SELECT email FROM users WHERE id = ?').bind(victim.id).first<any>()).email).toBe(victim.email);
  });

  it('links an existing account only when the operator confirms it (linkExisting), and reports the link', async () => {
    const existing = await signedInUser();
    const other = await signedInUser();
    const sub = `confirmed-${crypto.randomUUID()}`;
    const lines = [
      { type: 'user', id: existing.id, identities: [{ provider: 'idp', issuer: ISSUER, subject: sub }] },
      { type: 'user', id: other.id, identities: [{ provider: 'idp', issuer: ISSUER, subject: `${sub}-other` }] },
    ];
    const stream = jsonl([header(null), ...lines, { type: 'end' }]);
    const res = await importStream(stream, '?linkExisting=not%20an%20id');
    expect(res.status).toBe(400);
    const report = await importOk(stream, `?linkExisting=${existing.id}`);
    expect(report.users).toEqual({ created: 0, unchanged: 2, linked: 1 });
    expect(report.notes).toEqual([expect.stringContaining(`identities linked to the existing user ${existing.id}`)]);
    // The account not confirmed stays unlinked.
    expect(report.skipped).toEqual([expect.objectContaining({ key: other.id, reason: expect.stringContaining('not linked') })]);
    expect((await session(sub)).user.id).toBe(existing.id);
    // Again: already linked, nothing to report.
    const again = await importOk(stream, `?linkExisting=${existing.id}`);
    expect(again.users).toEqual({ created: 0, unchanged: 2, linked: 0 });
    expect(again.notes).toEqual([]);
  });
});

describe('POST /api/admin/import: members tell the workspace object (SECURITY.md §7 case 41)', () => {
  it('a member line that demotes an editor applies to their very next push, over HTTP and over their open socket', async () => {
    const owner = await syncUser();
    const editor = await signedInUser();
    await upsertMember(env, owner.workspaceId, editor.id, 'editor');
    const path = `/api/sync/ws?workspaceId=${owner.workspaceId}`;
    const socket = await openSocket(await api(path, { headers: { upgrade: 'websocket', ...editor.headers } }));
    await socket.next((m) => m.type === 'hello');
    // Both paths warm the object's cache with the editor role.
    await pushOk(editor, owner.workspaceId, [op('messages', 'before', message('before'))]);
    socket.send({ type: 'push', id: 'p1', ops: [op('messages', 'sock1', message('sock1'))] });
    expect(await socket.next((m) => m.id === 'p1')).toMatchObject({ type: 'push-result' });

    const report = await importOk(jsonl([header(owner.workspaceId), { type: 'member', userId: editor.id, role: 'viewer' }, { type: 'end' }]));
    expect(report.members).toEqual({ added: 0, updated: 1, unchanged: 0 });

    const res = await call('POST', '/api/sync/push', editor.headers, {
      scope: { workspaceId: owner.workspaceId },
      ops: [op('messages', 'after', message('after'))],
    });
    expect(res.status).toBe(403);
    socket.send({ type: 'push', id: 'p2', ops: [op('messages', 'sock2', message('sock2'))] });
    expect(await socket.next((m) => m.id === 'p2')).toMatchObject({ type: 'error', error: 'insufficient_role' });
    socket.ws.close();
  });

  it('a member line the workspace refuses (demoting its last owner) is reported skipped, and D1 keeps the authority’s role', async () => {
    const owner = await syncUser();
    const report = await importOk(jsonl([header(owner.workspaceId), { type: 'member', userId: owner.id, role: 'viewer' }, { type: 'end' }]));
    expect(report.members).toEqual({ added: 0, updated: 0, unchanged: 0 });
    expect(report.skipped).toEqual([{ line: 2, type: 'member', key: owner.id, reason: 'the workspace would be left without an owner' }]);
    const copy = await env.DB.prepare('SELECT role FROM members WHERE workspace_id = ? AND user_id = ?')
      .bind(owner.workspaceId, owner.id)
      .first<{ role: string }>();
    expect(copy?.role).toBe('owner');
    await pushOk(owner, owner.workspaceId, [op('messages', 'still-owner', message('still-owner'))]);
  });
});

describe('POST /api/admin/import: staged bodies (SECURITY.md §7 case 47)', () => {
  const staged = async () => (await env.BLOBS.list({ prefix: 'imports/' })).objects.map((o) => o.key);

  it('a rerun with the same x-or3-import-id replaces what a killed run left staged; stale bodies expire and are collected', async () => {
    const ws = crypto.randomUUID();
    const stream = jsonl([header(ws), { type: 'member', userId: admin.id, role: 'owner' }, { type: 'end' }]);
    // What a run killed mid-import leaves: its staged body (the cleanup never ran).
    const leftover = `imports/v1/${admin.id}/part-1.jsonl`;
    await env.BLOBS.put(leftover, stream, { customMetadata: { stagedAt: String(Date.now()) } });
    // Another admin's run killed two hours ago.
    const stale = `imports/v1/someone-else/${crypto.randomUUID()}.jsonl`;
    await env.BLOBS.put(stale, stream, { customMetadata: { stagedAt: String(Date.now() - 2 * 3600_000) } });
    // A run still going (recent, another admin): left alone.
    const running = `imports/v1/someone-else/${crypto.randomUUID()}.jsonl`;
    await env.BLOBS.put(running, stream, { customMetadata: { stagedAt: String(Date.now()) } });

    const res = await importStream(stream, '', { ...intent(admin), 'x-or3-import-id': 'part-1' });
    expect(res.status).toBe(200);
    expect(await staged()).toEqual([running]);
    await env.BLOBS.delete(running);
    expect((await importStream(stream, '', { ...intent(admin), 'x-or3-import-id': 'no spaces' })).status).toBe(400);
  });
});
