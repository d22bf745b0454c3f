export { BuildQueue } from "./queue.ts";
export { BuildLogWriter } from "./buildlog.ts";
export { runBuild, type BuilderDeps, type BuiltImageRecord, type SourceReader } from "./worker.ts";
export { BuilderService } from "./service.ts";
