import argon2 from "argon2";

/** Memory-hard password hashing (argon2id). Costs are configurable so tests stay fast. */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
}

export function argon2Hasher(cost: { memoryKiB: number; iterations: number }): PasswordHasher {
  const opts = { type: argon2.argon2id as 2, memoryCost: cost.memoryKiB, timeCost: cost.iterations, parallelism: 1 };
  return {
    hash: (password) => argon2.hash(password, { ...opts, raw: false }),
    async verify(hash, password) {
      try {
        return await argon2.verify(hash, password);
      } catch {
        return false;
      }
    },
  };
}
