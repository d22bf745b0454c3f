/**
 * Small apps the end-to-end tests deploy.
 */

/**
 * server.py answering `<prefix>greeting=<GREETING> boot=<random per process>` over
 * keep-alive HTTP/1.1 (Python's standard library only): a changed boot id is a new
 * process. It prints `listening on <PORT>` once it is about to serve.
 */
export function bootIdServerPy(prefix = ""): string {
  return `
import http.server, os
BOOT = os.urandom(8).hex()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (${JSON.stringify(prefix)} + "greeting=%s boot=%s" % (os.environ.get("GREETING", ""), BOOT)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("listening on", os.environ["PORT"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;
}
