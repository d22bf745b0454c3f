#!/usr/bin/env bash
# Brings the single-node cluster up (or reuses the one that is up: ~1 s) and runs the
# Kubernetes tests on it: the runtime contract, the unreachable-API check and the
# end-to-end test. Usage: bash test/k8s/run.sh [vitest args…]
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE="${BERTH_CLUSTER_STATE:-/tmp/berth-cluster}"
# The cluster needs root (containerd, kubelet, iptables). Where it cannot be brought up
# here, say why and skip; where it is up, its tests must pass.
up() { if [ "$(id -u)" = 0 ]; then infra/cluster/up.sh >&2; else sudo -n infra/cluster/up.sh >&2; fi; }
if ! up; then
  echo "test:k8s: the Kubernetes cluster could not be brought up on this machine (see above); Kubernetes tests skipped." >&2
  exit 0
fi
# shellcheck disable=SC1091
source "$STATE/env.sh"   # KUBECONFIG, kubectl on PATH, BERTH_CLUSTER_REGISTRY, BERTH_CLUSTER_BASE_IMAGE
# The project's Node 24 (node_modules/.bin/node) first: the host's may be older.
export PATH="$PWD/node_modules/.bin:$PATH"
exec vitest run -c test/k8s/vitest.config.ts "$@"
