import { sql, type Kysely } from "kysely";
import { Migrator, type Migration } from "kysely/migration";

/**
 * Migrations are code, in order, never edited once shipped: add a new entry instead.
 * The data model is described in docs/ARCHITECTURE.md.
 */
const migrations: Record<string, Migration> = {
  "0001_control_plane": {
    async up(db: Kysely<any>) {
      await sql`
        CREATE TABLE users (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          email text NOT NULL,
          name text,
          password_hash text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX users_email_key ON users (lower(email));

        -- Lucia-style sessions: the id is the SHA-256 of the cookie token.
        CREATE TABLE sessions (
          id text PRIMARY KEY,
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          expires_at timestamptz NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX sessions_user ON sessions (user_id);

        -- API tokens (Heroku's oauth authorizations). Only the SHA-256 of a token is kept.
        CREATE TABLE api_tokens (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          token_hash text NOT NULL UNIQUE,
          description text NOT NULL DEFAULT '',
          scope text[] NOT NULL DEFAULT ARRAY['global'],
          expires_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX api_tokens_user ON api_tokens (user_id);

        -- Every app belongs to a team. Each user has one personal team (personal = true),
        -- which the API shows as a personal app (team: null, owner: the user).
        CREATE TABLE teams (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          name text NOT NULL UNIQUE,
          personal boolean NOT NULL DEFAULT false,
          plan text NOT NULL DEFAULT 'standard',
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE team_members (
          team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          role text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (team_id, user_id)
        );
        CREATE INDEX team_members_user ON team_members (user_id);

        CREATE TABLE apps (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          name text NOT NULL UNIQUE,
          team_id uuid NOT NULL REFERENCES teams(id),
          owner_id uuid NOT NULL REFERENCES users(id),
          maintenance boolean NOT NULL DEFAULT false,
          stack text NOT NULL DEFAULT 'berth-24',
          region text NOT NULL DEFAULT 'local',
          min_instances integer NOT NULL DEFAULT 0 CHECK (min_instances >= 0),
          max_instances integer NOT NULL DEFAULT 10 CHECK (max_instances >= 1),
          target_concurrency integer NOT NULL DEFAULT 50 CHECK (target_concurrency >= 1),
          idle_freeze_seconds integer NOT NULL DEFAULT 30,
          idle_stop_seconds integer NOT NULL DEFAULT 900,
          request_timeout_seconds integer NOT NULL DEFAULT 30,
          health_check_path text,
          config_version integer NOT NULL DEFAULT 0,
          released_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX apps_team ON apps (team_id);

        -- Config vars: one immutable, encrypted snapshot per version (AES-256-GCM).
        CREATE TABLE config_versions (
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          version integer NOT NULL,
          key_id text NOT NULL,
          nonce bytea NOT NULL,
          ciphertext bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (app_id, version)
        );

        CREATE TABLE domains (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          hostname text NOT NULL UNIQUE,
          kind text NOT NULL CHECK (kind IN ('heroku', 'custom')),
          cname text,
          status text NOT NULL DEFAULT 'pending',
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX domains_app ON domains (app_id);

        CREATE TABLE formations (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          type text NOT NULL,
          quantity integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
          size text NOT NULL DEFAULT 'basic',
          command text NOT NULL DEFAULT '',
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (app_id, type)
        );

        CREATE TABLE sources (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
          blob_key text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE builds (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          team_id uuid NOT NULL REFERENCES teams(id),
          user_id uuid NOT NULL REFERENCES users(id),
          status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
          source_url text NOT NULL,
          source_version text,
          source_checksum text,
          buildpacks jsonb,
          image jsonb,
          processes jsonb,
          failure text,
          cancel_requested boolean NOT NULL DEFAULT false,
          claimed_by text,
          heartbeat_at timestamptz,
          attempts integer NOT NULL DEFAULT 0,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX builds_app ON builds (app_id, created_at DESC);
        CREATE INDEX builds_pending ON builds (created_at) WHERE status = 'pending';

        -- Releases are a ledger: rows are inserted, never updated. Outcomes are a
        -- second ledger; a release's status is its latest outcome (pending when none).
        CREATE TABLE releases (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          version integer NOT NULL,
          build_id uuid REFERENCES builds(id),
          config_version integer NOT NULL,
          description text NOT NULL,
          user_id uuid REFERENCES users(id),
          created_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (app_id, version)
        );
        CREATE TABLE release_outcomes (
          release_id uuid NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
          status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
          reason text,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (release_id)
        );

        CREATE TABLE cold_starts (
          id bigserial PRIMARY KEY,
          app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
          tier text NOT NULL,
          duration_ms integer NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX cold_starts_app ON cold_starts (app_id, created_at DESC);
      `.execute(db);
    },
  },
  "0002_build_logs_and_events": {
    async up(db: Kysely<any>) {
      await sql`
        -- Build output, line by line: streamed live (NOTIFY) and replayed afterwards.
        CREATE TABLE build_logs (
          build_id uuid NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
          seq integer NOT NULL,
          line text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (build_id, seq)
        );
        ALTER TABLE builds ADD COLUMN started_at timestamptz;
        ALTER TABLE builds ADD COLUMN finished_at timestamptz;
        ALTER TABLE builds ADD COLUMN source_blob_key text;
        CREATE INDEX builds_running ON builds (heartbeat_at) WHERE status = 'pending' AND claimed_by IS NOT NULL;
      `.execute(db);
    },
  },
};

/** Applies every pending migration; throws with the failing migration's name. */
export async function migrate(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error");
    throw new Error(`database migration ${failed?.migrationName ?? "?"} failed: ${String(error)}`, { cause: error });
  }
}
