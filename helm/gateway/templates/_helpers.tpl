{{/*
Names, labels, the image, the environment and the checks shared by every template.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or <release>-<name>, or just the
release name when it already contains the chart name. 63 characters at most (DNS label).
*/}}
{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's resource name: <fullname>-<component>, 63 characters at most. */}}
{{- define "gateway.componentName" -}}
{{- $full := include "gateway.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{/* chart-version for the helm.sh/chart label. */}}
{{- define "gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "gateway.labels" -}}
helm.sh/chart: {{ include "gateway.chart" . }}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deepseek-gateway
{{- end }}

{{/* Selector labels of the release (no component). */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: dict "root" $ "component" "gateway". */}}
{{- define "gateway.componentLabels" -}}
{{ include "gateway.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component: dict "root" $ "component" "gateway". */}}
{{- define "gateway.componentSelectorLabels" -}}
{{ include "gateway.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount the gateway, worker and beat pods run as. */}}
{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The Secret that holds the gateway's secrets: existingSecret, or the chart's own. */}}
{{- define "gateway.secretName" -}}
{{- default (include "gateway.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* GATEWAY_JOBS: config.jobs, else celery when the worker runs, else inprocess. */}}
{{- define "gateway.jobs" -}}
{{- if .Values.config.jobs }}
{{- .Values.config.jobs }}
{{- else if .Values.worker.enabled }}
{{- "celery" }}
{{- else }}
{{- "inprocess" }}
{{- end }}
{{- end }}

{{/* True (non-empty) when a URL carries a password (scheme://user:password@host). */}}
{{- define "gateway.urlHasPassword" -}}
{{- if regexMatch "^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@" . }}true{{- end }}
{{- end }}

{{/*
Checks that stop the render with a message instead of deploying a broken release. Included by
the ConfigMap, which every render produces.
*/}}
{{- define "gateway.validate" -}}
{{- $v := .Values }}
{{- if $v.existingSecret }}
  {{- if or $v.secrets.keyPepper $v.secrets.auditKey $v.secrets.databaseUrl $v.secrets.redisUrl }}
    {{- fail "gateway: existingSecret is set, so secrets.* must stay empty (put the values into the existing Secret instead)" }}
  {{- end }}
{{- else }}
  {{- if not (and $v.secrets.keyPepper $v.secrets.auditKey) }}
    {{- fail "gateway: every replica must share the API-key pepper and the audit key: set existingSecret (a Secret with keys GATEWAY_KEY_PEPPER and GATEWAY_AUDIT_KEY) or both secrets.keyPepper and secrets.auditKey (e.g. openssl rand -hex 32)" }}
  {{- end }}
  {{- if and $v.database.urlFromSecret (not $v.secrets.databaseUrl) }}
    {{- fail "gateway: database.urlFromSecret needs existingSecret or secrets.databaseUrl" }}
  {{- end }}
  {{- if and $v.redis.urlFromSecret (not $v.secrets.redisUrl) }}
    {{- fail "gateway: redis.urlFromSecret needs existingSecret or secrets.redisUrl" }}
  {{- end }}
  {{- if and $v.secrets.databaseUrl (not $v.database.urlFromSecret) }}
    {{- fail "gateway: secrets.databaseUrl is set but database.urlFromSecret is false" }}
  {{- end }}
  {{- if and $v.secrets.redisUrl (not $v.redis.urlFromSecret) }}
    {{- fail "gateway: secrets.redisUrl is set but redis.urlFromSecret is false" }}
  {{- end }}
{{- end }}
{{- if not $v.database.urlFromSecret }}
  {{- if not $v.database.url }}
    {{- fail "gateway: set database.url (PostgreSQL, postgresql+asyncpg://USER@HOST:PORT/DB) or database.urlFromSecret" }}
  {{- end }}
  {{- if include "gateway.urlHasPassword" $v.database.url }}
    {{- fail "gateway: database.url carries a password and would land in the ConfigMap: put the URL into the Secret and set database.urlFromSecret=true" }}
  {{- end }}
{{- end }}
{{- if and (not $v.redis.urlFromSecret) $v.redis.url (include "gateway.urlHasPassword" $v.redis.url) }}
  {{- fail "gateway: redis.url carries a password and would land in the ConfigMap: put the URL into the Secret and set redis.urlFromSecret=true" }}
{{- end }}
{{- $hasRedis := or $v.redis.urlFromSecret $v.redis.url }}
{{- if and (not $hasRedis) $v.worker.enabled }}
  {{- fail "gateway: the Celery worker needs Redis (its broker): set redis.url or redis.urlFromSecret, or worker.enabled=false" }}
{{- end }}
{{- if and (not $hasRedis) (or $v.autoscaling.enabled (gt (int $v.gateway.replicaCount) 1)) }}
  {{- fail "gateway: more than one replica needs Redis (shared rate limits and budget reservations): set redis.url or redis.urlFromSecret" }}
{{- end }}
{{- if and $v.beat.enabled (not $v.worker.enabled) }}
  {{- fail "gateway: beat.enabled needs worker.enabled (beat only schedules; the worker runs the jobs)" }}
{{- end }}
{{- if and (eq (include "gateway.jobs" .) "celery") (not $v.worker.enabled) }}
  {{- fail "gateway: config.jobs=celery needs worker.enabled (and beat.enabled)" }}
{{- end }}
{{- if and $v.gateway.dataDir.existingClaim (or $v.autoscaling.enabled (gt (int $v.gateway.replicaCount) 1)) }}
  {{- fail "gateway: gateway.dataDir.existingClaim holds one process's usage spool: it needs gateway.replicaCount=1 and autoscaling.enabled=false" }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
  {{- fail "gateway: metrics.serviceMonitor.enabled needs metrics.enabled (GATEWAY_METRICS=prometheus)" }}
{{- end }}
{{- if and $v.autoscaling.enabled (not (or $v.autoscaling.targetCPUUtilizationPercentage $v.autoscaling.targetMemoryUtilizationPercentage)) }}
  {{- fail "gateway: autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- $managed := list "GATEWAY_KEY_PEPPER" "GATEWAY_AUDIT_KEY" "GATEWAY_DATABASE_URL" "GATEWAY_REDIS_URL" "GATEWAY_DATA_DIR" "GATEWAY_HOST" "GATEWAY_PORT" "GATEWAY_WORKER_TOKEN" "GATEWAY_POOLS_FILE" }}
{{- range $name, $_ := $v.config.extra }}
  {{- if or (has $name $managed) (hasPrefix "GATEWAY_UPSTREAM_KEY_" $name) }}
    {{- fail (printf "gateway: config.extra.%s is set by the chart (secrets come from existingSecret or secrets.*, upstream keys from upstreams[].apiKeySecret, pools from pools and upstreams; the rest from their own values)" $name) }}
  {{- end }}
{{- end }}
{{- include "gateway.validatePools" . }}
{{- end }}

{{/*
Environment variables from the Secret. dict "root" $ "all" true: the gateway gets the pepper,
the audit key and the URLs; "all" false (worker, beat): only the URLs.
*/}}
{{- define "gateway.secretEnv" -}}
{{- $v := .root.Values }}
{{- $secret := include "gateway.secretName" .root }}
{{- if .all }}
- name: GATEWAY_KEY_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecretKeys.keyPepper }}
- name: GATEWAY_AUDIT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecretKeys.auditKey }}
{{- end }}
{{- if $v.database.urlFromSecret }}
- name: GATEWAY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecretKeys.databaseUrl }}
{{- end }}
{{- if $v.redis.urlFromSecret }}
- name: GATEWAY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.existingSecretKeys.redisUrl }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when the configuration or the chart's Secret change. */}}
{{- define "gateway.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/config/secret.yaml") . | sha256sum }}
{{- end }}

{{/* The writable volumes under a read-only root filesystem: dict "root" $ "data" true. */}}
{{- define "gateway.scratchVolumes" -}}
{{- $g := .root.Values.gateway }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $g.tmpSizeLimit }}
{{- if .data }}
- name: data
  {{- if $g.dataDir.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $g.dataDir.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $g.dataDir.sizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{/* networkPolicy.egress plus DNS. */}}
{{- define "gateway.egressRules" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{ toYaml .Values.networkPolicy.egress }}
{{- end }}

{{/*
Pool workers (templates/pools). A pool's resource name: <fullname>-pool-<name>, 52 characters at
most (a StatefulSet's pods add "-N" and its revision label a hash to that name; 63 is the limit).
dict "root" $ "pool" $pool.
*/}}
{{- define "gateway.poolName" -}}
{{- $suffix := printf "pool-%s" .pool.name }}
{{- $full := include "gateway.fullname" .root | trunc (int (sub 51 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $full $suffix }}
{{- end }}

{{/* The headless Service that gives a StatefulSet pool's pods their DNS names. */}}
{{- define "gateway.poolHeadlessName" -}}
{{- printf "%s-hl" (include "gateway.poolName" .) }}
{{- end }}

{{/* Labels of one pool's objects: dict "root" $ "pool" $pool. */}}
{{- define "gateway.poolLabels" -}}
{{ include "gateway.componentLabels" (dict "root" .root "component" "pool-worker") }}
deepseek-gateway/pool: {{ .pool.name }}
{{- end }}

{{/* Selector labels of one pool's pods: dict "root" $ "pool" $pool. */}}
{{- define "gateway.poolSelectorLabels" -}}
{{ include "gateway.componentSelectorLabels" (dict "root" .root "component" "pool-worker") }}
deepseek-gateway/pool: {{ .pool.name }}
{{- end }}

{{/* The Secret that holds GATEWAY_WORKER_TOKEN: workerToken.existingSecret, else existingSecret,
else the chart's own Secret (secrets.workerToken). */}}
{{- define "gateway.workerTokenSecretName" -}}
{{- default (include "gateway.secretName" .) .Values.workerToken.existingSecret }}
{{- end }}

{{/* GATEWAY_WORKER_TOKEN by reference (gateway and pool worker containers). */}}
{{- define "gateway.workerTokenEnv" -}}
- name: GATEWAY_WORKER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "gateway.workerTokenSecretName" . }}
      key: {{ .Values.workerToken.key }}
{{- end }}

{{/* The environment variable that carries an upstream's credential: GATEWAY_UPSTREAM_KEY_<NAME>
(upper case, "-" -> "_"). Takes the upstream's name. */}}
{{- define "gateway.upstreamKeyEnv" -}}
{{- printf "GATEWAY_UPSTREAM_KEY_%s" (. | upper | replace "-" "_") }}
{{- end }}

{{/* The ConfigMap with pools.yaml, and where the gateway pods mount it. */}}
{{- define "gateway.poolsConfigName" -}}
{{- include "gateway.componentName" (dict "root" . "component" "pools") }}
{{- end }}
{{- define "gateway.poolsFileDir" -}}/etc/gateway/pools{{- end }}
