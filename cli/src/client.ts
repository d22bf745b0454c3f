/** A small Platform API client for the CLI (and tests): Heroku's Accept header, token auth, error bodies. */
export class ApiError extends Error {
  readonly status: number;
  readonly id: string;
  constructor(status: number, id: string, message: string) {
    super(message);
    this.status = status;
    this.id = id;
  }
}

export class Client {
  readonly url: string;
  readonly #token: string | undefined;
  constructor(url: string, token?: string) {
    this.url = url.replace(/\/$/, "");
    this.#token = token;
  }

  async request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await fetch(this.url + path, {
      method,
      headers: {
        Accept: "application/vnd.heroku+json; version=3",
        ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
        ...(this.#token ? { Authorization: `Bearer ${this.#token}` } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const parsed = text ? (JSON.parse(text) as unknown) : null;
    if (!res.ok) {
      const e = parsed as { id?: string; message?: string } | null;
      throw new ApiError(res.status, e?.id ?? "error", e?.message ?? `HTTP ${res.status}`);
    }
    return parsed as T;
  }
}
