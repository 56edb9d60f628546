{{/*
Device pools: the defaults each device kind brings, one pool resolved with them, the pools.yaml
the gateway reads (GATEWAY_POOLS_FILE, docs/pools.md) and the checks on pools and upstreams.
*/}}

{{/*
What a device kind implies when the pool does not say: the Kubernetes extended resource of the
device plugin, the vendor, the software stack and the --device of `gateway worker` (ROCm builds of
PyTorch address AMD GPUs as "cuda").
*/}}
{{- define "gateway.deviceKinds" -}}
cpu: {resource: "", vendor: "", softwareStack: CPU, device: cpu}
cuda: {resource: nvidia.com/gpu, vendor: nvidia, softwareStack: CUDA, device: "cuda:0"}
rocm: {resource: amd.com/gpu, vendor: amd, softwareStack: ROCm, device: "cuda:0"}
npu: {resource: huawei.com/Ascend910, vendor: huawei, softwareStack: CANN, device: "npu:0"}
{{- end }}

{{/*
One worker pool with every default filled in (YAML; read it back with fromYaml):
dict "root" $ "pool" $pool. The pod resources are poolWorker.resources, overridden key by key by
the pool's resources, plus the device request and limit (devicesPerReplica of deviceResource).
*/}}
{{- define "gateway.resolvedPool" -}}
{{- $root := .root }}
{{- $p := deepCopy .pool }}
{{- $kind := index (include "gateway.deviceKinds" . | fromYaml) $p.deviceKind }}
{{- $resourceName := default $kind.resource $p.deviceResource }}
{{- $devices := int (ternary 0 1 (eq $p.deviceKind "cpu")) }}
{{- if hasKey $p "devicesPerReplica" }}{{ $devices = int $p.devicesPerReplica }}{{ end }}
{{- $resources := mergeOverwrite (deepCopy $root.Values.poolWorker.resources) (deepCopy (default (dict) $p.resources)) }}
{{- if and $resourceName (gt $devices 0) }}
  {{- $requests := default (dict) $resources.requests }}
  {{- $limits := default (dict) $resources.limits }}
  {{- $_ := set $requests $resourceName $devices }}
  {{- $_ := set $limits $resourceName $devices }}
  {{- $_ := set $resources "requests" $requests }}
  {{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- /* Another repository takes nothing but the pull policy from image.* (a digest or tag of
the gateway's image would name a different image there); its tag defaults to the appVersion. */}}
{{- $own := default (dict) $p.image }}
{{- $base := ternary (dict "pullPolicy" $root.Values.image.pullPolicy) $root.Values.image (not (empty $own.repository)) }}
{{- $image := mergeOverwrite (deepCopy $base) (deepCopy $own) }}
name: {{ $p.name }}
deviceKind: {{ $p.deviceKind }}
vendor: {{ default $kind.vendor $p.vendor | quote }}
softwareStack: {{ default $kind.softwareStack $p.softwareStack | quote }}
region: {{ $p.region | quote }}
sovereign: {{ default false $p.sovereign }}
variants: {{ default (list) $p.variants | toJson }}
workload: {{ default "Deployment" $p.workload }}
replicaCount: {{ ternary $p.replicaCount 1 (hasKey $p "replicaCount") | int }}
capacity: {{ default 64 $p.capacity | int }}
device: {{ default $kind.device $p.device | quote }}
deviceResource: {{ $resourceName | quote }}
devicesPerReplica: {{ $devices }}
dtype: {{ default $root.Values.config.dtype $p.dtype | quote }}
threads: {{ ternary $p.threads $root.Values.config.threads (hasKey $p "threads") | int }}
modelPath: {{ default $root.Values.config.modelPath $p.modelPath | quote }}
notes: {{ default "" $p.notes | quote }}
artifacts: {{ default (list) $p.artifacts | toJson }}
image: {{ $image | toJson }}
resources: {{ $resources | toJson }}
{{- end }}

{{/* Every worker pool resolved: a YAML list under "pools" (fromYaml needs a map). */}}
{{- define "gateway.resolvedPools" -}}
pools:
{{- range .Values.pools }}
  - {{ include "gateway.resolvedPool" (dict "root" $ "pool" .) | fromYaml | toJson }}
{{- end }}
{{- end }}

{{/*
The replicas of a worker pool in pools.yaml. A Deployment is reached through its Service, which
spreads connections over the pods at random: one entry that takes every pod's capacity. A
StatefulSet's pods have stable DNS names through the headless Service: one entry per pod, so the
gateway's health checks, prefix affinity and retries work pod by pod.
dict "root" $ "pool" $resolved.
*/}}
{{- define "gateway.poolReplicas" -}}
{{- $p := .pool }}
{{- $port := int .root.Values.poolWorker.port }}
{{- $name := include "gateway.poolName" . }}
{{- if eq $p.workload "StatefulSet" }}
{{- $headless := include "gateway.poolHeadlessName" . }}
{{- range $i := until (int $p.replicaCount) }}
- url: {{ printf "http://%s-%d.%s.%s.svc:%d" $name $i $headless $.root.Release.Namespace $port }}
  capacity: {{ $p.capacity }}
{{- end }}
{{- else if gt (int $p.replicaCount) 0 }}
- url: {{ printf "http://%s.%s.svc:%d" $name .root.Release.Namespace $port }}
  capacity: {{ mul $p.capacity $p.replicaCount }}
{{- end }}
{{- end }}

{{/* pools.yaml: the worker pools and the upstreams, in the gateway's pools-file format. */}}
{{- define "gateway.poolsFile" -}}
{{- $root := . }}
{{- $kinds := include "gateway.deviceKinds" . | fromYaml }}
{{- $entries := list }}
{{- range (include "gateway.resolvedPools" . | fromYaml).pools }}
  {{- $entry := dict
    "name" .name
    "device_kind" .deviceKind
    "vendor" .vendor
    "software_stack" .softwareStack
    "region" .region
    "sovereign" .sovereign
    "variants" .variants
    "backend" "worker"
    "replicas" (include "gateway.poolReplicas" (dict "root" $root "pool" .) | fromYamlArray)
  }}
  {{- with .notes }}{{ $_ := set $entry "notes" . }}{{ end }}
  {{- with .artifacts }}{{ $_ := set $entry "artifacts" . }}{{ end }}
  {{- $entries = append $entries $entry }}
{{- end }}
{{- range .Values.upstreams }}
  {{- $kind := index $kinds .deviceKind }}
  {{- $capacity := default 64 .capacity | int }}
  {{- $replicas := list }}
  {{- if .baseUrl }}
    {{- $replicas = append $replicas (dict "url" .baseUrl "capacity" $capacity) }}
  {{- end }}
  {{- range .replicas }}
    {{- $replicas = append $replicas (dict "url" .url "capacity" (default $capacity .capacity | int)) }}
  {{- end }}
  {{- $entry := dict
    "name" .name
    "device_kind" .deviceKind
    "vendor" (default $kind.vendor .vendor)
    "software_stack" (default $kind.softwareStack .softwareStack)
    "region" .region
    "sovereign" (default false .sovereign)
    "variants" (default (list) .variants)
    "backend" .dialect
    "models" (default (dict) .models)
    "replicas" $replicas
  }}
  {{- if .apiKeySecret }}
    {{- $_ := set $entry "api_key_env" (include "gateway.upstreamKeyEnv" .name) }}
  {{- end }}
  {{- with .notes }}{{ $_ := set $entry "notes" . }}{{ end }}
  {{- with .artifacts }}{{ $_ := set $entry "artifacts" . }}{{ end }}
  {{- $entries = append $entries $entry }}
{{- end }}
{{- dict "pools" $entries | toYaml }}
{{- end }}

{{/* True (non-empty) when the gateway gets a pools file. */}}
{{- define "gateway.hasPools" -}}
{{- if or .Values.pools .Values.upstreams }}true{{- end }}
{{- end }}

{{/* Each upstream's credential as a secretKeyRef env var (the gateway container only). */}}
{{- define "gateway.upstreamKeyEnvs" -}}
{{- range .Values.upstreams }}
{{- if .apiKeySecret }}
- name: {{ include "gateway.upstreamKeyEnv" .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .apiKeySecret.name }}
      key: {{ .apiKeySecret.key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks on pools and upstreams (included by gateway.validate). */}}
{{- define "gateway.validatePools" -}}
{{- $v := .Values }}
{{- $names := list }}
{{- range $v.pools }}
  {{- if has .name $names }}
    {{- fail (printf "gateway: the pool name %q is used twice (pools and upstreams share one registry)" .name) }}
  {{- end }}
  {{- $names = append $names .name }}
  {{- if and (eq .deviceKind "cpu") (or .deviceResource (gt (int (default 0 .devicesPerReplica)) 0)) }}
    {{- fail (printf "gateway: pools[%s] has deviceKind cpu: it requests no device (leave deviceResource and devicesPerReplica unset)" .name) }}
  {{- end }}
  {{- if and (ne .deviceKind "cpu") (hasKey . "devicesPerReplica") (lt (int .devicesPerReplica) 1) }}
    {{- fail (printf "gateway: pools[%s] has deviceKind %s: devicesPerReplica must be at least 1 (the device plugin hands out the device the worker runs on)" .name .deviceKind) }}
  {{- end }}
  {{- if and (ne (default "Deployment" .workload) "StatefulSet") (gt (mul (default 64 .capacity | int) (ternary .replicaCount 1 (hasKey . "replicaCount") | int)) 100000) }}
    {{- fail (printf "gateway: pools[%s]: capacity x replicaCount is its Service's capacity in pools.yaml and may not exceed 100000 (use workload StatefulSet, or a lower capacity)" .name) }}
  {{- end }}
  {{- $device := .device | default "" }}
  {{- if and $device (not (hasPrefix (ternary "cuda" .deviceKind (eq .deviceKind "rocm")) $device)) }}
    {{- fail (printf "gateway: pools[%s]: device %q does not match deviceKind %s (cpu, cuda[:N] for cuda and rocm, npu[:N])" .name $device .deviceKind) }}
  {{- end }}
{{- end }}
{{- range $v.pools }}
  {{- if and (eq (default "Deployment" .workload) "StatefulSet") (has (printf "%s-hl" .name) $names) }}
    {{- fail (printf "gateway: the pool %s-hl would share a Service name with the headless Service of the StatefulSet pool %s: rename one" .name .name) }}
  {{- end }}
{{- end }}
{{- range $v.upstreams }}
  {{- if has .name $names }}
    {{- fail (printf "gateway: the pool name %q is used twice (pools and upstreams share one registry)" .name) }}
  {{- end }}
  {{- $names = append $names .name }}
  {{- if not (or .baseUrl .replicas) }}
    {{- fail (printf "gateway: upstreams[%s] needs baseUrl or replicas" .name) }}
  {{- end }}
  {{- $urls := list (default "" .baseUrl) }}
  {{- range .replicas }}{{ $urls = append $urls .url }}{{ end }}
  {{- range $urls }}
    {{- if include "gateway.urlHasPassword" . }}
      {{- fail "gateway: an upstream URL carries a password and would land in the ConfigMap: put the credential into a Secret and name it in apiKeySecret" }}
    {{- end }}
  {{- end }}
{{- end }}
{{- if $v.pools }}
  {{- if $v.workerToken.existingSecret }}
    {{- if $v.secrets.workerToken }}
      {{- fail "gateway: workerToken.existingSecret is set, so secrets.workerToken must stay empty" }}
    {{- end }}
  {{- else if $v.existingSecret }}
    {{- if $v.secrets.workerToken }}
      {{- fail "gateway: existingSecret is set, so secrets.* must stay empty (put GATEWAY_WORKER_TOKEN into the existing Secret instead)" }}
    {{- end }}
  {{- else if not $v.secrets.workerToken }}
    {{- fail "gateway: pool workers need a shared token: set workerToken.existingSecret (a Secret with the key workerToken.key), put it into existingSecret, or set secrets.workerToken (at least 32 characters, e.g. openssl rand -hex 32)" }}
  {{- end }}
{{- else if $v.secrets.workerToken }}
  {{- fail "gateway: secrets.workerToken is set but no pools are defined" }}
{{- end }}
{{- end }}
