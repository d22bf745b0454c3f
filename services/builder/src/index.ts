export { BuildQueue } from "./queue.ts";
export { BuildLogWriter } from "./buildlog.ts";
export { runBuild, type AppConfigVars, type BuilderDeps, type BuiltImageRecord, type SourceReader } from "./worker.ts";
export { BuilderService } from "./service.ts";
export { buildLimits } from "./limits.ts";
