# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for infra/cluster/{up,down,smoke}.sh.
# Sourced, not executed. Every value below can be overridden from the environment.

K8S_VERSION="${BERTH_K8S_VERSION:-v1.35.4}"
CACHE_ROOT="${BERTH_CLUSTER_CACHE:-$HOME/.cache/berth-cluster}"
CACHE="$CACHE_ROOT/$K8S_VERSION"
BIN="$CACHE/bin"
STATE="${BERTH_CLUSTER_STATE:-/tmp/berth-cluster}"

ETCD_PORT="${BERTH_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${BERTH_ETCD_PEER_PORT:-12380}"
APISERVER_PORT="${BERTH_APISERVER_PORT:-6443}"
CM_PORT="${BERTH_CONTROLLER_MANAGER_PORT:-10257}"
SCHED_PORT="${BERTH_SCHEDULER_PORT:-10259}"
KUBELET_PORT="${BERTH_KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${BERTH_KUBELET_HEALTHZ_PORT:-10248}"
KUBE_PROXY_HEALTHZ_PORT="${BERTH_KUBE_PROXY_HEALTHZ_PORT:-10256}"
KUBE_PROXY_METRICS_PORT="${BERTH_KUBE_PROXY_METRICS_PORT:-10249}"
REGISTRY_PORT="${BERTH_REGISTRY_PORT:-5100}"

NODE_NAME="${BERTH_NODE_NAME:-berth-node}"
# The kubelet refuses a loopback node IP, so the node gets an address on a port-less
# bridge interface that up.sh creates (only reachable from this machine).
NODE_IFACE="${BERTH_NODE_IFACE:-berth0}"
NODE_IP="${BERTH_NODE_IP:-10.87.0.1}"
POD_CIDR="${BERTH_POD_CIDR:-10.88.0.0/16}"
POD_GATEWAY="${BERTH_POD_GATEWAY:-10.88.0.1}"
CNI_BRIDGE="${BERTH_CNI_BRIDGE:-berthcni0}"
SERVICE_CIDR="${BERTH_SERVICE_CIDR:-10.96.0.0/16}"
KUBERNETES_SVC_IP="${BERTH_KUBERNETES_SVC_IP:-10.96.0.1}"
CNI_BIN_DIR="${BERTH_CNI_BIN_DIR:-/usr/lib/cni}"
RUNC_BIN="${BERTH_RUNC:-$(command -v runc 2>/dev/null || echo /usr/sbin/runc)}"
NODE_NPM_VERSION="${BERTH_BASE_NODE_VERSION:-24.21.0}"

REGISTRY="127.0.0.1:$REGISTRY_PORT"
PAUSE_IMAGE="$REGISTRY/berth/pause:local"
BASE_IMAGE="$REGISTRY/berth/base:local"
BASE_IMAGE_SHORT="docker.io/berth/base:local"

PKI="$STATE/pki"
RUN="$STATE/run"
LOGS="$STATE/logs"
CTRD_DIR="$STATE/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"
IPT_CHAIN="BERTH-POD-EGRESS"

# The whole toolchain is wanted on PATH (go for builds, sbin for ip/iptables).
export PATH="/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
# A proxy in the environment must never see loopback or pod traffic.
export NO_PROXY="127.0.0.1,localhost,$NODE_IP,$POD_CIDR,$SERVICE_CIDR${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

_T0="${_T0:-${EPOCHREALTIME:-$(date +%s.%N)}}"
log() {
  local now="${EPOCHREALTIME:-$(date +%s.%N)}"
  printf '[%7.1fs] %s\n' "$(awk -v a="$now" -v b="$_T0" 'BEGIN{print a-b}')" "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... : poll COMMAND until it succeeds.
wait_for() {
  local desc="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout)) delay=0.1
  while true; do
    if "$@" >/dev/null 2>&1; then log "ready: $desc"; return 0; fi
    if ((SECONDS >= deadline)); then log "timeout after ${timeout}s waiting for: $desc"; return 1; fi
    sleep "$delay"
    # back off gently up to 1s between polls
    case "$delay" in 0.1) delay=0.2 ;; 0.2) delay=0.5 ;; *) delay=1 ;; esac
  done
}

# write_if_changed FILE < content: leave FILE untouched when the content is the same
# (kube-proxy exits when its config file is rewritten, even with identical bytes).
write_if_changed() {
  local tmp="$1.tmp.$$"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

pidfile() { echo "$RUN/$1.pid"; }

# is_running NAME: the recorded pid is alive and still runs the expected binary.
is_running() {
  local f pid exe
  f="$(pidfile "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(<"$f")"
  [[ -d "/proc/$pid" ]] || return 1
  exe="$(cat "$RUN/$1.exe" 2>/dev/null)"
  [[ -z "$exe" ]] && return 0
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe"* ]]
}

# start_bg NAME BINARY ARGS...: start a daemon in its own session, log + pid under $STATE.
start_bg() {
  local name="$1"; shift
  mkdir -p "$RUN" "$LOGS"
  local exe; exe="$(readlink -f "$(command -v "$1")")"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &   # 9: up.sh's lock, not for daemons
  echo $! >"$(pidfile "$name")"
  echo "$exe" >"$RUN/$name.exe"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

# stop_proc NAME [TIMEOUT]: SIGTERM the recorded pid, SIGKILL after TIMEOUT seconds.
stop_proc() {
  local name="$1" timeout="${2:-15}" pid
  if ! is_running "$name"; then rm -f "$(pidfile "$name")" "$RUN/$name.exe"; return 0; fi
  pid="$(<"$(pidfile "$name")")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.2; done
  if [[ -d /proc/$pid ]]; then
    log "$name (pid $pid) did not stop in ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  log "stopped $name (pid $pid)"
  rm -f "$(pidfile "$name")" "$RUN/$name.exe"
}

# out_has GREP_FLAG PATTERN COMMAND...: COMMAND succeeds and its output matches.
# (Not "COMMAND | grep -q": with pipefail, grep's early exit can SIGPIPE the command.)
out_has() {
  local flag="$1" pat="$2" out; shift 2
  out="$("$@" 2>/dev/null)" || return 1
  grep -q "$flag" -e "$pat" <<<"$out"
}

# iptables_chains: "<cmd> <table> <chain>" for every KUBE-*/CNI-* chain (IPv4 and IPv6)
iptables_chains() {
  local cmd t
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null || continue
    for t in filter nat mangle; do
      "$cmd-save" -t "$t" 2>/dev/null | awk -v c="$cmd" -v t="$t" '/^:(KUBE-|CNI-)/ {print c, t, substr($1, 2)}'
    done
  done
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=20s "$@"; }
ctr_() { ctr --address "$CTRD_SOCK" --namespace k8s.io "$@"; }

apiserver_ready() {
  out_has -x ok curl -sf --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}
