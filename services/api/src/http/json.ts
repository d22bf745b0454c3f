import type { Context } from "hono";
import { z } from "zod";
import { BadRequest, Invalid } from "@berth/core";

/** Reads and validates a JSON body. Malformed JSON → 400; schema mismatch → 422 naming the field. */
export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let body: unknown = {};
  if (text.trim() !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      throw new BadRequest("Request body is not valid JSON.");
    }
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join(".") : "body";
    throw new Invalid(`Invalid ${where}: ${issue.message}`);
  }
  return parsed.data;
}
