/**
 * The objects of one app: an immutable Secret with its config vars, one Deployment
 * per process type, a Service for web, and bare pods for one-off runs. Pure
 * functions: what gets applied is decided here, and tested without a cluster.
 */
import type { DesiredApp, DynoSize, ProcessSpec } from "../port.ts";
import type { KubeObject } from "./kube.ts";
import type { RunImage } from "./image.ts";
import {
  A_APP_IMAGE,
  A_APP_NAME,
  A_PROCESS_TYPE,
  APP_CONTAINER,
  APP_PORT,
  DYNO_GATE,
  L_APP,
  L_DYNO,
  L_MANAGED_BY,
  L_PROCESS,
  L_RELEASE,
  L_ROLE,
  L_SIZE,
  L_SPEC,
  MANAGED_BY,
  deploymentName,
  envSecretName,
  hash,
  processLabel,
  serviceName,
} from "./names.ts";

/** The uid and gid every process runs as (nobody), as in the local runtime. */
export const DYNO_UID = 65534;

/**
 * PID 1 of every dyno: runs the command in a child shell and passes SIGTERM on to
 * every process of the container (its process group), then exits with the command's
 * status. A plain `sh -c "<command>"` as PID 1 would ignore the kubelet's SIGTERM
 * (PID 1 has no default signal actions) and every stop would wait out the grace period.
 */
export const DYNO_INIT = [
  `trap 'trap "" TERM INT; kill -TERM 0 2>/dev/null; signalled=1' TERM INT`,
  `/bin/sh -c "$BERTH_COMMAND" &`,
  `child=$!`,
  // A trapped signal interrupts wait (status 128+n): wait again for the command's own status.
  `while :; do signalled=; wait "$child"; code=$?; [ -z "$signalled" ] && exit "$code"; done`,
].join("\n");

export interface WorkloadInput {
  namespace: string;
  desired: DesiredApp;
  image: RunImage;
  secretName: string;
  runtimeClassName?: string | undefined;
}

export function appLabels(appId: string): Record<string, string> {
  return { [L_MANAGED_BY]: MANAGED_BY, [L_APP]: appId };
}

/** Deployment selector (immutable once created): one app, one process type, dynos only. */
export function processSelector(appId: string, type: string): Record<string, string> {
  return { [L_APP]: appId, [L_PROCESS]: processLabel(type), [L_ROLE]: "dyno" };
}

export function envSecret(namespace: string, desired: DesiredApp): KubeObject {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(desired.env)) data[k] = Buffer.from(v, "utf8").toString("base64");
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: envSecretName(desired.appId, desired.env), namespace, labels: appLabels(desired.appId) },
    // Content-addressed and immutable: a release's config can never change under running pods.
    immutable: true,
    type: "Opaque",
    data,
  } as KubeObject;
}

export function resources(size: DynoSize): Record<string, Record<string, string>> {
  const cpu = `${Math.max(1, Math.round((size.cpuShares * 1000) / 1024))}m`;
  const memory = `${size.memoryMb}Mi`;
  // No CPU limit: dynos share CPU by weight (requests), as cpu.shares does locally.
  return { requests: { cpu, memory }, limits: { memory } };
}

const POD_SECURITY = {
  runAsNonRoot: true,
  runAsUser: DYNO_UID,
  runAsGroup: DYNO_UID,
  seccompProfile: { type: "RuntimeDefault" },
};

const CONTAINER_SECURITY = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  runAsUser: DYNO_UID,
  runAsGroup: DYNO_UID,
};

function readinessProbe(healthCheckPath: string | undefined): Record<string, unknown> {
  const check = healthCheckPath ? { httpGet: { path: healthCheckPath, port: APP_PORT } } : { tcpSocket: { port: APP_PORT } };
  // Ready on the first success; out of rotation after three failures in a row.
  return { ...check, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 };
}

/** The pod spec every process (dyno or one-off) runs with. */
function podSpec(input: WorkloadInput, opts: { command: string; size: DynoSize; web: boolean; dyno: { fromLabel: true } | { value: string } }): Record<string, unknown> {
  const { desired } = input;
  const env: Record<string, unknown>[] = [
    { name: "BERTH_COMMAND", value: opts.command },
    { name: "PORT", value: String(APP_PORT) },
    "value" in opts.dyno ? { name: "DYNO", value: opts.dyno.value } : { name: "DYNO", valueFrom: { fieldRef: { fieldPath: `metadata.labels['${L_DYNO}']` } } },
  ];
  return {
    automountServiceAccountToken: false,
    // Service env vars of other apps in the team namespace would leak their existence.
    enableServiceLinks: false,
    terminationGracePeriodSeconds: Math.max(1, Math.ceil(desired.graceMs / 1000)),
    ...(input.runtimeClassName ? { runtimeClassName: input.runtimeClassName } : {}),
    securityContext: POD_SECURITY,
    containers: [
      {
        name: APP_CONTAINER,
        image: input.image.reference,
        imagePullPolicy: "IfNotPresent",
        workingDir: "/workspace",
        command: ["/bin/sh", "-c", DYNO_INIT],
        env,
        envFrom: [{ secretRef: { name: input.secretName } }],
        ...(opts.web ? { ports: [{ name: "web", containerPort: APP_PORT, protocol: "TCP" }], readinessProbe: readinessProbe(desired.healthCheckPath) } : {}),
        resources: resources(opts.size),
        securityContext: CONTAINER_SECURITY,
        volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
      },
    ],
    // A writable /tmp on a read-only root; memory-backed, so it counts against the dyno's memory as locally.
    volumes: [{ name: "tmp", emptyDir: { medium: "Memory", sizeLimit: `${opts.size.memoryMb}Mi` } }],
  };
}

export function deployment(input: WorkloadInput, proc: ProcessSpec): KubeObject {
  const { desired, namespace } = input;
  const web = proc.type === "web";
  const spec = podSpec(input, { command: proc.command, size: proc.size, web, dyno: { fromLabel: true } });
  const templateLabels = {
    ...appLabels(desired.appId),
    ...processSelector(desired.appId, proc.type),
    [L_RELEASE]: String(desired.release),
    [L_SIZE]: proc.size.name,
  };
  const annotations = { [A_APP_NAME]: desired.appName, [A_PROCESS_TYPE]: proc.type, [A_APP_IMAGE]: input.image.appImage };
  // Pods are created gated: the runtime names each (web.1, web.2…) and lets it schedule (dynos.ts).
  const podTemplateSpec = { ...spec, schedulingGates: [{ name: DYNO_GATE }] };
  const specHash = hash(JSON.stringify({ templateLabels, annotations, podTemplateSpec }), 12);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: deploymentName(desired.appId, proc.type),
      namespace,
      labels: { ...appLabels(desired.appId), [L_PROCESS]: processLabel(proc.type) },
      annotations: { [A_APP_NAME]: desired.appName, [A_PROCESS_TYPE]: proc.type },
    },
    spec: {
      replicas: proc.quantity,
      revisionHistoryLimit: 3,
      selector: { matchLabels: processSelector(desired.appId, proc.type) },
      // Start-first: a new pod must be ready before an old one is stopped.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: { metadata: { labels: { ...templateLabels, [L_SPEC]: specHash }, annotations }, spec: podTemplateSpec },
    },
  } as KubeObject;
}

export function webService(namespace: string, desired: DesiredApp): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: serviceName(desired.appId), namespace, labels: { ...appLabels(desired.appId), [L_PROCESS]: "web" }, annotations: { [A_APP_NAME]: desired.appName } },
    spec: {
      type: "ClusterIP",
      selector: processSelector(desired.appId, "web"),
      ports: [{ name: "web", port: 80, targetPort: APP_PORT, protocol: "TCP" }],
    },
  } as KubeObject;
}

/** A one-off process (`release:` phase, `heroku run`): a bare pod, never restarted, killed at its deadline. */
export function oneOffPod(input: WorkloadInput, command: string, opts: { name: string; dyno: string; timeoutMs: number; size: DynoSize }): KubeObject {
  const { desired, namespace } = input;
  const spec = podSpec(input, { command, size: opts.size, web: false, dyno: { value: opts.dyno } });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: opts.name,
      namespace,
      labels: { ...appLabels(desired.appId), [L_PROCESS]: "run", [L_ROLE]: "one-off", [L_DYNO]: opts.dyno, [L_RELEASE]: String(desired.release), [L_SIZE]: opts.size.name },
      annotations: { [A_APP_NAME]: desired.appName, [A_PROCESS_TYPE]: "run", [A_APP_IMAGE]: input.image.appImage },
    },
    spec: { ...spec, restartPolicy: "Never", activeDeadlineSeconds: Math.max(1, Math.ceil(opts.timeoutMs / 1000) + 5) },
  } as KubeObject;
}

