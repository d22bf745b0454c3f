import type { ColumnType, Generated } from "kysely";

type Timestamp = Date;
type Json<T> = ColumnType<T, string, string>;

export interface UsersTable {
  id: Generated<string>;
  email: string;
  name: string | null;
  password_hash: string;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface SessionsTable {
  id: string;
  user_id: string;
  expires_at: Timestamp;
  created_at: Generated<Timestamp>;
}
export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  token_hash: string;
  description: Generated<string>;
  scope: Generated<string[]>;
  expires_at: Timestamp | null;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface TeamsTable {
  id: Generated<string>;
  name: string;
  personal: Generated<boolean>;
  plan: Generated<string>;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export type Role = "admin" | "member" | "viewer";
export interface TeamMembersTable {
  team_id: string;
  user_id: string;
  role: Role;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface AppsTable {
  id: Generated<string>;
  name: string;
  team_id: string;
  owner_id: string;
  maintenance: Generated<boolean>;
  stack: Generated<string>;
  region: Generated<string>;
  min_instances: Generated<number>;
  max_instances: Generated<number>;
  target_concurrency: Generated<number>;
  idle_freeze_seconds: Generated<number>;
  idle_stop_seconds: Generated<number>;
  request_timeout_seconds: Generated<number>;
  health_check_path: string | null;
  config_version: Generated<number>;
  released_at: Timestamp | null;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface ConfigVersionsTable {
  app_id: string;
  version: number;
  key_id: string;
  nonce: Buffer;
  ciphertext: Buffer;
  created_at: Generated<Timestamp>;
}
export interface DomainsTable {
  id: Generated<string>;
  app_id: string;
  hostname: string;
  kind: "heroku" | "custom";
  cname: string | null;
  status: Generated<string>;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface FormationsTable {
  id: Generated<string>;
  app_id: string;
  type: string;
  quantity: Generated<number>;
  size: Generated<string>;
  command: Generated<string>;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface SourcesTable {
  id: Generated<string>;
  user_id: string;
  blob_key: string;
  created_at: Generated<Timestamp>;
}
export type BuildStatus = "pending" | "succeeded" | "failed";
export interface BuildsTable {
  id: Generated<string>;
  app_id: string;
  team_id: string;
  user_id: string;
  status: Generated<BuildStatus>;
  source_url: string;
  source_version: string | null;
  source_checksum: string | null;
  buildpacks: Json<unknown> | null;
  image: Json<unknown> | null;
  processes: Json<unknown> | null;
  failure: string | null;
  cancel_requested: Generated<boolean>;
  claimed_by: string | null;
  heartbeat_at: Timestamp | null;
  attempts: Generated<number>;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  /** Set when the source lives in Berth's blob store. */
  source_blob_key: string | null;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
}
export interface BuildLogsTable {
  build_id: string;
  seq: number;
  line: string;
  created_at: Generated<Timestamp>;
}
export interface ReleasesTable {
  id: Generated<string>;
  app_id: string;
  version: number;
  build_id: string | null;
  config_version: number;
  description: string;
  user_id: string | null;
  created_at: Generated<Timestamp>;
}
export interface ReleaseOutcomesTable {
  release_id: string;
  status: "succeeded" | "failed";
  reason: string | null;
  created_at: Generated<Timestamp>;
}
export interface ColdStartsTable {
  id: Generated<string>;
  app_id: string;
  tier: string;
  duration_ms: number;
  created_at: Generated<Timestamp>;
}

export interface Database {
  users: UsersTable;
  sessions: SessionsTable;
  api_tokens: ApiTokensTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  apps: AppsTable;
  config_versions: ConfigVersionsTable;
  domains: DomainsTable;
  formations: FormationsTable;
  sources: SourcesTable;
  builds: BuildsTable;
  releases: ReleasesTable;
  release_outcomes: ReleaseOutcomesTable;
  cold_starts: ColdStartsTable;
  build_logs: BuildLogsTable;
}
