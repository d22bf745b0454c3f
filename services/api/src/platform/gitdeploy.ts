import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Logger } from "@berth/core";
import type { Db, EventBus } from "@berth/db";
import type { GitDeploys } from "../git/http.ts";
import type { SourceBlobs } from "../domain/sources.ts";
import { sourceKey } from "../domain/sources.ts";
import type { BuildLogs } from "./buildlogs.ts";
import type { Deployer } from "./deployer.ts";

/**
 * A push, start to finish: store the pushed tree as a source, queue a build,
 * stream its output, wait for the release, print the outcome in Heroku's words.
 * Pushes to one app never overlap: the git endpoint runs one receive-pack per app
 * at a time (git/http.ts), and the hook refuses a push whose branch moved meanwhile.
 */
export interface GitDeployDeps {
  db: Db;
  events: EventBus;
  sources: SourceBlobs;
  buildLogs: BuildLogs;
  deployer: Deployer;
  logger: Logger;
  publicUrl: string;
  baseDomain: string;
  webScheme: string;
}

export class GitDeployPipeline implements GitDeploys {
  readonly #deps: GitDeployDeps;
  constructor(deps: GitDeployDeps) {
    this.#deps = deps;
  }

  async deploy(input: { appId: string; userId: string; rev: string; tar: Readable }, out: (line: string) => void): Promise<boolean> {
    const { db } = this.#deps;
    const id = randomUUID();
    const key = sourceKey(id).replace(/\.tgz$/, ".tar");
    await this.#deps.sources.put(key, input.tar);
    await db.insertInto("sources").values({ id, user_id: input.userId, blob_key: key }).execute();

    return this.#run(input, id, key, out);
  }

  async #run(input: { appId: string; userId: string; rev: string }, sourceId: string, key: string, out: (line: string) => void): Promise<boolean> {
    const { db, events, deployer, buildLogs } = this.#deps;
    const app = await db.selectFrom("apps").select(["team_id", "name"]).where("id", "=", input.appId).executeTakeFirstOrThrow();
    const build = await db
      .insertInto("builds")
      .values({
        app_id: input.appId,
        team_id: app.team_id,
        user_id: input.userId,
        source_url: `${this.#deps.publicUrl}/sources/${sourceId}/blob`,
        source_blob_key: key,
        source_version: input.rev,
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    const released = deployer.waitForBuildRelease(build.id);
    await events.publish({ kind: "build.queued", buildId: build.id });
    for await (const line of buildLogs.follow(build.id)) out(line);
    const b = await db.selectFrom("builds").select(["status", "failure"]).where("id", "=", build.id).executeTakeFirstOrThrow();
    if (b.status !== "succeeded") {
      out(" !     Push rejected, failed to compile app.");
      if (b.failure) out(` !     ${b.failure}`);
      return false;
    }
    out("-----> Launching...");
    const outcome = await released;
    if (outcome.status === "failed") {
      out(` !     Release v${outcome.version} failed: ${outcome.reason}`);
      out(" !     The previous release is still serving.");
      return false;
    }
    out(`       Released v${outcome.version}`);
    out(`       ${this.#deps.webScheme}://${app.name}.${this.#deps.baseDomain}/ deployed to Berth`);
    return true;
  }
}
