/**
 * After a D1 write that changes who may do what in a workspace (a member added, re-roled or
 * removed, the workspace deleted or restored), the workspace's object is told to drop what it
 * cached (src/workspace-db/access.ts), so the change applies to the very next request. Never
 * throws: the write has happened and must be answered as such; if the message is lost, the
 * cached fact expires within OR3_AUTH_CACHE_TTL_SECONDS anyway.
 */
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';

export async function forgetAccess(env: Bindings, workspaceId: string, input: { userId?: string } = {}): Promise<void> {
  try {
    await env.WORKSPACE.getByName(workspaceId).forget(input);
  } catch (err) {
    logEvent('warn', 'access_invalidation_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
  }
}
