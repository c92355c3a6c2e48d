/** A membership change's outcome as the HTTP answer the contract asks for (workspace, OR3 and deployment admin routes alike). */
import { conflict, notFound } from '../errors';
import type { MemberChange } from '../workspace-records/store';

/** Maps a membership change outcome to the response the contract asks for. */
export function memberChangeResult(result: MemberChange) {
  if (result === 'last_owner') throw conflict('A workspace must keep at least one owner', 'last_owner');
  if (result === 'not_member') throw notFound('That user is not a member of this workspace', 'not_member');
  if (result === 'no_user') throw notFound('No such user', 'no_user');
}
