/**
 * nginx (Debian nginx-light) as the router's reference point: one worker, a keepalive
 * upstream, the same forwarding headers and an access log, configured in a temp dir
 * and listening on 127.0.0.1 only. `fillers` adds that many other virtual hosts, each
 * with its own server_name, like apps in the router's table.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, spawnOwned, stopChild, waitPort, type Teardown } from "./proc.ts";

export async function startNginx(td: Teardown, o: { upstreamPort: number; host: string; fillers: number }): Promise<{ port: number; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-nginx-"));
  td.add("nginx temp dir", () => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const deadPort = await freePort(); // filler upstreams: never contacted
  const proxy = [
    "proxy_http_version 1.1;",
    'proxy_set_header Connection "";',
    "proxy_set_header Host $host;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Port $server_port;",
    "proxy_set_header X-Request-Id $request_id;",
    'proxy_set_header X-Request-Start "t=${msec}";',
    'proxy_set_header Via "1.1 nginx";',
    'add_header Via "1.1 nginx";',
    "proxy_connect_timeout 5s;",
    "proxy_read_timeout 30s;",
    "proxy_buffering on;",
  ].join("\n      ");
  const fillers = Array.from(
    { length: o.fillers },
    (_, i) => `  server {\n    listen 127.0.0.1:${port};\n    server_name filler-${i}.localhost;\n    location / { proxy_pass http://127.0.0.1:${deadPort}; }\n  }`,
  ).join("\n");
  const conf = `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log combined buffer=64k flush=1s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  server_names_hash_max_size 4096;
  server_names_hash_bucket_size 64;
  upstream app {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    server_name ${o.host};
    location / {
      proxy_pass http://app;
      ${proxy}
    }
  }
${fillers}
}
`;
  await writeFile(join(dir, "nginx.conf"), conf);
  const child = spawnOwned(td, "nginx", "nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: ["ignore", "ignore", "inherit"] });
  await waitPort(port, 10_000, child);
  return { port, stop: () => stopChild(child, 5000, "SIGQUIT") };
}
