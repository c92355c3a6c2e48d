/**
 * Typed rows of the synced tables: the wire payloads (docs/sync.md "Guarantees", validation),
 * snake_case, timestamps in epoch seconds. The required fields are the server's. There is no
 * catch-all column type, so a misspelled column is a compile error; the server still passes
 * other columns through, and an app declares its own by merging into these interfaces
 * (docs/client.md "Your own columns"):
 *
 *   declare module '@or3-edge/client' { interface ThreadRow { system_prompt_id?: string | null } }
 *
 * `clock` is set by the SDK on every write, so an app may leave it out.
 *
 *   const thread: ThreadRow | undefined = await ws.db.threads.get(id);
 */

/** A boolean as OR3 clients store it: `true`/`false` or `1`/`0`. */
export type Flag = boolean | 0 | 1;

interface Synced {
  created_at: number;
  updated_at: number;
  /** Bumped by the SDK on every local write (past every revision it knows). */
  clock?: number;
}

export interface ThreadRow extends Synced {
  id: string;
  status: string;
  pinned: Flag;
  deleted: Flag;
  title?: string;
  last_message_at?: number;
  parent_thread_id?: string | null;
  project_id?: string | null;
}

export interface MessageRow extends Synced {
  id: string;
  thread_id: string;
  role: string;
  /** Messages are ordered by (index, order_key); both survive a round trip unchanged. */
  index: number;
  order_key: string;
  deleted: Flag;
  data?: string;
  /** A JSON string of blob hashes (`sha256:<hex>`), e.g. from `ws.upload()`. */
  file_hashes?: string;
}

export interface ProjectRow extends Synced {
  id: string;
  name: string;
  deleted: Flag;
}

export interface PostRow extends Synced {
  id: string;
  title: string;
  content: string;
  post_type: string;
  deleted: Flag;
  file_hashes?: string;
}

export interface KvRow extends Synced {
  id: string;
  name: string;
  value?: string | null;
  deleted?: Flag;
}

export interface FileMetaRow extends Synced {
  /** The blob's hash (`sha256:<hex>`): this table's key. */
  hash: string;
  deleted: Flag;
  name?: string;
  kind?: 'image' | 'pdf';
  mime_type?: string;
  size_bytes?: number;
  /** Derived by the server from live messages' and posts' `file_hashes`. */
  ref_count?: number;
  /** Where the bytes are, set after the upload's commit (OR3's columns). */
  storage_id?: string;
  storage_provider_id?: string;
}

export interface NotificationRow extends Synced {
  id: string;
  /** Set by the server to the writer: a user reads and writes only their own. */
  user_id: string;
  type: string;
  title: string;
  deleted: Flag;
}

/** Each synced table's row type: `ws.db.<table>` is a Dexie `Table<Or3Tables[table], string>`. */
export interface Or3Tables {
  threads: ThreadRow;
  messages: MessageRow;
  projects: ProjectRow;
  posts: PostRow;
  kv: KvRow;
  file_meta: FileMetaRow;
  notifications: NotificationRow;
}
