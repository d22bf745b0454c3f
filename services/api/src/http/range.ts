import type { Context } from "hono";
import { BadRequest } from "@berth/core";

/**
 * Heroku's Range pagination: `Range: <field> [start]..[end][; order=asc|desc, max=N]`.
 * Answers 206 with `Next-Range` when more items follow, 200 otherwise.
 */
export interface RangeSpec {
  field: string;
  start?: string;
  /** `]start..`: the start value itself is excluded. */
  exclusive?: boolean;
  order: "asc" | "desc";
  max: number;
}

const DEFAULT_MAX = 200;
const LIMIT = 1000;

export function parseRange(header: string | undefined, fields: readonly string[], defaultField: string): RangeSpec {
  if (!header) return { field: defaultField, order: "asc", max: DEFAULT_MAX };
  const [head = "", options = ""] = header.split(";", 2);
  const m = /^\s*([a-z_]+)\s*(\]?)([^.]*)\.\.(.*)$/.exec(head);
  if (!m) throw new BadRequest(`Invalid Range header: ${header}`);
  const field = m[1]!;
  if (!fields.includes(field)) throw new BadRequest(`Invalid Range header: cannot sort by ${field}; use one of ${fields.join(", ")}.`);
  let order: "asc" | "desc" = "asc";
  let max = DEFAULT_MAX;
  for (const part of options.split(",")) {
    const [k, v] = part.split("=").map((s) => s.trim());
    if (!k) continue;
    if (k === "order" && (v === "asc" || v === "desc")) order = v;
    else if (k === "max" && v && /^\d+$/.test(v)) max = Math.min(LIMIT, Math.max(1, Number(v)));
    else throw new BadRequest(`Invalid Range header option: ${part.trim()}`);
  }
  const start = m[3]!.trim() || undefined;
  return start === undefined ? { field, order, max } : { field, start, exclusive: m[2] === "]", order, max };
}

/** Sorts, slices and answers a list per the Range header. */
export function paginate<T extends object>(
  c: Context,
  items: T[],
  opts: { fields: readonly (keyof T & string)[]; defaultField: keyof T & string; key?: (item: T, field: string) => string },
): Response {
  const spec = parseRange(c.req.header("Range"), opts.fields, opts.defaultField);
  const keyOf = opts.key ?? ((item: T, field: string) => String((item as Record<string, unknown>)[field] ?? ""));
  const numeric = items.every((i) => typeof (i as Record<string, unknown>)[spec.field] === "number");
  const cmp = (a: T, b: T) => {
    const ka = keyOf(a, spec.field);
    const kb = keyOf(b, spec.field);
    const r = numeric ? Number(ka) - Number(kb) : ka < kb ? -1 : ka > kb ? 1 : 0;
    return spec.order === "asc" ? r : -r;
  };
  const sorted = [...items].sort(cmp);
  let from = 0;
  if (spec.start !== undefined) {
    const startKey = spec.start;
    from = sorted.findIndex((i) => {
      const k = keyOf(i, spec.field);
      const r = numeric ? Number(k) - Number(startKey) : k < startKey ? -1 : k > startKey ? 1 : 0;
      const after = spec.order === "asc" ? r : -r;
      return spec.exclusive ? after > 0 : after >= 0;
    });
    if (from < 0) from = sorted.length;
  }
  const page = sorted.slice(from, from + spec.max);
  const next = sorted[from + spec.max];
  if (next) {
    c.header("Next-Range", `${spec.field} ${keyOf(next, spec.field)}..; order=${spec.order}, max=${spec.max}`);
    return c.json(page, 206);
  }
  return c.json(page, 200);
}
