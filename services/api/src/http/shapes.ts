/** Heroku Platform API v3 resource shapes. One place, so every route answers alike. */
import type { AppRecord, TeamRecord } from "../domain/access.ts";

const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString().replace(/\.\d{3}Z$/, "Z") : null);

export function accountShape(u: { id: string; email: string; name: string | null; created_at: Date; updated_at: Date }) {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    allow_tracking: false,
    beta: false,
    created_at: iso(u.created_at),
    updated_at: iso(u.updated_at),
    last_login: null,
    default_organization: null,
    default_team: null,
    delinquent_at: null,
    federated: false,
    identity_provider: null,
    sms_number: null,
    suspended_at: null,
    two_factor_authentication: false,
    verified: true,
  };
}

export function authorizationShape(
  t: { id: string; description: string; scope: string[]; expires_at: Date | null; created_at: Date; updated_at: Date },
  user: { id: string; email: string; name: string | null },
  token: string | null,
  now: number,
) {
  return {
    id: t.id,
    access_token: {
      id: t.id,
      token,
      expires_in: t.expires_at ? Math.max(0, Math.floor((t.expires_at.getTime() - now) / 1000)) : null,
    },
    client: null,
    description: t.description,
    grant: null,
    refresh_token: null,
    session: null,
    scope: t.scope,
    user: { id: user.id, email: user.email, full_name: user.name },
    created_at: iso(t.created_at),
    updated_at: iso(t.updated_at),
  };
}

export function appShape(a: AppRecord, s: { baseDomain: string; publicUrl: string; webScheme: string }) {
  const team = a.team_personal ? null : { id: a.team_id, name: a.team_name };
  return {
    id: a.id,
    name: a.name,
    acm: false,
    archived_at: null,
    buildpack_provided_description: null,
    build_stack: { id: a.stack, name: a.stack },
    created_at: iso(a.created_at),
    git_url: `${s.publicUrl}/${a.name}.git`,
    internal_routing: false,
    maintenance: a.maintenance,
    organization: team,
    owner: { id: a.owner_id, email: a.owner_email },
    region: { id: a.region, name: a.region },
    released_at: iso(a.released_at),
    repo_size: null,
    slug_size: null,
    space: null,
    stack: { id: a.stack, name: a.stack },
    team,
    updated_at: iso(a.updated_at),
    web_url: `${s.webScheme}://${a.name}.${s.baseDomain}/`,
    // Berth's serverless settings (not in Heroku's schema; clients ignore unknown fields).
    scaling: {
      min_instances: a.min_instances,
      max_instances: a.max_instances,
      target_concurrency: a.target_concurrency,
      idle_freeze_seconds: a.idle_freeze_seconds,
      idle_stop_seconds: a.idle_stop_seconds,
    },
    request_timeout_seconds: a.request_timeout_seconds,
    health_check_path: a.health_check_path,
  };
}

export function teamShape(t: TeamRecord) {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    type: "team",
    default: false,
    credit_card_collections: false,
    enterprise_account: null,
    identity_provider: null,
    membership_limit: null,
    provisioned_licenses: false,
    created_at: iso(t.created_at),
    updated_at: iso(t.updated_at),
  };
}

export function memberShape(m: { user_id: string; email: string; name: string | null; role: string; created_at: Date; updated_at: Date }) {
  return {
    id: m.user_id,
    email: m.email,
    role: m.role,
    federated: false,
    two_factor_authentication: false,
    user: { id: m.user_id, email: m.email, name: m.name },
    created_at: iso(m.created_at),
    updated_at: iso(m.updated_at),
  };
}

export function domainShape(d: { id: string; hostname: string; kind: string; cname: string | null; status: string; created_at: Date; updated_at: Date }, app: { id: string; name: string }) {
  return {
    id: d.id,
    app,
    hostname: d.hostname,
    kind: d.kind,
    cname: d.cname,
    status: d.status,
    acm_status: null,
    acm_status_reason: null,
    sni_endpoint: null,
    created_at: iso(d.created_at),
    updated_at: iso(d.updated_at),
  };
}

export function formationShape(f: { id: string; type: string; quantity: number; size: string; command: string; created_at: Date; updated_at: Date }, app: { id: string; name: string }) {
  return {
    id: f.id,
    app,
    command: f.command,
    quantity: f.quantity,
    size: f.size,
    type: f.type,
    created_at: iso(f.created_at),
    updated_at: iso(f.updated_at),
  };
}

export { iso };
