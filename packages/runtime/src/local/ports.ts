import net from "node:net";
import { Unavailable } from "@berth/core";

export interface PortRange {
  from: number;
  to: number;
}

/**
 * Hands out host ports for instances (they share the host's network). A port is
 * probed by binding it before it is handed out; the cursor moves on so a port
 * just released is not reused at once (the router may still hold it).
 */
export class PortAllocator {
  readonly #range: PortRange;
  readonly #used = new Set<number>();
  #cursor: number;

  constructor(range: PortRange) {
    if (!(Number.isInteger(range.from) && Number.isInteger(range.to) && range.from > 0 && range.to <= 65535 && range.from <= range.to)) {
      throw new RangeError(`portRange ${range.from}-${range.to} is not a valid port range`);
    }
    this.#range = range;
    // Several runtimes (parallel test files) may share a range: start somewhere random.
    this.#cursor = range.from + Math.floor(Math.random() * (range.to - range.from + 1));
  }

  async allocate(): Promise<number> {
    const size = this.#range.to - this.#range.from + 1;
    for (let tried = 0; tried < size; tried++) {
      const port = this.#cursor;
      this.#cursor = port >= this.#range.to ? this.#range.from : port + 1;
      if (this.#used.has(port)) continue;
      this.#used.add(port);
      if (await isFree(port)) return port;
      this.#used.delete(port);
    }
    throw new Unavailable(`no free port in ${this.#range.from}-${this.#range.to}`);
  }

  /** Marks a port as taken by an instance adopted from an earlier runtime. */
  reserve(port: number): void {
    this.#used.add(port);
  }

  release(port: number): void {
    this.#used.delete(port);
  }
}

/** Binds the wildcard address (dual-stack where available), which conflicts with any listener on the port. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen({ port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
