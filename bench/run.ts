/**
 * `npm run bench [-- --quick]`: Berth's benchmarks, each beside a baseline measured in
 * the same run (see bench/README.md). This entry only makes the test harness loadable
 * outside Vitest, then hands over to main.ts.
 *
 * test/harness/db.ts asks Vitest for the Postgres URL (`inject("postgresUrl")`), which
 * works only inside a Vitest worker. Here the import of "vitest" from the harness is
 * resolved to vitest-shim.ts, which answers from the Postgres this run starts itself.
 * The hook must be registered before anything imports the harness, hence the dynamic
 * import below.
 */
import { registerHooks } from "node:module";

const shim = new URL("./vitest-shim.ts", import.meta.url).href;
registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === "vitest" && context.parentURL?.includes("/test/harness/")) return { url: shim, shortCircuit: true };
    return nextResolve(specifier, context);
  },
});

const { main } = await import("./main.ts");
// Everything was torn down by main; exit even if some library left a handle open.
process.exit(await main(process.argv.slice(2)));
