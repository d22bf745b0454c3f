#!/usr/bin/env bash
# Tear down the cluster that infra/cluster/up.sh started: pods, kubelet, containerd,
# kube-proxy, control plane, etcd, registry; unmount everything under $STATE; remove
# the interfaces and iptables rules it created; then delete $STATE.
#
#   infra/cluster/down.sh [--keep-state]
#
# Only processes whose pids up.sh recorded in $STATE/run (and the containerd shims
# serving that containerd's socket) are stopped. Every wait is bounded.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

KEEP_STATE=0
for a in "$@"; do
  case "$a" in
    --keep-state) KEEP_STATE=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) die "unknown argument: $a" ;;
  esac
done
[[ $EUID -eq 0 ]] || die "run as root"
[[ -d "$STATE" ]] || { log "nothing to do: $STATE does not exist"; exit 0; }
exec 9>"$STATE/.lock"
flock -w 900 9 || die "another up.sh/down.sh holds $STATE/.lock"
log "tearing down the cluster in $STATE"

containerd_ok() { is_running containerd && ctr --address "$CTRD_SOCK" version >/dev/null 2>&1; }
no_tasks() { [[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ]]; }

# 1. Let the kubelet tear pods down properly (CNI DEL, unmounts): stop the controllers
#    so nothing is recreated, then force-delete every pod and wait for the sandboxes.
stop_proc kube-controller-manager 10
stop_proc kube-scheduler 10
if is_running kubelet && is_running kube-apiserver && apiserver_ready; then
  if [[ -n "$(kubectl_ get pods -A -o name 2>/dev/null | head -1)" ]]; then
    log "deleting all pods"
    kubectl_ delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  fi
  if containerd_ok; then
    wait_for "kubelet stopped every pod" 60 no_tasks || log "some pod tasks remain; killing them directly"
  fi
fi
stop_proc kubelet 20
stop_proc kube-proxy 10
if [[ -x "$BIN/kube-proxy" && -f "$STATE/kube-proxy-config.yaml" ]]; then
  timeout 30 "$BIN/kube-proxy" --cleanup --config "$STATE/kube-proxy-config.yaml" >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
  log "kube-proxy rules cleaned up"
fi

# 2. Whatever containers are left: kill them through containerd; remember their netns.
NETNS=()
if containerd_ok; then
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    ns="$(ctr_ containers info "$c" 2>/dev/null | jq -r '.Spec.linux.namespaces[]? | select(.type=="network") | .path // empty' 2>/dev/null)"
    [[ -n "$ns" ]] && NETNS+=("$ns")
    timeout 10 ctr_ tasks kill -a -s SIGKILL "$c" >/dev/null 2>&1 || true
  done
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    timeout 10 ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true
    timeout 10 ctr_ containers delete "$c" >/dev/null 2>&1 || true
  done
fi
stop_proc containerd 15
# shims of *this* containerd (matched on its socket path), if any outlived it
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTRD_SOCK( |$)" 2>/dev/null); do
  log "killing leftover shim $pid"; kill -KILL "$pid" 2>/dev/null || true
done

# containerd 1.6 puts shim sockets in /run/containerd/s whatever its state dir; drop the
# directories if they are empty now (rmdir never removes anything someone else still uses)
rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true

# 3. Control plane, etcd, registry.
stop_proc kube-apiserver 15
stop_proc etcd 15
stop_proc registry 5

# 4. Mounts under $STATE (deepest first), and the pod network namespaces.
for ns in "${NETNS[@]}"; do
  [[ "$ns" == /var/run/netns/* || "$ns" == /run/netns/* || "$ns" == "$STATE"/* ]] || continue
  umount "$ns" 2>/dev/null; rm -f "$ns" && log "removed netns $ns"
done
mounts_under() { awk -v s="$1" '{ gsub(/\\040/, " ", $5); if (index($5, s"/") == 1) print $5 }' /proc/self/mountinfo | sort -r; }
for _ in 1 2 3; do
  m="$(mounts_under "$STATE")"
  [[ -z "$m" ]] && break
  while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done <<<"$m"
done
if [[ -z "$(mounts_under "$STATE")" ]]; then log "no mounts left under $STATE"
else log "WARNING: mounts left under $STATE: $(mounts_under "$STATE" | tr '\n' ' ')"; fi

# 5. Host networking that up.sh created.
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then ip link del "$CNI_BRIDGE" && log "deleted bridge $CNI_BRIDGE"; fi
ip route del "$SERVICE_CIDR" dev "$NODE_IFACE" 2>/dev/null || true
if [[ -f "$RUN/created-links" ]]; then
  while read -r l; do ip link del "$l" 2>/dev/null && log "deleted link $l"; done <"$RUN/created-links"
  rm -f "$RUN/created-links"
fi
if iptables -w 5 -L "$IPT_CHAIN" -n >/dev/null 2>&1; then
  while iptables -w 5 -D FORWARD -j "$IPT_CHAIN" 2>/dev/null; do :; done
  iptables -w 5 -F "$IPT_CHAIN"; iptables -w 5 -X "$IPT_CHAIN"
  log "removed iptables chain $IPT_CHAIN"
fi
# KUBE-*/CNI-* chains the kubelet (KUBE-FIREWALL, canaries), kube-proxy and the portmap
# plugin created while this cluster ran: unhook them from every chain, flush, delete.
if [[ -f "$RUN/iptables-chains.before" ]]; then
  mapfile -t NEW < <(iptables_chains | grep -vxF -f "$RUN/iptables-chains.before")
  if ((${#NEW[@]})); then
    for e in "${NEW[@]}"; do
      read -r cmd t ch <<<"$e"
      "$cmd-save" -t "$t" | awk -v ch="$ch" '$1=="-A" && $0 ~ (" -j " ch "( |$)") {print}' | sed 's/^-A /-D /' |
        while read -r r; do eval "$cmd -w 5 -t $t $r" 2>/dev/null || true; done
    done
    for e in "${NEW[@]}"; do read -r cmd t ch <<<"$e"; "$cmd" -w 5 -t "$t" -F "$ch" 2>/dev/null || true; done
    for e in "${NEW[@]}"; do read -r cmd t ch <<<"$e"; "$cmd" -w 5 -t "$t" -X "$ch" 2>/dev/null || true; done
    log "removed ${#NEW[@]} KUBE-*/CNI-* iptables chains added while the cluster ran"
  fi
fi
if [[ -s "$RUN/ip_forward.orig" ]]; then
  cat "$RUN/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward && log "restored net.ipv4.ip_forward=$(<"$RUN/ip_forward.orig")"
fi

# 6. Check: nothing recorded is still running.
left=0
for f in "$RUN"/*.pid; do
  [[ -e "$f" ]] || continue
  n="$(basename "$f" .pid)"
  if is_running "$n"; then log "WARNING: $n still running (pid $(<"$f"))"; left=1; fi
done
if ((KEEP_STATE)); then
  log "state kept in $STATE"
else
  if [[ -z "$(mounts_under "$STATE")" ]]; then rm -rf "$STATE" && log "removed $STATE"
  else log "not removing $STATE: mounts remain"; left=1; fi
fi
((left)) && { log "teardown incomplete"; exit 1; }
log "cluster down"
