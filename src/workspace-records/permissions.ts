/**
 * Roles and what they may do (docs/auth.md "Authorization"). Deployment admin is a user flag, not a role: it grants
 * `admin.access` to the admin API, never implicit membership of a workspace.
 */
export const ROLES = ['owner', 'editor', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export type Permission = 'read' | 'write' | 'settings.manage' | 'users.manage';

const GRANTS: Record<Role, readonly Permission[]> = {
  owner: ['read', 'write', 'settings.manage', 'users.manage'],
  editor: ['read', 'write'],
  viewer: ['read'],
};

export function can(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}
