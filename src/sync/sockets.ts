/**
 * Realtime sockets outlive the request that opened them, so ending a session must close them
 * too: on sign-out the sockets of that session, on a password change all of the user's sockets
 * (the changing session's too: they carry the old token version; the SDK re-dials). A user's
 * sockets can be in any workspace they belong to, so each of those objects is asked.
 */
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import { memberWorkspaceIds } from '../workspaces/store';

/**
 * Never throws: the session change it follows has already happened, and must be answered as
 * such. A failure is logged; the sockets then end when their session is next checked.
 */
export async function closeSessionSockets(env: Bindings, input: { userId: string; sessionId?: string }): Promise<number> {
  try {
    return await closeAll(env, input);
  } catch (err) {
    logEvent('warn', 'socket_close_failed', { message: err instanceof Error ? err.message : String(err) });
    return 0;
  }
}

async function closeAll(env: Bindings, input: { userId: string; sessionId?: string }): Promise<number> {
  const workspaceIds = await memberWorkspaceIds(env.DB, input.userId);
  const counts = await Promise.all(
    workspaceIds.map((workspaceId) =>
      env.WORKSPACE.getByName(workspaceId)
        .closeSessionSockets(input)
        .catch((err: unknown) => {
          logEvent('warn', 'socket_close_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
          return 0;
        }),
    ),
  );
  return counts.reduce((a, b) => a + b, 0);
}
