import type { Instance } from "@berth/runtime";

/** The slice of the runtime the API reads dynos from. */
export interface DynoSource {
  list(appId: string): Promise<Instance[]>;
}
