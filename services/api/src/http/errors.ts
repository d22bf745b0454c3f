import type { Context } from "hono";
import { BerthError, type Logger } from "@berth/core";

/**
 * The one place where errors become HTTP. BerthErrors carry a Heroku error id and
 * a message meant for the user; anything else is a platform fault: logged with the
 * request id, answered without internals.
 */
export function errorResponse(err: unknown, c: Context, logger: Logger): Response {
  const requestId = c.res.headers.get("Request-Id") ?? c.get("requestId") ?? "";
  if (err instanceof BerthError) {
    if (!err.userFault) logger.warn("platform dependency failed", { request_id: requestId, id: err.id, err: err.cause ?? err.message });
    return c.json({ id: err.id, message: err.message }, err.status as 400);
  }
  logger.error("unhandled error", { request_id: requestId, err });
  return c.json(
    { id: "internal_error", message: `An internal error occurred. Request id: ${requestId}` },
    500,
  );
}
