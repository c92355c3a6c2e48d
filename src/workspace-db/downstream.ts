/**
 * Every message the server sends on a workspace socket, one builder each (the types:
 * protocol/socket.ts `Downstream`; docs/api.md "Socket messages"). Payloads and pages arrive
 * here as JSON text already (SQLite builds pull pages, presence keeps states as text), so the
 * builders splice that text rather than parse and serialize it again; everything else goes
 * through `JSON.stringify`. Each builder's parameters name the fields of its `Downstream` variant.
 */
import type { Downstream, PushOpResult, SocketError } from '../../protocol/socket';

type Of<T extends Downstream['type']> = Extract<Downstream, { type: T }>;
/** A message typed as its variant: a builder that drifts from protocol/socket.ts stops compiling. */
const encode = <T extends Downstream['type']>(message: Of<T>) => JSON.stringify(message);
const j = JSON.stringify;

export const hello = (serverVersion: number) => encode<'hello'>({ type: 'hello', serverVersion });

/** A poke without changes: the socket pulls (or waits for the next poke that starts at its cursor). */
export const poke = (serverVersion: number) => encode<'poke'>({ type: 'poke', serverVersion });

/** A poke with its commit's changes (`changesJson`: a pull page's `changes` array as text). */
export const pokeWithChanges = (serverVersion: number, fromVersion: number, changesJson: string) =>
  `{"type":"poke","serverVersion":${serverVersion},"fromVersion":${fromVersion},"changes":${changesJson}}`;

/** A device's presence state (`stateJson`: the state as text, as the socket's attachment keeps it). */
export const presence = (userId: string, deviceId: string, stateJson: string) =>
  `{"type":"presence","userId":${j(userId)},"deviceId":${j(deviceId)},"state":${stateJson}}`;

export const presenceLeave = (userId: string, deviceId: string) => encode<'presence-leave'>({ type: 'presence-leave', userId, deviceId });

export const presenceRoster = (entries: { userId: string; deviceId: string; state: string }[]) =>
  `{"type":"presence-roster","entries":[${entries.map((e) => `{"userId":${j(e.userId)},"deviceId":${j(e.deviceId)},"state":${e.state}}`).join(',')}]}`;

export const pushResult = (id: string, results: PushOpResult[], serverVersion: number) =>
  encode<'push-result'>({ type: 'push-result', id, results, serverVersion });

/** One page of a pull stream (`changesJson`: the page's changes as SQLite built them). */
export function changes(
  id: string,
  page: { changesJson: string; nextCursor: number; hasMore: boolean; oldestRetainedVersion: number; requiresSnapshot: boolean },
): string {
  const { changesJson, ...rest } = page;
  const tail: Omit<Of<'changes'>, 'type' | 'id' | 'changes'> = {
    nextCursor: rest.nextCursor,
    hasMore: rest.hasMore,
    oldestRetainedVersion: rest.oldestRetainedVersion,
    requiresSnapshot: rest.requiresSnapshot,
  };
  return `{"type":"changes","id":${j(id)},"changes":${changesJson},${j(tail).slice(1)}`;
}

export const cursorResult = (id: string) => encode<'cursor-result'>({ type: 'cursor-result', id });

/**
 * A refused request, with its HTTP status (`id`: the request's, null when it could not be read;
 * `undefined` for presence, whose messages carry none). The code travels as `error`.
 */
export function error(id: string | null | undefined, failure: SocketError): string {
  return encode<'error'>({
    type: 'error',
    ...(id !== undefined ? { id } : {}),
    status: failure.status,
    error: failure.code,
    message: failure.message,
    ...(failure.retryAfter ? { retryAfter: failure.retryAfter } : {}),
  });
}
