import { Conflict, Invalid, RateLimited, Unauthorized, type Clock } from "@berth/core";
import { isUniqueViolation, type Db } from "@berth/db";
import type { PasswordHasher } from "../auth/passwords.ts";
import { hashSecret, newSecret } from "../auth/tokens.ts";
import type { WindowCounter } from "../auth/ratelimit.ts";

export interface User {
  id: string;
  email: string;
  name: string | null;
  created_at: Date;
  updated_at: Date;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,190}\.[^\s@]{1,63}$/;

export class Accounts {
  readonly #db: Db;
  readonly #hasher: PasswordHasher;
  readonly #clock: Clock;
  readonly #failuresByAccount: WindowCounter;
  readonly #failuresByAddress: WindowCounter;
  /** A real hash of a random password, verified when the email is unknown so timing does not tell. */
  #dummyHash: Promise<string>;

  constructor(deps: { db: Db; hasher: PasswordHasher; clock: Clock; failuresByAccount: WindowCounter; failuresByAddress: WindowCounter }) {
    this.#db = deps.db;
    this.#hasher = deps.hasher;
    this.#clock = deps.clock;
    this.#failuresByAccount = deps.failuresByAccount;
    this.#failuresByAddress = deps.failuresByAddress;
    this.#dummyHash = this.#hasher.hash(newSecret(""));
  }

  async signUp(input: { email: string; password: string; name?: string | undefined }): Promise<User> {
    const email = input.email.trim();
    if (!EMAIL.test(email)) throw new Invalid("Email must be a valid email address.");
    if (input.password.length < 8) throw new Invalid("Password must be at least 8 characters.");
    if (input.password.length > 1024) throw new Invalid("Password must be at most 1024 characters.");
    const passwordHash = await this.#hasher.hash(input.password);
    try {
      return await this.#db.transaction().execute(async (tx) => {
        const user = await tx
          .insertInto("users")
          .values({ email, name: input.name ?? null, password_hash: passwordHash })
          .returning(["id", "email", "name", "created_at", "updated_at"])
          .executeTakeFirstOrThrow();
        // Every user owns one personal team: personal apps live there, so one
        // membership check covers personal and team apps alike.
        const team = await tx
          .insertInto("teams")
          .values({ name: `personal-${user.id}`, personal: true })
          .returning("id")
          .executeTakeFirstOrThrow();
        await tx.insertInto("team_members").values({ team_id: team.id, user_id: user.id, role: "admin" }).execute();
        return user;
      });
    } catch (e) {
      if (isUniqueViolation(e, "users_email_key")) throw new Conflict("That email address is already registered.");
      throw e;
    }
  }

  /** Password login, rate limited per account and per client address. */
  async login(email: string, password: string, address: string): Promise<User> {
    const accountKey = email.trim().toLowerCase();
    if (this.#failuresByAccount.blocked(accountKey) || this.#failuresByAddress.blocked(address)) {
      throw new RateLimited("Too many failed logins. Try again later.");
    }
    const row = await this.#db
      .selectFrom("users")
      .select(["id", "email", "name", "created_at", "updated_at", "password_hash"])
      .where((eb) => eb(eb.fn("lower", ["email"]), "=", accountKey))
      .executeTakeFirst();
    const ok = await this.#hasher.verify(row?.password_hash ?? (await this.#dummyHash), password);
    if (!row || !ok) {
      this.#failuresByAccount.hit(accountKey);
      this.#failuresByAddress.hit(address);
      throw new Unauthorized("Invalid credentials provided.");
    }
    this.#failuresByAccount.reset(accountKey);
    const { password_hash: _, ...user } = row;
    return user;
  }

  async getUser(id: string): Promise<User> {
    return this.#db.selectFrom("users").select(["id", "email", "name", "created_at", "updated_at"]).where("id", "=", id).executeTakeFirstOrThrow();
  }

  async updateUser(id: string, patch: { name?: string | undefined }): Promise<User> {
    return this.#db
      .updateTable("users")
      .set({ ...(patch.name !== undefined ? { name: patch.name } : {}), updated_at: new Date(this.#clock.now()) })
      .where("id", "=", id)
      .returning(["id", "email", "name", "created_at", "updated_at"])
      .executeTakeFirstOrThrow();
  }

  // ---- API tokens (oauth authorizations) ----

  async createToken(userId: string, opts: { description?: string | undefined; expiresIn?: number | undefined }) {
    const token = newSecret("berth_");
    const expiresAt = opts.expiresIn ? new Date(this.#clock.now() + opts.expiresIn * 1000) : null;
    const row = await this.#db
      .insertInto("api_tokens")
      .values({ user_id: userId, token_hash: hashSecret(token), description: opts.description ?? "", expires_at: expiresAt })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { row, token };
  }

  listTokens(userId: string) {
    return this.#db.selectFrom("api_tokens").selectAll().where("user_id", "=", userId).orderBy("created_at").execute();
  }

  getToken(userId: string, id: string) {
    return this.#db.selectFrom("api_tokens").selectAll().where("user_id", "=", userId).where("id", "=", id).executeTakeFirst();
  }

  async revokeToken(userId: string, id: string) {
    return this.#db.deleteFrom("api_tokens").where("user_id", "=", userId).where("id", "=", id).returningAll().executeTakeFirst();
  }

  /** Resolves a presented API token to its user; tokens are looked up by SHA-256 only. */
  async userForToken(token: string): Promise<{ userId: string; tokenId: string } | null> {
    if (token.length < 10 || token.length > 200) return null;
    const row = await this.#db
      .selectFrom("api_tokens")
      .select(["id", "user_id", "expires_at"])
      .where("token_hash", "=", hashSecret(token))
      .executeTakeFirst();
    if (!row) return null;
    if (row.expires_at && row.expires_at.getTime() <= this.#clock.now()) return null;
    return { userId: row.user_id, tokenId: row.id };
  }

  // ---- console sessions (Lucia's design: random token in the cookie, its SHA-256 as the id) ----

  async createSession(userId: string, ttlMs: number): Promise<{ token: string; expiresAt: Date }> {
    const token = newSecret("");
    const expiresAt = new Date(this.#clock.now() + ttlMs);
    await this.#db.insertInto("sessions").values({ id: hashSecret(token), user_id: userId, expires_at: expiresAt }).execute();
    return { token, expiresAt };
  }

  /** Validates a session; extends it when past half its life (sliding expiry). */
  async userForSession(token: string, ttlMs: number): Promise<string | null> {
    if (token.length < 20 || token.length > 100) return null;
    const id = hashSecret(token);
    const row = await this.#db.selectFrom("sessions").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) return null;
    const now = this.#clock.now();
    if (row.expires_at.getTime() <= now) {
      await this.#db.deleteFrom("sessions").where("id", "=", id).execute();
      return null;
    }
    if (row.expires_at.getTime() - now < ttlMs / 2) {
      await this.#db.updateTable("sessions").set({ expires_at: new Date(now + ttlMs) }).where("id", "=", id).execute();
    }
    return row.user_id;
  }

  async deleteSession(token: string): Promise<void> {
    await this.#db.deleteFrom("sessions").where("id", "=", hashSecret(token)).execute();
  }
}
