# syntax=docker/dockerfile:1
# The router: host-header proxy, activator and autoscaler. Talks to the API only.
# Build from the repository root:  docker build -f infra/docker/router.Dockerfile -t berth/router .
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
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
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace @berth/router --include-workspace-root=false \
 # The router imports only types from @berth/runtime: the Kubernetes client (65 MB) is never loaded.
 && rm -rf node_modules/@kubernetes \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -type f -delete

FROM node:${NODE_VERSION}-bookworm-slim AS node

FROM debian:bookworm-slim
RUN groupadd --gid 10001 berth && useradd --uid 10001 --gid 10001 --no-create-home berth
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY packages/core ./packages/core
COPY packages/runtime ./packages/runtime
COPY services/router ./services/router
ENV NODE_ENV=production BERTH_ROUTER_HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["node", "services/router/src/process.ts"]
