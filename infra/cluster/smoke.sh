#!/usr/bin/env bash
# Smoke test for the cluster from infra/cluster/up.sh, with the kubectl built there.
#   full mode:           restricted namespace, PodSecurity rejects a privileged pod, a
#                        Deployment from the local base image (pulled via the local
#                        registry) runs a Node HTTP server as uid 65534, it gets Ready,
#                        the host reaches it on its pod IP (and through its Service IP when
#                        kube-proxy runs), EndpointSlice, NetworkPolicy API, scale to 0.
#   control-plane-only:  the same API-level checks; the pod stays Pending (no node).
# Exit 0 only if every check passed. Everything is bounded in time.
set -Eeuo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

MODE="$(cat "$STATE/mode" 2>/dev/null || echo none)"
[[ "$MODE" == full || "$MODE" == control-plane ]] || die "no cluster at $STATE (run infra/cluster/up.sh)"
apiserver_ready || die "kube-apiserver is not ready"
NS="berth-smoke-$$"
PASS=0 FAIL=0
ok()   { PASS=$((PASS + 1)); log "PASS: $*"; }
bad()  { FAIL=$((FAIL + 1)); log "FAIL: $*"; }
cleanup() {
  kubectl_ delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "smoke test: mode=$MODE namespace=$NS"

kubectl_ create namespace "$NS" >/dev/null
kubectl_ label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest >/dev/null
ok "namespace $NS labelled pod-security.kubernetes.io/enforce=restricted"
wait_for "default service account in $NS" 30 kubectl_ -n "$NS" get serviceaccount default \
  || bad "no default service account (controller-manager)"

# --- PodSecurity must reject a privileged pod
out="$(kubectl_ -n "$NS" apply -f - 2>&1 <<EOF || true
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
  - name: c
    image: $BASE_IMAGE
    command: ["node", "-e", "setInterval(()=>{}, 1000)"]
    securityContext: {privileged: true}
EOF
)"
if grep -q 'violates PodSecurity "restricted' <<<"$out"; then
  ok "privileged pod rejected: $(grep -o 'violates PodSecurity[^:]*' <<<"$out" | head -1)"
else
  bad "privileged pod was not rejected by PodSecurity: $out"
  kubectl_ -n "$NS" delete pod privileged --grace-period=0 --force >/dev/null 2>&1 || true
fi

# --- a restricted web workload from the local base image
PULL=IfNotPresent; [[ "$MODE" == full ]] && PULL=Always   # Always: resolve through the local registry
kubectl_ -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 2
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        runAsGroup: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: web
        image: $BASE_IMAGE
        imagePullPolicy: $PULL
        command: ["node", "-e", "require('http').createServer((q, s) => s.end('berth-smoke-ok uid=' + process.getuid())).listen(8080, () => console.log('berth-smoke listening'))"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        resources:
          requests: {cpu: 10m, memory: 32Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: ["ALL"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress}
spec:
  podSelector: {}
  policyTypes: [Egress]
EOF
ok "Deployment, Service and NetworkPolicy accepted in the restricted namespace"

pod_name() { kubectl_ -n "$NS" get pods -l app=web -o 'jsonpath={.items[0].metadata.name}'; }
pod_exists() { [[ -n "$(pod_name 2>/dev/null)" ]]; }
if wait_for "ReplicaSet created a pod" 60 pod_exists; then ok "controller-manager created pod $(pod_name)"; else bad "no pod created"; fi

if [[ "$MODE" == full ]]; then
  if timeout 150 "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" -n "$NS" wait --for=condition=Ready pod -l app=web --timeout=140s >/dev/null; then
    ok "pod Ready (scheduled to $(kubectl_ -n "$NS" get pod "$(pod_name)" -o 'jsonpath={.spec.nodeName}'))"
  else
    bad "pod not Ready"; kubectl_ -n "$NS" describe pods -l app=web | tail -25 >&2 || true
  fi
  IP="$(kubectl_ -n "$NS" get pod "$(pod_name)" -o 'jsonpath={.status.podIP}')"
  body="$(curl -sS --max-time 5 --noproxy '*' "http://$IP:8080/" 2>&1 || true)"
  if [[ "$body" == "berth-smoke-ok uid=65534" ]]; then ok "curl http://$IP:8080/ from the host -> '$body'"; else bad "curl pod IP $IP: '$body'"; fi
  slice_has_ip() { [[ -n "$IP" ]] && out_has -wF "$IP" kubectl_ -n "$NS" get endpointslices -l kubernetes.io/service-name=web -o 'jsonpath={.items[*].endpoints[*].addresses[*]}'; }
  if wait_for "EndpointSlice lists $IP" 30 slice_has_ip; then ok "EndpointSlice for service web lists $IP"; else bad "EndpointSlice lacks $IP"; fi
  if is_running kube-proxy; then
    CIP="$(kubectl_ -n "$NS" get service web -o 'jsonpath={.spec.clusterIP}')"
    svc_ok() { [[ "$(curl -s --max-time 2 --noproxy '*' "http://$CIP/")" == berth-smoke-ok* ]]; }
    if wait_for "Service IP $CIP answers" 30 svc_ok; then ok "curl http://$CIP/ (ClusterIP via kube-proxy) answered"; else bad "Service IP $CIP did not answer"; fi
  fi
  logs_ok() { out_has -F 'berth-smoke listening' kubectl_ -n "$NS" logs "$(pod_name)"; }
  if wait_for "kubectl logs (apiserver -> kubelet)" 20 logs_ok; then ok "kubectl logs shows the server's output"; else bad "kubectl logs"; fi
  ex="$(kubectl_ -n "$NS" exec "$(pod_name)" -- node -e 'console.log(require("os").userInfo().uid)' 2>&1 || true)"
  if [[ "$ex" == 65534 ]]; then ok "kubectl exec runs in the pod (uid $ex)"; else bad "kubectl exec: $ex"; fi
  # nothing in a pod may be routed off this machine: no default route in the pod netns
  rt="$(kubectl_ -n "$NS" exec "$(pod_name)" -- node -e 'process.stdout.write(require("fs").readFileSync("/proc/net/route","utf8"))' 2>&1 || true)"
  if [[ "$rt" == Iface* ]] && ! awk 'NR > 1 && $2 == "00000000" {f = 1} END {exit !f}' <<<"$rt"; then
    ok "pod has no default route (routes: $(awk 'NR > 1 {printf "%s ", $2}' <<<"$rt"))"
  else
    bad "pod routing table: $rt"
  fi
  u="$(kubectl_ -n "$NS" get pod "$(pod_name)" -o 'jsonpath={.spec.securityContext.runAsUser}')"
  if [[ "$u" == 65534 ]]; then ok "pod runs as uid 65534"; else bad "runAsUser=$u"; fi
else
  unschedulable() {
    out_has -x Unschedulable kubectl_ -n "$NS" get pod "$(pod_name)" -o 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}'
  }
  if wait_for "scheduler marks the pod Unschedulable (no node)" 30 unschedulable; then ok "scheduler ran (pod Pending: no node in control-plane-only mode)"; else bad "scheduler did not report"; fi
fi

# --- scale subresource: scale to zero, the pod goes away
kubectl_ -n "$NS" scale deployment web --replicas=0 >/dev/null
sc="$(kubectl_ -n "$NS" get deployment web --subresource=scale -o 'jsonpath={.spec.replicas}')" || sc=error
sc="${sc:-0}"   # a Scale with 0 replicas omits the field
no_pods() { [[ -z "$(kubectl_ -n "$NS" get pods -l app=web -o name)" ]]; }
if [[ "$sc" == 0 ]] && wait_for "pods gone after scale to 0" 60 no_pods; then ok "scale subresource: replicas=0, pods gone"; else bad "scale to zero (scale.spec.replicas=$sc)"; fi

# --- cleanup
kubectl_ delete namespace "$NS" --wait=false >/dev/null
ns_gone() { ! kubectl_ get namespace "$NS" >/dev/null 2>&1; }
if wait_for "namespace $NS deleted" 120 ns_gone; then ok "namespace deleted"; else bad "namespace $NS not deleted in 120s"; fi
trap - EXIT

echo "smoke: $PASS passed, $FAIL failed"
((FAIL == 0))
