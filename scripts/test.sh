#!/usr/bin/env bash
# The whole test suite: installs missing real components, type-checks, runs Vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
bash scripts/ensure-deps.sh
echo "typecheck…"
tsc --noEmit -p tsconfig.json
vitest run "$@"
