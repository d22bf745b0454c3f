/** The results as a markdown table: each figure beside its same-run baseline and its target. */

const START = "<!-- bench:table:start -->";
const END = "<!-- bench:table:end -->";

type R = Record<string, any>;

const ms = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`) : "–");
const ms1 = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? `${x < 10 ? x.toFixed(2) : Math.round(x)} ms` : "–");
const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–");
const times = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? `${x.toFixed(2)}×` : "–");
const mb = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? `${x.toFixed(1)} MB` : "–");
const bytes = (x: unknown) => {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  if (x < 10 * 1024) return `${x} B`;
  if (x < 10 * 1024 * 1024) return `${(x / 1024).toFixed(1)} KiB`;
  return `${(x / 1024 / 1024).toFixed(1)} MiB`;
};
const percent = (x: number) => (Number.isFinite(x) ? `${x < 0.01 ? (x * 100).toFixed(3) : (x * 100).toFixed(1)} %` : "–");
const div = (a: unknown, b: unknown) => (typeof a === "number" && typeof b === "number" && b > 0 ? a / b : Number.NaN);
const verdict = (ok: boolean | undefined) => (ok === undefined ? "" : ok ? " ✅" : " ❌");

export function markdown(r: R): string {
  const rows: string[][] = [];
  const m = r.machine ?? {};
  const p = r.pushToLive;
  if (p) {
    const ok = p.p50Ms <= 2000 && p.ratioP50 <= 3;
    rows.push([`Push to live, p50 / p90 (n=${p.n})`, `${ms(p.p50Ms)} / ${ms(p.p90Ms)}`, `${ms(p.baselineP50Ms)} / ${ms(p.baselineP90Ms)} (push ${ms(p.baselinePushP50Ms)} + start ${ms(p.baselineStartP50Ms)})`, times(p.ratioP50), `p50 ≤ 2 s and ≤ 3× baseline${verdict(ok)}`]);
    const ph = p.phasesP50Ms ?? {};
    rows.push(["… where it goes, p50", `upload ${ms(ph.upload)}, queue ${ms(ph.queue)}, build ${ms(ph.build)}, release ${ms(ph.release)}, route ${ms(ph.route)}`, "", "", ""]);
  }
  if (r.firstDeploy) rows.push(["First deploy, cold cache", `${ms(r.firstDeploy.ms)} (build ${ms(r.firstDeploy.buildMs)})`, "", "", ""]);
  const c = r.coldStart;
  if (c) {
    rows.push([`Wake from frozen, p50 / p99 (n=${c.n})`, `${ms1(c.frozenP50Ms)} / ${ms1(c.frozenP99Ms)}`, `${ms1(c.baselineP50Ms)} / ${ms1(c.baselineP99Ms)} (start by hand)`, times(div(c.frozenP50Ms, c.baselineP50Ms)), ""]);
    rows.push([`Wake from zero, p50 / p99 (n=${c.n})`, `${ms1(c.p50Ms)} / ${ms1(c.p99Ms)}`, `${ms1(c.baselineP50Ms)} / ${ms1(c.baselineP99Ms)} (start by hand)`, times(div(c.p50Ms, c.baselineP50Ms)), ""]);
  }
  const ro = r.router;
  if (ro) {
    rows.push([`Router, 1 app: req/s (p50 / p99)`, `${num(ro.rps)} (${ms1(ro.p50Ms)} / ${ms1(ro.p99Ms)})`, `direct ${num(ro.directRps)} (${ms1(ro.directP50Ms)} / ${ms1(ro.directP99Ms)}); nginx ${num(ro.nginxRps)} (${ms1(ro.nginxP50Ms)} / ${ms1(ro.nginxP99Ms)})`, `${times(ro.ratioRouterDirect)} direct, ${times(ro.ratioRouterNginx)} nginx`, ""]);
    const many = ro.manyApps;
    if (many) rows.push([`Router, ${num(many.apps)} apps: req/s (p50 / p99)`, `${num(many.router.rps)} (${ms1(many.router.p50Ms)} / ${ms1(many.router.p99Ms)})`, `nginx ${num(many.nginx.rps)} (${ms1(many.nginx.p50Ms)} / ${ms1(many.nginx.p99Ms)})`, `${times(many.ratioRouterDirect)} direct, ${times(many.ratioRouterNginx)} nginx`, ""]);
  }
  const b = r.buildCache;
  if (b) {
    rows.push(["Rebuild, lockfile unchanged: bytes uploaded", `${bytes(b.uploadedBytes)} (${b.uploadedBlobs} blobs; ${b.skippedBlobs} already there)`, `first build ${bytes(b.firstUploadedBytes)}; image ${bytes(b.imageBytes)}`, percent(div(b.uploadedBytes, b.firstUploadedBytes)), ""]);
    // Log rows come in ~50 ms batches: below that the step is "within one batch".
    const step = (x: number) => (x < 50 ? "< 50 ms" : ms(x));
    rows.push(["Rebuild: dependency install step", `${step(b.dependencyInstallMs)}${b.nodeModulesReused ? " (node_modules reused)" : " (reinstalled)"}`, `first build ${step(b.dependencyInstallColdMs)}`, b.dependencyInstallMs < 50 ? "" : times(div(b.dependencyInstallMs, b.dependencyInstallColdMs)), ""]);
  }
  const a = r.api;
  if (a) {
    rows.push([`API with ${num(a.rows?.apps)} apps, ${num(a.rows?.teams)} teams (personal ones included): p50 / p99 (${num(a.requests)} calls)`, `${ms1(a.p50Ms)} / ${ms1(a.p99Ms)}`, "", "", ""]);
    for (const [name, s] of Object.entries(a.calls ?? {}) as [string, { p50Ms: number; p99Ms: number }][]) rows.push([`… ${name}`, `${ms1(s.p50Ms)} / ${ms1(s.p99Ms)}`, "", "", ""]);
  }
  const mem = r.memory;
  if (mem) {
    rows.push(["Platform memory (sum of PSS), idle after start", `${mb(mem.platformIdleMb)} (RSS summed: ${mb(mem.platformIdleRssSumMb)})`, "", "", `≤ 300 MB${verdict(mem.platformIdleMb <= 300)}`]);
    rows.push([`Platform memory (sum of PSS), ${mem.apps} apps deployed, at zero`, `${mb(mem.platformAppsAtZeroMb)} (RSS summed: ${mb(mem.platformAppsAtZeroRssSumMb)})`, "", "", ""]);
    rows.push([`Router RSS, ${num(mem.routes)} routes`, mb(mem.router10kRoutesMb), `empty ${mb(mem.routerEmptyMb)}`, `+${mb(mem.router10kRoutesDeltaMb)}`, `≤ +50 MB${verdict(mem.router10kRoutesDeltaMb <= 50)}`]);
  }
  const head = `${r.profile === "quick" ? "Quick run" : "Full run"} ${r.startedAt ?? ""} · ${m.cores ?? "?"} cores (${m.cpu ?? "?"}), ${m.memoryMb ?? "?"} MB · commit ${String(m.commit ?? "?").slice(0, 12)}${m.dirty ? " (uncommitted changes)" : ""} · instances: ${r.isolation ?? "?"} · ${r.durationS ?? "?"} s`;
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    head,
    "",
    "| Measure | Berth | Baseline, same run | Ratio | Target |",
    "|---|---|---|---|---|",
    ...rows.map((row) => `| ${row.map(esc).join(" | ")} |`),
    "",
  ].join("\n");
}

/** bench/README.md with the table between its markers replaced. */
export function replaceTable(readme: string, table: string): string {
  const s = readme.indexOf(START);
  const e = readme.indexOf(END);
  if (s < 0 || e < s) return `${readme.trimEnd()}\n\n${START}\n${table}\n${END}\n`;
  return `${readme.slice(0, s + START.length)}\n${table}\n${readme.slice(e)}`;
}
