/**
 * The subset of TOML that buildpack files use (buildpack.toml, plan.toml,
 * <layer>.toml, launch.toml): tables, arrays of tables, dotted and quoted keys,
 * basic/literal (multi-line) strings, integers, floats, booleans, arrays and
 * inline tables. Dates are kept as their source text. Anything else is a parse
 * error naming the line, so a buildpack bug surfaces as such instead of as a
 * silently empty table.
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

export class TomlError extends Error {
  constructor(message: string, line: number) {
    super(`${message} (line ${line})`);
    this.name = "TomlError";
  }
}

/** Parses TOML text into plain objects. */
export function parseToml(text: string): TomlTable {
  return new Parser(text).parse();
}

const bareKey = /[A-Za-z0-9_-]/;

class Parser {
  private pos = 0;
  private line = 1;
  private readonly src: string;
  private readonly root: TomlTable = {};
  /** Tables created by a header or implicitly; arrays of tables may not be redefined as tables. */
  private readonly defined = new Set<TomlTable>();
  private readonly arrayTables = new Set<TomlValue[]>();

  constructor(src: string) {
    this.src = src.replace(/^\uFEFF/, "");
  }

  parse(): TomlTable {
    let current = this.root;
    for (;;) {
      this.skipBlank();
      if (this.pos >= this.src.length) return this.root;
      const c = this.src[this.pos];
      if (c === "[") {
        const isArray = this.src[this.pos + 1] === "[";
        this.pos += isArray ? 2 : 1;
        this.skipSpaces();
        const path = this.key();
        this.skipSpaces();
        if (!this.src.startsWith(isArray ? "]]" : "]", this.pos)) this.fail("expected ] after table name");
        this.pos += isArray ? 2 : 1;
        current = isArray ? this.arrayTable(path) : this.table(path);
        this.endLine();
      } else {
        const path = this.key();
        this.skipSpaces();
        if (this.src[this.pos] !== "=") this.fail("expected = after key");
        this.pos++;
        this.skipSpaces();
        const value = this.value();
        this.assign(current, path, value);
        this.endLine();
      }
    }
  }

  private fail(msg: string): never {
    throw new TomlError(msg, this.line);
  }

  private table(path: string[]): TomlTable {
    let t = this.root;
    for (const [i, k] of path.entries()) {
      const v = t[k];
      if (v === undefined) {
        const n: TomlTable = {};
        t[k] = n;
        t = n;
      } else if (Array.isArray(v) && this.arrayTables.has(v)) {
        t = v[v.length - 1] as TomlTable;
      } else if (isTable(v)) {
        t = v;
      } else this.fail(`key ${path.slice(0, i + 1).join(".")} is not a table`);
    }
    if (this.defined.has(t)) this.fail(`table [${path.join(".")}] defined twice`);
    this.defined.add(t);
    return t;
  }

  private arrayTable(path: string[]): TomlTable {
    const parent = this.table(path.slice(0, -1));
    this.defined.delete(parent);
    const last = path[path.length - 1]!;
    let arr = parent[last];
    if (arr === undefined) {
      arr = [];
      parent[last] = arr;
      this.arrayTables.add(arr);
    } else if (!Array.isArray(arr) || !this.arrayTables.has(arr)) this.fail(`key ${path.join(".")} is not an array of tables`);
    const t: TomlTable = {};
    arr.push(t);
    return t;
  }

  private assign(table: TomlTable, path: string[], value: TomlValue): void {
    let t = table;
    for (const k of path.slice(0, -1)) {
      const v = t[k];
      if (v === undefined) {
        const n: TomlTable = {};
        t[k] = n;
        t = n;
      } else if (isTable(v)) t = v;
      else this.fail(`key ${k} is not a table`);
    }
    const last = path[path.length - 1]!;
    if (last in t) this.fail(`key ${path.join(".")} defined twice`);
    t[last] = value;
  }

  private key(): string[] {
    const parts: string[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === '"') parts.push(this.basicString());
      else if (c === "'") parts.push(this.literalString());
      else {
        const start = this.pos;
        while (this.pos < this.src.length && bareKey.test(this.src[this.pos]!)) this.pos++;
        if (start === this.pos) this.fail("expected a key");
        parts.push(this.src.slice(start, this.pos));
      }
      this.skipSpaces();
      if (this.src[this.pos] !== ".") return parts;
      this.pos++;
      this.skipSpaces();
    }
  }

  private value(): TomlValue {
    const c = this.src[this.pos];
    if (c === '"') return this.src.startsWith('"""', this.pos) ? this.multiBasic() : this.basicString();
    if (c === "'") return this.src.startsWith("'''", this.pos) ? this.multiLiteral() : this.literalString();
    if (c === "[") return this.array();
    if (c === "{") return this.inlineTable();
    const m = /^(true|false|[-+]?(?:inf|nan)|[0-9A-Za-z_:.+-]+(?: [0-9][0-9:.+Z-]*)?)/.exec(this.src.slice(this.pos, this.pos + 200));
    if (!m) this.fail("expected a value");
    const raw = m[1]!;
    this.pos += raw.length;
    if (raw === "true") return true;
    if (raw === "false") return false;
    if (/^[-+]?inf$/.test(raw)) return raw.startsWith("-") ? -Infinity : Infinity;
    if (/^[-+]?nan$/.test(raw)) return NaN;
    const num = raw.replace(/_/g, "");
    if (/^[-+]?(0|[1-9][0-9]*)$/.test(num)) return Number(num);
    if (/^0x[0-9a-fA-F]+$|^0o[0-7]+$|^0b[01]+$/.test(num)) return Number(num);
    if (/^[-+]?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$/.test(num)) return Number(num);
    if (/^\d{4}-\d{2}-\d{2}|^\d{2}:\d{2}/.test(raw)) return raw; // dates/times kept as text
    return this.fail(`invalid value ${JSON.stringify(raw)}`);
  }

  private array(): TomlValue[] {
    this.pos++;
    const out: TomlValue[] = [];
    for (;;) {
      this.skipBlank();
      if (this.src[this.pos] === "]") {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.skipBlank();
      if (this.src[this.pos] === ",") this.pos++;
      else if (this.src[this.pos] !== "]") this.fail("expected , or ] in array");
    }
  }

  private inlineTable(): TomlTable {
    this.pos++;
    const t: TomlTable = {};
    this.skipSpaces();
    if (this.src[this.pos] === "}") {
      this.pos++;
      return t;
    }
    for (;;) {
      this.skipSpaces();
      const path = this.key();
      this.skipSpaces();
      if (this.src[this.pos] !== "=") this.fail("expected = in inline table");
      this.pos++;
      this.skipSpaces();
      this.assign(t, path, this.value());
      this.skipSpaces();
      const c = this.src[this.pos++];
      if (c === "}") return t;
      if (c !== ",") this.fail("expected , or } in inline table");
    }
  }

  private basicString(): string {
    this.pos++;
    let out = "";
    for (;;) {
      const c = this.src[this.pos++];
      if (c === undefined || c === "\n") this.fail("unterminated string");
      if (c === '"') return out;
      out += c === "\\" ? this.escape() : c;
    }
  }

  private multiBasic(): string {
    this.pos += 3;
    if (this.src[this.pos] === "\r") this.pos++;
    if (this.src[this.pos] === "\n") {
      this.pos++;
      this.line++;
    }
    let out = "";
    for (;;) {
      if (this.pos >= this.src.length) this.fail("unterminated string");
      if (this.src.startsWith('"""', this.pos)) {
        let end = this.pos + 3;
        while (this.src[end] === '"' && end - this.pos < 5) end++; // up to two quotes may precede the closing delimiter
        out += '"'.repeat(end - this.pos - 3);
        this.pos = end;
        return out;
      }
      const c = this.src[this.pos++]!;
      if (c === "\n") this.line++;
      if (c !== "\\") {
        out += c;
        continue;
      }
      if (/^[ \t]*\r?\n/.test(this.src.slice(this.pos, this.pos + 80))) {
        // line-ending backslash: trim the newline and following whitespace
        while (/[ \t\r\n]/.test(this.src[this.pos] ?? "")) {
          if (this.src[this.pos] === "\n") this.line++;
          this.pos++;
        }
        continue;
      }
      out += this.escape();
    }
  }

  private escape(): string {
    const c = this.src[this.pos++];
    switch (c) {
      case "b":
        return "\b";
      case "t":
        return "\t";
      case "n":
        return "\n";
      case "f":
        return "\f";
      case "r":
        return "\r";
      case "e":
        return "\x1b";
      case '"':
        return '"';
      case "\\":
        return "\\";
      case "u":
      case "U": {
        const len = c === "u" ? 4 : 8;
        const hex = this.src.slice(this.pos, this.pos + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) this.fail("invalid unicode escape");
        this.pos += len;
        return String.fromCodePoint(parseInt(hex, 16));
      }
      default:
        return this.fail(`invalid escape \\${c ?? ""}`);
    }
  }

  private literalString(): string {
    const end = this.src.indexOf("'", this.pos + 1);
    const nl = this.src.indexOf("\n", this.pos + 1);
    if (end < 0 || (nl >= 0 && nl < end)) this.fail("unterminated string");
    const s = this.src.slice(this.pos + 1, end);
    this.pos = end + 1;
    return s;
  }

  private multiLiteral(): string {
    let start = this.pos + 3;
    if (this.src[start] === "\r") start++;
    if (this.src[start] === "\n") start++;
    let end = this.src.indexOf("'''", start);
    if (end < 0) this.fail("unterminated string");
    while (this.src[end + 3] === "'" && end + 3 - start < this.src.length) end++;
    const s = this.src.slice(start, end);
    this.line += (this.src.slice(this.pos, end + 3).match(/\n/g) ?? []).length;
    this.pos = end + 3;
    return s;
  }

  private skipSpaces(): void {
    while (this.src[this.pos] === " " || this.src[this.pos] === "\t") this.pos++;
  }

  /** Skips whitespace, newlines and comments. */
  private skipBlank(): void {
    for (;;) {
      const c = this.src[this.pos];
      if (c === " " || c === "\t" || c === "\r") this.pos++;
      else if (c === "\n") {
        this.pos++;
        this.line++;
      } else if (c === "#") {
        while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
      } else return;
    }
  }

  private endLine(): void {
    this.skipSpaces();
    if (this.src[this.pos] === "#") while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
    if (this.src[this.pos] === "\r") this.pos++;
    if (this.pos < this.src.length && this.src[this.pos] !== "\n") this.fail("expected end of line");
  }
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A TOML table, if `v` is one; else an empty one. */
export function asTable(v: TomlValue | undefined): TomlTable {
  return isTable(v) ? v : {};
}

/** Serializes plain objects as TOML (strings, numbers, booleans, arrays, nested tables, arrays of tables). */
export function stringifyToml(table: TomlTable): string {
  const lines: string[] = [];
  emit(table, [], lines);
  return lines.join("\n") + "\n";
}

function emit(table: TomlTable, path: string[], lines: string[]): void {
  const subTables: [string, TomlTable][] = [];
  const arrayTables: [string, TomlTable[]][] = [];
  for (const [k, v] of Object.entries(table)) {
    if (v === undefined) continue;
    if (isTable(v)) subTables.push([k, v]);
    else if (Array.isArray(v) && v.length > 0 && v.every(isTable)) arrayTables.push([k, v as TomlTable[]]);
    else lines.push(`${fmtKey(k)} = ${fmtValue(v)}`);
  }
  for (const [k, t] of subTables) {
    const p = [...path, k];
    lines.push("", `[${p.map(fmtKey).join(".")}]`);
    emit(t, p, lines);
  }
  for (const [k, ts] of arrayTables) {
    const p = [...path, k];
    for (const t of ts) {
      lines.push("", `[[${p.map(fmtKey).join(".")}]]`);
      emit(t, p, lines);
    }
  }
}

function fmtKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function fmtValue(v: TomlValue): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(fmtValue).join(", ")}]`;
  return `{ ${Object.entries(v)
    .map(([k, x]) => `${fmtKey(k)} = ${fmtValue(x)}`)
    .join(", ")} }`;
}
