#!/usr/bin/env bash
# Installs the real components the test suite uses when they are missing. Idempotent,
# quiet when everything is there. Debian packages only; nothing is downloaded from
# anywhere else (the machines reach only package registries).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have git || need+=(git)
have curl || need+=(curl)
have runc || need+=(runc)
have docker-registry || need+=(docker-registry)
have skopeo || need+=(skopeo)
have umoci || need+=(umoci)
have nginx || need+=(nginx-light)
have wrk || need+=(wrk)
have chromium || need+=(chromium)
have radosgw || need+=(radosgw)
have ceph-mon || need+=(ceph-mon)
have ceph-osd || need+=(ceph-osd)
have ceph-authtool || need+=(ceph-base)
have python3 || need+=(python3)
have ip || need+=(iproute2)
have bwrap || need+=(bubblewrap)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: missing ${need[*]} and not root; install them with apt-get" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# docker-registry's package may start a system service; tests start their own instances.
if have systemctl && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
exit 0
