/**
 * A hand-off between a producer (subscription callbacks) and one streaming
 * response: `push` never blocks; `drain` yields items in order, yields `idle`
 * after `idleMs` without any (for keep-alives), and ends once closed and empty.
 */
export class AsyncQueue<T> {
  #items: T[] = [];
  #closed = false;
  #wake: (() => void) | undefined;

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *drain(idleMs = 0): AsyncGenerator<{ item: T } | { idle: true }> {
    for (;;) {
      while (this.#items.length) yield { item: this.#items.shift()! };
      if (this.#closed) return;
      const timedOut = await new Promise<boolean>((resolve) => {
        const t = idleMs > 0 ? setTimeout(() => resolve(true), idleMs) : undefined;
        this.#wake = () => {
          if (t) clearTimeout(t);
          resolve(false);
        };
      });
      this.#wake = undefined;
      if (timedOut && this.#items.length === 0 && !this.#closed) yield { idle: true };
    }
  }
}
