import { resolve } from "node:path";
import { z } from "zod";

/**
 * Berth's configuration, from the environment, parsed once at start by each
 * process's main. Every key has an embedded default so `npm start` needs none.
 * A bad value stops the process with a message naming the key and the value.
 */
const port = z.coerce.number().int().min(0).max(65535);
const bool = z.enum(["true", "false", "1", "0", "yes", "no"]).transform((v) => v === "true" || v === "1" || v === "yes");
const seconds = z.coerce.number().int().min(1);

const schema = z.object({
  BERTH_DATA_DIR: z.string().default(".berth"),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL").optional(),
  BERTH_BASE_DOMAIN: z.string().regex(/^[a-z0-9.-]+$/, "must be a lowercase domain").default("localhost"),
  BERTH_API_HOST: z.string().default("127.0.0.1"),
  BERTH_API_PORT: port.default(7700),
  BERTH_PUBLIC_URL: z.string().url().optional(),
  BERTH_API_URL: z.string().url().optional(),
  BERTH_ROUTER_HOST: z.string().default("127.0.0.1"),
  BERTH_ROUTER_PORT: port.default(7780),
  BERTH_ROUTER_ADMIN_PORT: port.default(7781),
  BERTH_INTERNAL_TOKEN: z.string().min(24, "must be at least 24 characters").optional(),
  BERTH_CONFIG_KEYS: z.string().optional(),
  BERTH_SIGNING_SECRET: z.string().min(24, "must be at least 24 characters").optional(),
  BERTH_SIGNUP: z.enum(["open", "closed"]).default("open"),
  BERTH_RUNTIME: z.enum(["local", "kubernetes"]).default("local"),
  BERTH_LOCAL_ISOLATION: z.enum(["auto", "runc", "process"]).default("auto"),
  KUBECONFIG: z.string().optional(),
  BERTH_K8S_NAMESPACE_PREFIX: z.string().regex(/^[a-z0-9-]{1,30}$/, "must be a short DNS label prefix").default("berth-team-"),
  BERTH_K8S_ROUTER_NAMESPACE: z.string().default("berth-system"),
  BERTH_K8S_BASE_IMAGE: z.string().optional(),
  BERTH_BLOBSTORE: z.enum(["local", "s3"]).default("local"),
  BERTH_S3_ENDPOINT: z.string().url().optional(),
  BERTH_S3_REGION: z.string().default("us-east-1"),
  BERTH_S3_BUCKET: z.string().optional(),
  BERTH_S3_ACCESS_KEY: z.string().optional(),
  BERTH_S3_SECRET_KEY: z.string().optional(),
  BERTH_S3_FORCE_PATH_STYLE: bool.default(true),
  BERTH_REGISTRY: z.string().regex(/^[a-z0-9.-]+(:\d+)?$/i, "must be host[:port]").optional(),
  BERTH_REGISTRY_INSECURE: bool.default(false),
  BERTH_REGISTRY_USER: z.string().optional(),
  BERTH_REGISTRY_PASSWORD: z.string().optional(),
  BERTH_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  BERTH_BUILD_TIMEOUT_SECONDS: seconds.default(900),
  /** Limits of each build's sandbox (cgroups; not enforced where no controller is writable). */
  BERTH_BUILD_MEMORY_MB: z.coerce.number().int().min(64).default(2048),
  BERTH_BUILD_CPUS: z.coerce.number().min(0.1).max(64).default(1),
  BERTH_BUILD_PIDS: z.coerce.number().int().min(16).default(1024),
  BERTH_BOOT_TIMEOUT_SECONDS: seconds.default(60),
  /** SIGTERM to SIGKILL when an instance stops (Heroku: 30 s). */
  BERTH_STOP_GRACE_SECONDS: seconds.default(30),
  BERTH_MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
  BERTH_MAX_SOURCE_BYTES: z.coerce.number().int().min(1024).default(500 * 1024 * 1024),
  BERTH_MAX_IMAGE_BYTES: z.coerce.number().int().min(1024 * 1024).default(2 * 1024 * 1024 * 1024),
  BERTH_DYNO_QUOTA_PER_TEAM: z.coerce.number().int().min(0).default(100),
  BERTH_ALLOWED_SOURCE_HOSTS: z.string().default("github.com,codeload.github.com,gitlab.com"),
  BERTH_PASSWORD_MEMORY_KIB: z.coerce.number().int().min(1024).default(19 * 1024),
  BERTH_LOG_LEVEL: z.enum(["info", "warn", "error"]).default("info"),
});

export type RawConfig = z.infer<typeof schema>;

export interface BerthConfig extends RawConfig {
  dataDir: string;
  publicUrl: string;
  apiUrl: string;
  allowedSourceHosts: string[];
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Record<string, string | undefined>, cwd: string): BerthConfig {
  const input = Object.fromEntries(Object.entries(env).filter(([k, v]) => k in schema.shape && v !== undefined && v !== ""));
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = String(i.path[0]);
      return `  ${key}=${JSON.stringify(env[key] ?? "")}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const c = parsed.data;
  if (c.BERTH_BLOBSTORE === "s3" && (!c.BERTH_S3_ENDPOINT || !c.BERTH_S3_BUCKET || !c.BERTH_S3_ACCESS_KEY || !c.BERTH_S3_SECRET_KEY)) {
    throw new ConfigError("invalid configuration:\n  BERTH_BLOBSTORE=s3 needs BERTH_S3_ENDPOINT, BERTH_S3_BUCKET, BERTH_S3_ACCESS_KEY and BERTH_S3_SECRET_KEY");
  }
  if (c.BERTH_RUNTIME === "kubernetes" && (!c.KUBECONFIG || !c.BERTH_REGISTRY || !c.BERTH_K8S_BASE_IMAGE)) {
    throw new ConfigError("invalid configuration:\n  BERTH_RUNTIME=kubernetes needs KUBECONFIG, BERTH_REGISTRY and BERTH_K8S_BASE_IMAGE");
  }
  const apiHostForUrl = c.BERTH_API_HOST === "0.0.0.0" ? "127.0.0.1" : c.BERTH_API_HOST;
  return {
    ...c,
    dataDir: resolve(cwd, c.BERTH_DATA_DIR),
    publicUrl: (c.BERTH_PUBLIC_URL ?? `http://${apiHostForUrl}:${c.BERTH_API_PORT}`).replace(/\/$/, ""),
    apiUrl: (c.BERTH_API_URL ?? `http://${apiHostForUrl}:${c.BERTH_API_PORT}`).replace(/\/$/, ""),
    allowedSourceHosts: c.BERTH_ALLOWED_SOURCE_HOSTS.split(",").map((s) => s.trim()).filter(Boolean),
  };
}
