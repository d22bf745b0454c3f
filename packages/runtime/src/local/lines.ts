import { StringDecoder } from "node:string_decoder";

/** Lines longer than this are cut, so one runaway write cannot hold memory. */
const MAX_LINE = 16 * 1024;

/** Splits a byte stream into lines (\n or \r\n); `end()` flushes a last partial line. */
export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder("utf8");
  let buf = "";
  const drain = () => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl < 0) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      emit(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    while (buf.length > MAX_LINE) {
      emit(buf.slice(0, MAX_LINE));
      buf = buf.slice(MAX_LINE);
    }
  };
  const emit = (line: string) => {
    for (let i = 0; i < line.length || i === 0; i += MAX_LINE) onLine(line.slice(i, i + MAX_LINE));
  };
  return {
    push(chunk) {
      buf += decoder.write(chunk);
      drain();
    },
    end() {
      buf += decoder.end();
      drain();
      if (buf.length > 0) emit(buf);
      buf = "";
    },
  };
}
