/**
 * The one error family of Berth. Domain code throws these; each edge (the API's
 * error handler, the git receiver, the router) maps them to its own wire format in
 * one place. `id` values are Heroku Platform API error ids.
 */
export type ErrorId =
  | "bad_request"
  | "invalid_params"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "rate_limit"
  | "quota_exceeded"
  | "verification_needed"
  | "unavailable"
  | "build_failed"
  | "internal_error";

const statusById: Record<ErrorId, number> = {
  bad_request: 400,
  invalid_params: 422,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  rate_limit: 429,
  quota_exceeded: 402,
  verification_needed: 402,
  unavailable: 503,
  build_failed: 422,
  internal_error: 500,
};

export class BerthError extends Error {
  readonly id: ErrorId;
  /** Whether the user caused it (bad input, crashed app) rather than the platform. */
  readonly userFault: boolean;
  constructor(id: ErrorId, message: string, options?: { cause?: unknown; userFault?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BerthError";
    this.id = id;
    this.userFault = options?.userFault ?? (id !== "internal_error" && id !== "unavailable");
  }
  get status(): number {
    return statusById[this.id];
  }
}

export class NotFound extends BerthError {
  constructor(what: string) {
    super("not_found", `Couldn't find that ${what}.`);
  }
}
export class Invalid extends BerthError {
  constructor(message: string) {
    super("invalid_params", message);
  }
}
export class BadRequest extends BerthError {
  constructor(message: string) {
    super("bad_request", message);
  }
}
export class Unauthorized extends BerthError {
  constructor(message = "Invalid credentials provided.") {
    super("unauthorized", message);
  }
}
export class Forbidden extends BerthError {
  constructor(message = "You do not have access to this resource.") {
    super("forbidden", message);
  }
}
export class Conflict extends BerthError {
  constructor(message: string) {
    super("conflict", message);
  }
}
export class TooLarge extends BerthError {
  constructor(message: string) {
    super("payload_too_large", message);
  }
}
export class RateLimited extends BerthError {
  constructor(message = "Your account reached the API rate limit. Please wait a few minutes before making new requests.") {
    super("rate_limit", message);
  }
}
export class QuotaExceeded extends BerthError {
  constructor(message: string) {
    super("quota_exceeded", message);
  }
}
/** A platform dependency (database, registry, cluster) is down: not the user's fault. */
export class Unavailable extends BerthError {
  constructor(message: string, cause?: unknown) {
    super("unavailable", message, { cause, userFault: false });
  }
}

export function isBerthError(e: unknown): e is BerthError {
  return e instanceof BerthError;
}
