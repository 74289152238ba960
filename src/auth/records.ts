/** The records the auth services keep in the AuthStore, one interface per kind. */
import type { RepositoryPattern } from './patterns.js';
import type { RoleName } from './roles.js';

export interface AdminRecord {
  readonly username: string;
  readonly passwordHash: string;
  readonly enabled: boolean;
  readonly createdAt: number;
  readonly disabledAt?: number;
}

export type PasswordName = 'password1' | 'password2';

export interface TokenPassword {
  readonly name: PasswordName;
  readonly hash: string;
  readonly createdAt: number;
  readonly expiresAt?: number;
}

export interface TokenRecord {
  readonly name: string;
  readonly scopeMap: string;
  readonly status: 'enabled' | 'disabled';
  readonly passwords: readonly TokenPassword[];
  readonly createdAt: number;
}

export interface ServiceRecord {
  readonly name: string;
  readonly description: string;
  readonly createdAt: number;
}

export interface ScopeMapRecord {
  readonly name: string;
  readonly description: string;
  readonly actions: readonly string[];
  readonly createdAt: number;
}

export interface AssignmentConditions {
  /** the request must come from one of these networks (IPv4/IPv6 CIDR) */
  readonly sourceCidrs?: readonly string[];
  /** the identity's `amr` claim must include all of these (e.g. `mfa`) */
  readonly requiredAmr?: readonly string[];
  /** not valid before / after (ms since epoch) */
  readonly notBefore?: number;
  readonly notAfter?: number;
}

export interface RoleAssignmentRecord {
  readonly id: string;
  /** principal id: `service:<name>`, `user:<sub>@<issuer>`, `token:<name>`, `admin:<name>` */
  readonly principal: string;
  readonly role: RoleName;
  /** `*` (registry-wide), a repository, or `<prefix>/*` */
  readonly scope: RepositoryPattern;
  readonly conditions?: AssignmentConditions;
  readonly expiresAt?: number;
  readonly createdAt: number;
  readonly createdBy: string;
  /** set when a just-in-time access request created it */
  readonly accessRequest?: string;
}

export interface FederatedCredentialRecord {
  readonly name: string;
  /** the service identity it signs in as */
  readonly service: string;
  readonly issuer: string;
  readonly subject: string;
  readonly audience: string;
  readonly createdAt: number;
}

export interface RefreshTokenRecord {
  readonly jti: string;
  readonly sub: string;
  readonly expiresAt: number;
  readonly revoked: boolean;
}

export interface AccessRequestRecord {
  readonly id: string;
  readonly principal: string;
  readonly role: RoleName;
  readonly scope: RepositoryPattern;
  readonly durationSeconds: number;
  readonly justification: string;
  readonly status: 'pending' | 'approved' | 'denied' | 'expired';
  readonly createdAt: number;
  readonly decidedAt?: number;
  readonly decidedBy?: string;
  /** why it was denied, when the Owner said */
  readonly reason?: string;
  /** when approved: the role assignment it created and when that ends */
  readonly assignment?: string;
  readonly expiresAt?: number;
}
