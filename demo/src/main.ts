/**
 * The or3-edge demo: a small local-first chat on the client SDK. Everything renders from the
 * local database (Dexie live queries), so it works offline and shows other devices' changes as
 * soon as they sync. Served by the Worker itself (static assets); same origin, so the SDK uses
 * the HttpOnly cookie session.
 */
import './style.css';
import { liveQuery, type Subscription } from 'dexie';
import {
  createOr3Client,
  Or3Error,
  type MessageRow,
  type Or3Workspace,
  type PresencePeer,
  type SyncStatus,
  type ThreadRow,
  type WorkspaceMember,
} from '../../client/src/index';
import { attachmentView, chipView, onTransfer, resetAttachments, safeParse, type Staged } from './attachments';
import { formatTime, h, replace, toast } from './dom';
import { renderSetup } from './setup';

type Role = 'owner' | 'editor' | 'viewer';

// The demo's own column: the sender's name, shown to others (docs/client.md "Your own columns").
declare module '../../client/src/index' {
  interface MessageRow {
    author_name?: string;
  }
}

const client = createOr3Client();
const app = document.getElementById('app')!;
let ws: Or3Workspace | null = null;
let role: Role = 'viewer';
let me: { id: string; email?: string; displayName?: string } | null = null;
let threadId: string | null = null;
let subscriptions: Subscription[] = [];
let offEvents: (() => void)[] = [];
/** Whether the role shown is the server's (or the last copy of it), not the default. */
let roleKnown = false;
/** Whether the presence roster is current (the socket is live); if not, nobody's presence is known. */
let presenceKnown = false;
/** The workspace's members (from the server when online) and who is here now (presence). */
let members: WorkspaceMember[] = [];
let roster: PresencePeer[] = [];
/** Users the member list was refreshed for already (once each). */
const asked = new Set<string>();
const threadTitles = new Map<string, string>();

// A debugging and testing hook: `or3demo.ws` is the open workspace.
(window as unknown as { or3demo: unknown }).or3demo = {
  client,
  get ws() {
    return ws;
  },
};

const nowSeconds = () => Math.floor(Date.now() / 1000);
const inviteFromUrl = () => new URLSearchParams(location.hash.slice(1)).get('invite');
const canWrite = () => role !== 'viewer';

// -- boot -----------------------------------------------------------------------------------

async function boot() {
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => undefined);
  // The session ended on the server (a refresh was refused): back to the sign-in form.
  client.on('signedOut', () => void signedOut());
  // A setup link for the first admin (docs/auth.md "First admin"); then the sign-in form.
  if (location.pathname === '/setup') return renderSetup(app, () => renderAuth('sign-in'));
  const cached = await client.cachedSession();
  if (cached?.user && !inviteFromUrl()) {
    me = cached.user;
    await openWorkspace(localStorage.getItem('or3demo:workspace') ?? cached.workspace?.id);
    // Online: make sure the cookie still belongs to the same account.
    if (navigator.onLine)
      void client
        .session()
        .then((s) => (s?.user?.id === me?.id ? undefined : signedOut()))
        .catch(() => undefined);
    return;
  }
  try {
    const session = await client.session();
    if (session?.authenticated && session.user) return afterSignIn();
  } catch {
    // not signed in, or offline on a first visit
  }
  renderAuth();
}

/** After sign-in or registration: accept an invite from the URL (registration already did), open the workspace. */
async function afterSignIn(registeredWithInvite = false) {
  const session = await client.session();
  me = session?.user ?? null;
  const invite = inviteFromUrl();
  let workspaceId = session?.workspace?.id;
  if (invite && !registeredWithInvite) {
    try {
      const accepted = await client.workspaces.acceptInvite(invite);
      workspaceId = accepted.workspaceId ?? workspaceId;
    } catch (err) {
      if (!(err instanceof Or3Error && err.code === 'invalid_invite')) throw err;
      toast('This invite link is used up or expired; ask for a new one.', 'error');
    }
  }
  if (invite) history.replaceState(null, '', location.pathname);
  await openWorkspace(workspaceId);
}

async function signedOut() {
  await closeWorkspace();
  me = null;
  role = 'viewer';
  await client.forgetSession();
  for (const key of Object.keys(localStorage)) if (key.startsWith('or3demo:')) localStorage.removeItem(key);
  renderAuth();
}

// -- auth view ------------------------------------------------------------------------------

function renderAuth(mode: 'sign-in' | 'register' = inviteFromUrl() ? 'register' : 'sign-in') {
  const error = h('p', { class: 'error', role: 'alert' });
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', placeholder: 'you@example.com' });
  const password = h('input', {
    type: 'password',
    name: 'password',
    required: true,
    minLength: 12,
    autocomplete: mode === 'register' ? 'new-password' : 'current-password',
    placeholder: 'at least 12 characters',
  });
  const displayName = h('input', { type: 'text', name: 'displayName', autocomplete: 'name', placeholder: 'Ada Lovelace' });
  const submit = h('button', { type: 'submit', class: 'primary' }, mode === 'register' ? 'Create account' : 'Sign in');
  const form = h(
    'form',
    {
      class: 'auth-form',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        submit.disabled = true;
        error.textContent = '';
        try {
          if (mode === 'register')
            await client.basicAuth.register({
              email: email.value,
              password: password.value,
              ...(displayName.value ? { displayName: displayName.value } : {}),
              ...(inviteFromUrl() ? { inviteToken: inviteFromUrl()! } : {}),
            });
          else await client.basicAuth.signIn(email.value, password.value);
          await afterSignIn(mode === 'register' && inviteFromUrl() !== null);
        } catch (err) {
          error.textContent = err instanceof Error ? err.message : String(err);
          submit.disabled = false;
        }
      },
    },
    h('label', {}, 'Email', email),
    mode === 'register' ? h('label', {}, 'Display name', displayName) : null,
    h('label', {}, 'Password', password),
    submit,
    error,
  );
  replace(
    app,
    h(
      'main',
      { class: 'auth' },
      h(
        'section',
        { class: 'card' },
        h('h1', {}, 'or3-edge chat'),
        h('p', { class: 'muted' }, 'A local-first chat on Cloudflare Workers, Durable Objects, R2 and D1. Open it in two windows and watch them stay in step.'),
        inviteFromUrl() ? h('p', { class: 'note' }, 'You were invited to a workspace: create an account or sign in to join it.') : null,
        h(
          'div',
          { class: 'tabs', role: 'tablist' },
          h('button', { type: 'button', role: 'tab', 'aria-selected': String(mode === 'sign-in'), onclick: () => renderAuth('sign-in') }, 'Sign in'),
          h('button', { type: 'button', role: 'tab', 'aria-selected': String(mode === 'register'), onclick: () => renderAuth('register') }, 'Create account'),
        ),
        form,
      ),
    ),
  );
  email.focus();
}

// -- workspace ------------------------------------------------------------------------------

async function closeWorkspace() {
  for (const s of subscriptions) s.unsubscribe();
  messageSubscription?.unsubscribe();
  messageSubscription = null;
  for (const off of offEvents) off();
  subscriptions = [];
  offEvents = [];
  threadId = null;
  staged = [];
  members = [];
  roster = [];
  asked.clear();
  threadTitles.clear();
  lastInviteLink = '';
  resetAttachments();
  const old = ws;
  ws = null;
  await old?.close();
}

let opening = 0;

async function openWorkspace(id?: string) {
  const generation = ++opening;
  await closeWorkspace();
  const opened = await client.openWorkspace(id);
  if (generation !== opening) return void opened.close(); // a later switch won
  ws = opened;
  localStorage.setItem('or3demo:workspace', opened.id);
  const cachedList: { id: string; role: Role }[] = JSON.parse(localStorage.getItem('or3demo:workspaces') ?? '[]');
  const cachedRole = cachedList.find((w) => w.id === opened.id)?.role;
  role = cachedRole ?? 'viewer';
  roleKnown = cachedRole !== undefined;
  threadId = localStorage.getItem(`or3demo:thread:${opened.id}`);
  renderShell();
  void refreshWorkspaces();
}

/** Workspaces and the caller's role: from the server when online, else from the last copy. */
async function refreshWorkspaces() {
  type Summary = { id: string; name: string; role: Role };
  let list: Summary[] = JSON.parse(localStorage.getItem('or3demo:workspaces') ?? '[]');
  try {
    list = (await client.workspaces.list()).map(({ id, name, role }) => ({ id, name, role }));
    localStorage.setItem('or3demo:workspaces', JSON.stringify(list));
  } catch {
    // offline: keep the cached list
  }
  const current = list.find((w) => w.id === ws?.id);
  const before = role;
  role = current?.role ?? role;
  roleKnown ||= current !== undefined;
  if (role !== before) selectThread(threadId); // redraw: edit/delete buttons depend on the role
  if (ws) renderStatus(ws.status); // the bar's role, never the default while the switcher says otherwise
  const select = document.querySelector<HTMLSelectElement>('[data-testid=workspace-select]');
  if (select) {
    replace(select, ...list.map((w) => h('option', { value: w.id, selected: w.id === ws?.id }, `${w.name} (${w.role})`)));
  }
  renderComposerState();
  void refreshMembers();
}

function renderShell() {
  const workspace = ws!;
  const newWorkspace = h('input', { type: 'text', placeholder: 'New workspace name', 'aria-label': 'New workspace name', maxLength: 100 });
  replace(
    app,
    h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'or3-edge'),
      h('select', {
        'data-testid': 'workspace-select',
        'aria-label': 'Workspace',
        onchange: async (e: Event) => {
          const id = (e.target as HTMLSelectElement).value;
          await client.workspaces.setActive(id).catch(() => undefined);
          await openWorkspace(id).catch((err) => toast(err instanceof Error ? err.message : String(err), 'error'));
        },
      }),
      h(
        'form',
        {
          class: 'inline',
          onsubmit: async (e: Event) => {
            e.preventDefault();
            if (!newWorkspace.value.trim()) return;
            try {
              const id = await client.workspaces.create(newWorkspace.value.trim());
              await openWorkspace(id);
            } catch (err) {
              toast(err instanceof Error ? err.message : String(err), 'error');
            }
          },
        },
        newWorkspace,
        h('button', { type: 'submit' }, 'Create'),
      ),
      h('span', { class: 'spacer' }),
      h('span', { class: 'who', 'data-testid': 'who' }, me?.displayName ?? me?.email ?? ''),
      h('button', { type: 'button', onclick: async () => (await client.basicAuth.signOut(), await signedOut()) }, 'Sign out'),
    ),
    h(
      'div',
      { class: 'layout' },
      h('aside', { class: 'threads' }, h('h2', {}, 'Threads'), threadForm(), h('ul', { 'data-testid': 'thread-list' })),
      h(
        'section',
        { class: 'conversation' },
        h('h2', { class: 'thread-title', 'data-testid': 'thread-title' }),
        h('div', {
          class: 'messages',
          'data-testid': 'messages',
          onscroll: (e: Event) => followOrNot(e.target as HTMLElement),
          onwheel: userScrolled,
          ontouchmove: userScrolled,
          onkeydown: userScrolled,
          onpointerdown: userScrolled,
        }),
        h('p', { class: 'typing muted', 'data-testid': 'typing', 'aria-live': 'polite' }),
        composer(),
      ),
      h('aside', { class: 'members', 'data-testid': 'members-panel' }),
    ),
    h('footer', { class: 'status', 'data-testid': 'status' }),
  );

  subscriptions.push(liveQuery(() => threadsByActivity(workspace)).subscribe(renderThreads));
  selectThread(threadId);
  offEvents.push(
    workspace.on('status', renderStatus),
    workspace.on('presence', (event) => {
      roster = event.roster;
      // Someone the member list does not have yet (they just joined): ask the server once.
      const newcomers = roster.filter((p) => !members.some((m) => m.userId === p.userId) && !asked.has(p.userId));
      for (const p of newcomers) asked.add(p.userId);
      if (newcomers.length) void refreshMembers();
      if (roster.some((p) => !document.querySelector(`[data-presence="${CSS.escape(p.userId)}"]`))) renderMembers();
      else renderPresence();
    }),
    workspace.on('conflict', ({ tableName }) =>
      toast(`Another device changed the same ${tableName.replace(/s$/, '')} at the same time; its version was kept.`),
    ),
    workspace.on('rejected', ({ error }) => toast(`The server refused a change: ${error.message}`, 'error')),
    workspace.on('transfer', (t) => onTransfer(t, staged)),
  );
  renderStatus(workspace.status);
}

const REALTIME_LABEL: Record<SyncStatus['realtime'], string> = {
  live: 'Realtime: live',
  connecting: 'Realtime: reconnecting (polling)',
  offline: 'Realtime: off (offline)',
  off: 'Realtime: off (polling)',
  unavailable: 'Realtime: unavailable (polling)',
};

/** The status bar, drawn from the SDK's status value alone (one consistent snapshot). */
function renderStatus(status: SyncStatus) {
  const footer = document.querySelector('[data-testid=status]');
  if (!footer) return;
  const offline = status.phase === 'offline';
  if (presenceKnown !== (status.realtime === 'live')) {
    presenceKnown = status.realtime === 'live';
    renderPresence();
  }
  replace(
    footer,
    h('span', { class: `dot ${offline ? 'off' : 'on'}`, 'data-testid': 'network' }, offline ? 'Offline' : 'Online'),
    h('span', { 'data-testid': 'sync-status', title: status.error?.message ?? '' }, `Sync: ${status.phase}`),
    h('span', { 'data-testid': 'pending' }, `Pending: ${status.pending}`),
    status.failed ? h('span', { class: 'error' }, `Refused: ${status.failed}`) : null,
    h('span', { 'data-testid': 'realtime' }, REALTIME_LABEL[status.realtime]),
    h(
      'span',
      { 'data-testid': 'last-synced', class: 'muted' },
      status.lastSyncedAt ? `Synced ${new Date(status.lastSyncedAt).toLocaleTimeString()}` : 'Not synced yet',
    ),
    h('span', { class: 'muted', 'data-testid': 'role' }, `Role: ${roleKnown ? role : '…'}`),
  );
}

// -- threads --------------------------------------------------------------------------------

function threadForm() {
  const title = h('input', { type: 'text', placeholder: 'New thread', 'aria-label': 'New thread title', maxLength: 200, 'data-testid': 'new-thread' });
  return h(
    'form',
    {
      class: 'inline',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        if (!ws || !title.value.trim() || !canWrite()) return;
        const id = crypto.randomUUID();
        const now = nowSeconds();
        await ws.db.threads.put({
          id,
          title: title.value.trim(),
          status: 'ready',
          deleted: false,
          pinned: false,
          created_at: now,
          updated_at: now,
          last_message_at: now,
          clock: 0,
        });
        title.value = '';
        selectThread(id);
      },
    },
    title,
    h('button', { type: 'submit', class: 'write-only' }, 'Add'),
  );
}

/**
 * Live threads, most recent activity first: a thread's own update or its newest message. The
 * message is not written into its thread (no `last_message_at` bump), so one message sent
 * offline is one pending write.
 */
async function threadsByActivity(workspace: Or3Workspace) {
  const rows = (await workspace.db.threads.toArray()).filter((t) => !t.deleted);
  const activity = await Promise.all(
    rows.map(async (t) => {
      const newest = await workspace.db.messages.where('[thread_id+index]').between([t.id, -Infinity], [t.id, Infinity]).last();
      return Math.max(Number(t.updated_at), Number(t.last_message_at ?? 0), Number(newest?.created_at ?? 0));
    }),
  );
  return rows
    .map((t, i) => ({ t, at: activity[i]! }))
    .sort((a, b) => b.at - a.at)
    .map((x) => x.t);
}

function renderThreads(rows: ThreadRow[]) {
  threadTitles.clear();
  for (const t of rows) threadTitles.set(t.id, t.title ?? 'Untitled');
  renderThreadTitle();
  renderPresence();
  const list = document.querySelector('[data-testid=thread-list]');
  if (!list) return;
  if (!threadId && rows[0]) selectThread(String(rows[0].id));
  replace(
    list,
    ...rows.map((t) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: t.id === threadId ? 'thread active' : 'thread',
            'aria-current': t.id === threadId ? 'true' : false,
            onclick: () => selectThread(String(t.id)),
          },
          String(t.title ?? 'Untitled'),
        ),
      ),
    ),
    rows.length ? null : h('li', { class: 'muted' }, canWrite() ? 'No threads yet: add one above.' : 'No threads yet.'),
  );
}

let messageSubscription: Subscription | null = null;

function selectThread(id: string | null) {
  threadId = id;
  if (id && ws) localStorage.setItem(`or3demo:thread:${ws.id}`, id);
  // Presence: where this device is (the others' member lists show it).
  ws?.presence.set({ name: me?.displayName ?? me?.email ?? 'Someone', ...(id ? { threadId: id } : {}) });
  messageSubscription?.unsubscribe();
  messageSubscription = null;
  const workspace = ws;
  if (!workspace) return;
  if (id) {
    messageSubscription = liveQuery(() => workspace.db.messages.where('thread_id').equals(id).toArray()).subscribe(renderMessages);
  } else renderMessages([]);
  renderTyping();
  void threadsByActivity(workspace).then(renderThreads);
  renderThreadTitle();
  renderComposerState();
}

/** The open thread's title above the conversation. */
function renderThreadTitle() {
  const title = document.querySelector('[data-testid=thread-title]');
  if (title) title.textContent = threadId ? (threadTitles.get(threadId) ?? '') : 'No thread selected';
}

// -- messages -------------------------------------------------------------------------------

/**
 * Whether the list follows the newest message: true until the reader scrolls up. Only the
 * reader's own scrolling (wheel, touch, keys, the scrollbar) can turn it off: a re-render, an
 * image loading or the browser's scroll anchoring also move the list, and must not.
 */
let stick = true;
let lastUserScroll = 0;
const userScrolled = () => void (lastUserScroll = Date.now());
function followOrNot(box: HTMLElement) {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (atBottom) stick = true;
  else if (Date.now() - lastUserScroll < 1000) stick = false;
}

/** Scrolls to the newest message when the list follows it (again after each image has loaded). */
function followNewest() {
  const box = document.querySelector<HTMLElement>('[data-testid=messages]');
  if (box && stick) box.scrollTop = box.scrollHeight;
}

function renderMessages(rows: MessageRow[]) {
  const box = document.querySelector<HTMLElement>('[data-testid=messages]');
  if (!box) return;
  const sorted = rows.filter((m) => !m.deleted).sort((a, b) => Number(a.index) - Number(b.index) || String(a.order_key).localeCompare(String(b.order_key)));
  replace(box, ...sorted.map(messageView), sorted.length ? null : h('p', { class: 'empty muted' }, threadId ? 'No messages yet.' : 'Pick or add a thread.'));
  followNewest();
}

function messageView(m: MessageRow) {
  const hashes: string[] = typeof m.file_hashes === 'string' ? safeParse(m.file_hashes) : [];
  const text = h('p', { class: 'text', 'data-testid': 'message-text' }, String(m.data ?? ''));
  const article = h(
    'article',
    { class: 'message', 'data-id': String(m.id) },
    h(
      'header',
      {},
      h('strong', {}, String(m.author_name ?? 'Someone')),
      h('time', {}, formatTime(Number(m.created_at))),
      Number(m.updated_at) > Number(m.created_at) ? h('span', { class: 'muted' }, '(edited)') : null,
    ),
    text,
    hashes.length && ws ? h('div', { class: 'attachments' }, ...hashes.map((hash) => attachmentView(ws!, hash, followNewest))) : null,
  );
  if (canWrite()) {
    article.append(
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'link', onclick: () => editMessage(article, m) }, 'Edit'),
        h('button', { type: 'button', class: 'link danger', onclick: () => void ws?.db.messages.delete(String(m.id)) }, 'Delete'),
      ),
    );
  }
  return article;
}

function editMessage(article: HTMLElement, m: MessageRow) {
  const input = h('input', { type: 'text', value: String(m.data ?? ''), 'aria-label': 'Edit message' });
  const form = h(
    'form',
    {
      class: 'inline edit',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        await ws?.db.messages.update(String(m.id), { data: input.value, updated_at: nowSeconds() });
      },
    },
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Save'),
  );
  article.querySelector('.text')?.replaceWith(form);
  input.focus();
}

// -- composer -------------------------------------------------------------------------------

let staged: Staged[] = [];

function composer() {
  // Every keystroke says "typing"; the SDK clears it after a few seconds without one.
  const text = h('textarea', {
    rows: 2,
    placeholder: 'Write a message',
    'aria-label': 'Message',
    'data-testid': 'composer-text',
    oninput: () => ws?.presence.typing(),
  });
  const chips = h('div', { class: 'chips' });
  const file = h('input', {
    type: 'file',
    accept: 'image/png,image/jpeg,image/gif,image/webp,application/pdf',
    hidden: true,
    'data-testid': 'attach-input',
    onchange: async () => {
      for (const f of Array.from(file.files ?? [])) {
        try {
          const { hash } = await ws!.upload(f, { name: f.name });
          const item: Staged = { hash, name: f.name };
          staged.push(item);
          const chip = chipView(item, () => {
            staged = staged.filter((s) => s !== item);
            chip.remove();
          });
          chips.append(chip);
        } catch (err) {
          toast(err instanceof Error ? err.message : String(err), 'error');
        }
      }
      file.value = '';
    },
  });
  const send = async (e: Event) => {
    e.preventDefault();
    const workspace = ws;
    const thread = threadId;
    if (!workspace || !thread || !canWrite() || (!text.value.trim() && !staged.length)) return;
    const now = nowSeconds();
    // A file the server refused is never sent (its chip says why until removed).
    const hashes = staged.filter((s) => !s.refused).map((s) => s.hash);
    if (!text.value.trim() && !hashes.length) return;
    await workspace.db.transaction('rw', workspace.db.messages, async () => {
      const index = await workspace.db.messages.where('thread_id').equals(thread).count();
      await workspace.db.messages.put({
        id: crypto.randomUUID(),
        thread_id: thread,
        role: 'user',
        index,
        // Breaks ties between devices that picked the same index while apart.
        order_key: `${Date.now().toString(36)}-${workspace.deviceId.slice(-6)}`,
        data: text.value.trim(),
        author_name: me?.displayName ?? me?.email ?? 'Someone',
        deleted: false,
        created_at: now,
        updated_at: now,
        clock: 0,
        ...(hashes.length ? { file_hashes: JSON.stringify(hashes) } : {}),
      });
    });
    text.value = '';
    staged = [];
    chips.replaceChildren();
    workspace.presence.typing(false);
  };
  return h(
    'form',
    { class: 'composer', 'data-testid': 'composer', onsubmit: send },
    chips,
    h(
      'div',
      { class: 'row' },
      text,
      h('label', { class: 'button write-only', title: 'Attach an image or PDF' }, 'Attach', file),
      h('button', { type: 'submit', class: 'primary write-only', 'data-testid': 'send' }, 'Send'),
    ),
    h('p', { class: 'readonly-note muted', 'data-testid': 'readonly-note', hidden: true }, 'You have read-only access to this workspace.'),
    h('p', { class: 'no-thread-note muted', 'data-testid': 'no-thread-note', hidden: true }, 'Pick or add a thread to write in.'),
  );
}

// Enter sends; Shift+Enter is a new line.
document.addEventListener('keydown', (e) => {
  const target = e.target as HTMLElement;
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && target.matches('[data-testid=composer-text]')) {
    e.preventDefault();
    target.closest('form')?.requestSubmit();
  }
});

function renderComposerState() {
  const writable = canWrite();
  for (const el of document.querySelectorAll<HTMLButtonElement | HTMLInputElement>('.threads form input, .threads form button')) el.disabled = !writable;
  // No thread, nothing to send to: the composer is off (and says why) rather than silently idle.
  for (const el of document.querySelectorAll<HTMLButtonElement | HTMLInputElement | HTMLTextAreaElement>(
    '.composer textarea, .composer button, .composer input',
  ))
    el.disabled = !writable || !threadId;
  // "Read-only" only once the server (or its last answer) says viewer, never while the role loads.
  const viewer = roleKnown && !writable;
  const note = document.querySelector<HTMLElement>('[data-testid=readonly-note]');
  if (note) note.hidden = !viewer;
  const noThread = document.querySelector<HTMLElement>('[data-testid=no-thread-note]');
  if (noThread) noThread.hidden = viewer || threadId !== null;
}

// -- members and presence ------------------------------------------------------------------

/** Loads the member list (every member may read it), then draws it. */
async function refreshMembers() {
  const workspaceId = ws?.id;
  if (!workspaceId) return;
  try {
    const list = await client.workspaces.members(workspaceId);
    if (ws?.id === workspaceId) members = list;
  } catch {
    // offline: keep what we had; presence still shows who is here
  }
  renderMembers();
}

const nameOf = (userId: string) => {
  const m = members.find((x) => x.userId === userId);
  const fromPresence = roster.find((p) => p.userId === userId && typeof p.state.name === 'string')?.state.name as string | undefined;
  return m?.displayName ?? m?.email ?? fromPresence ?? 'Someone';
};

/** Members (owners also manage roles and invites); who is online and where is filled in by renderPresence. */
function renderMembers() {
  const panel = document.querySelector('[data-testid=members-panel]');
  if (!panel || !ws) return;
  const workspaceId = ws.id;
  // Members the server listed, and anyone present the list does not have yet (offline start).
  const people = [...members];
  for (const p of roster) if (!people.some((m) => m.userId === p.userId)) people.push({ userId: p.userId, role: 'viewer' });
  const owner = role === 'owner';
  const memberRow = (m: WorkspaceMember) =>
    h(
      'li',
      { 'data-testid': 'member', 'data-user': m.userId },
      h('span', { class: 'name' }, `${nameOf(m.userId)}${m.userId === me?.id ? ' (you)' : ''}`),
      h('span', { class: 'presence dot off', 'data-presence': m.userId }),
      !owner || m.userId === me?.id
        ? h('span', { class: 'muted' }, m.role)
        : h(
            'span',
            {},
            h(
              'select',
              {
                'aria-label': `Role of ${m.email ?? m.userId}`,
                onchange: async (e: Event) =>
                  client.workspaces
                    .setRole(workspaceId, m.userId, (e.target as HTMLSelectElement).value as Role)
                    .then(() => toast('Role updated'))
                    .catch((err) => toast(String(err.message), 'error')),
              },
              ...(['owner', 'editor', 'viewer'] as const).map((r) => h('option', { value: r, selected: r === m.role }, r)),
            ),
            h(
              'button',
              {
                type: 'button',
                class: 'link danger',
                onclick: async () => (
                  await client.workspaces.removeMember(workspaceId, m.userId).catch((err) => toast(String(err.message), 'error')),
                  refreshMembers()
                ),
              },
              'Remove',
            ),
          ),
      h('span', { class: 'where muted', 'data-where': m.userId }),
    );
  replace(
    panel,
    h('h2', {}, 'Members'),
    people.length ? h('ul', { 'data-testid': 'member-list' }, ...people.map(memberRow)) : h('p', { class: 'muted' }, 'Members load when you are online.'),
    owner ? inviteForm(workspaceId) : null,
  );
  renderPresence();
}

let lastInviteLink = '';

function inviteForm(workspaceId: string) {
  const inviteRole = h(
    'select',
    { 'aria-label': 'Invite role', 'data-testid': 'invite-role' },
    h('option', { value: 'editor' }, 'editor'),
    h('option', { value: 'viewer' }, 'viewer'),
    h('option', { value: 'owner' }, 'owner'),
  );
  // The member list redraws on presence changes: the last link made survives it.
  const link = h('input', {
    type: 'text',
    readOnly: true,
    'aria-label': 'Invite link',
    'data-testid': 'invite-link',
    placeholder: 'Create a link to share',
    value: lastInviteLink,
  });
  return h(
    'div',
    { class: 'invite' },
    h('h3', {}, 'Invite'),
    h(
      'form',
      {
        class: 'inline',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            const { inviteToken } = await client.workspaces.invite(workspaceId, inviteRole.value as Role);
            lastInviteLink = `${location.origin}/#invite=${encodeURIComponent(inviteToken)}`;
            // The panel may have been redrawn while the request ran: fill in the field on the page now.
            const live = document.querySelector<HTMLInputElement>('[data-testid=invite-link]') ?? link;
            live.value = lastInviteLink;
            live.select();
          } catch (err) {
            toast(err instanceof Error ? err.message : String(err), 'error');
          }
        },
      },
      inviteRole,
      h('button', { type: 'submit', 'data-testid': 'create-invite' }, 'Create link'),
    ),
    link,
  );
}

/** Online dots and "in <thread>" in the member list, and "X is typing…" under the thread: from the roster alone. */
function renderPresence() {
  for (const dot of document.querySelectorAll<HTMLElement>('[data-presence]')) {
    const userId = dot.dataset.presence!;
    const devices = roster.filter((p) => p.userId === userId);
    const online = devices.length > 0;
    // Without a live socket the roster is stale: say "unknown", never "offline" for people who may be online.
    const state = !presenceKnown ? 'unknown' : online ? 'online' : 'offline';
    dot.className = `presence dot ${state === 'online' ? 'on' : state === 'offline' ? 'off' : 'unknown'}`;
    dot.textContent = state;
    dot.closest('li')?.setAttribute('data-online', state === 'unknown' ? 'unknown' : String(online));
    const where = document.querySelector<HTMLElement>(`[data-where="${CSS.escape(userId)}"]`);
    const threads = [...new Set(devices.map((p) => p.state.threadId).filter((t): t is string => typeof t === 'string'))];
    if (where) where.textContent = threads.length ? `in ${threads.map((t) => threadTitles.get(t) ?? 'a thread').join(', ')}` : '';
  }
  renderTyping();
}

function renderTyping() {
  const line = document.querySelector<HTMLElement>('[data-testid=typing]');
  if (!line) return;
  const typing = [
    ...new Set(roster.filter((p) => p.userId !== me?.id && p.state.typing === true && threadId !== null && p.state.threadId === threadId).map((p) => p.userId)),
  ].map(nameOf);
  line.textContent = typing.length ? `${typing.join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : '';
}

// An invite link pasted into a tab that is already open.
window.addEventListener('hashchange', () => {
  if (!inviteFromUrl()) return;
  if (me) void afterSignIn().catch((err) => toast(err instanceof Error ? err.message : String(err), 'error'));
  else renderAuth('register');
});

void boot().catch((err) => {
  console.error(err);
  renderAuth();
});
