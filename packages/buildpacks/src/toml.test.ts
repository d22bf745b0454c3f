import { describe, it, expect } from "vitest";
import { parseToml, stringifyToml, TomlError } from "./toml.ts";

describe("toml", () => {
  it("parses the shapes buildpack files use", () => {
    const t = parseToml(`# comment
api = "0.10"
[buildpack]
id = "berth/nodejs"   # trailing comment
"quoted key" = 'literal \\n'
dotted.key = 1_000
[[processes]]
type = "web"
command = ["node", "server.js"]
default = true
[[processes]]
type = "worker"
args = [
  "a",
  "b", # multi-line array
]
[metadata]
inline = { a = 1.5, b = false }
multi = """
line1
line2"""
neg = -3
date = 1979-05-27T07:32:00Z
`);
    expect(t).toEqual({
      api: "0.10",
      buildpack: { id: "berth/nodejs", "quoted key": "literal \\n", dotted: { key: 1000 } },
      processes: [
        { type: "web", command: ["node", "server.js"], default: true },
        { type: "worker", args: ["a", "b"] },
      ],
      metadata: { inline: { a: 1.5, b: false }, multi: "line1\nline2", neg: -3, date: "1979-05-27T07:32:00Z" },
    });
  });

  it("round-trips through stringifyToml", () => {
    const v = { types: { launch: true, cache: false }, metadata: { digest: 'a"b\\c', n: 3, list: ["x", "y"] }, entries: [{ name: "node", metadata: { version: "24.x" } }] };
    expect(parseToml(stringifyToml(v))).toEqual(v);
  });

  it("names the line of a syntax error", () => {
    expect(() => parseToml('a = "x"\nb = \n')).toThrow(TomlError);
    expect(() => parseToml('a = "x"\nb = \n')).toThrow(/line 2/);
    expect(() => parseToml("a = 1\na = 2\n")).toThrow(/defined twice/);
  });
});
