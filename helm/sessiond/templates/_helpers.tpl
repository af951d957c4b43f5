{{/*
Names, labels, the store mode, the settings and the checks shared by the
chart's templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "sessiond.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else
RELEASE-NAME, or RELEASE alone when it already contains NAME. Kept to 63
characters less room for the longest suffix ("-migrations").
*/}}
{{- define "sessiond.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sessiond.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that pick the release's pods: the server's and the migrations Job's. */}}
{{- define "sessiond.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessiond.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that pick the server's pods only. */}}
{{- define "sessiond.serverSelectorLabels" -}}
{{ include "sessiond.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels of every resource. */}}
{{- define "sessiond.labels" -}}
helm.sh/chart: {{ include "sessiond.chart" . }}
{{ include "sessiond.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sessiond.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessiond.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: repository@digest, or repository:tag (default appVersion). */}}
{{- define "sessiond.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when sessiond stores in PostgreSQL, "" for the embedded store. */}}
{{- define "sessiond.database.enabled" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/* The Secret and key holding the database URL. */}}
{{- define "sessiond.database.secretName" -}}
{{- default (include "sessiond.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{- define "sessiond.database.secretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* "true" when an API keys file is configured. */}}
{{- define "sessiond.auth.enabled" -}}
{{- if or .Values.auth.apiKeys .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{- define "sessiond.auth.secretName" -}}
{{- default (include "sessiond.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "sessiond.auth.secretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}api-keys.yaml{{ end }}
{{- end }}

{{/* The API keys file the chart writes from auth.apiKeys. */}}
{{- define "sessiond.auth.file" -}}
# sessiond API keys: each key's name, tenant, role and hash.
keys:
{{- range .Values.auth.apiKeys }}
  - name: {{ .name | toJson }}
    tenant: {{ .tenant | toJson }}
    role: {{ .role | toJson }}
    hash: {{ .hash | toJson }}
    {{- with .allow }}
    allow: {{ . | toJson }}
    {{- end }}
    {{- with .maxConcurrentCalls }}
    max_concurrent_calls: {{ . }}
    {{- end }}
    {{- with .maxStreams }}
    max_streams: {{ . }}
    {{- end }}
{{- end }}
{{ end }}

{{/* "true" when the chart creates a Secret (from database.url or auth.apiKeys). */}}
{{- define "sessiond.secret.enabled" -}}
{{- if or (and .Values.database.url (not .Values.database.existingSecret)) (and .Values.auth.apiKeys (not .Values.auth.existingSecret)) }}true{{ end }}
{{- end }}

{{/* The replicas the Deployment asks for: 1 for the embedded store. */}}
{{- define "sessiond.replicas" -}}
{{- if include "sessiond.database.enabled" . }}{{ int .Values.replicaCount }}{{ else }}1{{ end }}
{{- end }}

{{/* "true" when more than one pod may run, so a PodDisruptionBudget helps. */}}
{{- define "sessiond.multiReplica" -}}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) 1 }}true{{ end }}
{{- else if gt (int (include "sessiond.replicas" .)) 1 }}true{{ end }}
{{- end }}

{{/* Where the mounted files live (one projected volume at /etc/sessiond). */}}
{{- define "sessiond.paths" -}}
roles: /etc/sessiond/roles.yaml
logPolicy: /etc/sessiond/log-policy.yaml
apiKeys: /etc/sessiond/api-keys.yaml
tlsCert: /etc/sessiond/tls/tls.crt
tlsKey: /etc/sessiond/tls/tls.key
tlsClientCA: /etc/sessiond/tls/client-ca.crt
databaseUrl: /etc/sessiond/database-url
{{- end }}

{{/* The environment variables the chart sets itself; settings may not. */}}
{{- define "sessiond.chartOwnedSettings" -}}
{{- list "SESSIOND_LISTEN" "SESSIOND_DATA_DIR" "SESSIOND_ROLES_FILE" "SESSIOND_LOG_POLICY_FILE" "SESSIOND_SESSION_LOG_POLICY_FILE" "SESSIOND_LOG_FORMAT" "SESSIOND_LOG" "SESSIOND_DRAIN_TIMEOUT" "SESSIOND_DATABASE_URL" "SESSIOND_DATABASE_URL_FILE" "SESSIOND_DB_POOL_SIZE" "SESSIOND_DB_CONNECT_TIMEOUT" "SESSIOND_DB_STATEMENT_TIMEOUT" "SESSIOND_API_KEYS_FILE" "SESSIOND_ALLOW_UNAUTHENTICATED" "SESSIOND_TLS_CERT" "SESSIOND_TLS_KEY" "SESSIOND_TLS_CLIENT_CA" "SESSIOND_OTLP_ENDPOINT" "SESSIOND_METRICS_LISTEN" | toJson }}
{{- end }}

{{/*
A setting's value as text. YAML numbers arrive as floats, which would print
as 4.194304e+06: whole ones print as integers.
*/}}
{{- define "sessiond.settingValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
The non-secret settings, as a YAML map of SESSIOND_* variables to strings:
the settings ConfigMap's data.
*/}}
{{- define "sessiond.settings" -}}
{{- $paths := include "sessiond.paths" . | fromYaml }}
{{- $s := dict
  "SESSIOND_LISTEN" "0.0.0.0:50051"
  "SESSIOND_DATA_DIR" "/data"
  "SESSIOND_ROLES_FILE" $paths.roles
  "SESSIOND_LOG_FORMAT" .Values.logging.format
  "SESSIOND_LOG" .Values.logging.filter
  "SESSIOND_DRAIN_TIMEOUT" (printf "%ds" (int .Values.shutdown.drainTimeoutSeconds))
}}
{{- if .Values.logPolicy }}
{{- $_ := set $s "SESSIOND_SESSION_LOG_POLICY_FILE" $paths.logPolicy }}
{{- end }}
{{- if include "sessiond.database.enabled" . }}
{{- $_ := set $s "SESSIOND_DATABASE_URL_FILE" $paths.databaseUrl }}
{{- $_ := set $s "SESSIOND_DB_POOL_SIZE" (toString (int .Values.database.poolSize)) }}
{{- $_ := set $s "SESSIOND_DB_CONNECT_TIMEOUT" .Values.database.connectTimeout }}
{{- $_ := set $s "SESSIOND_DB_STATEMENT_TIMEOUT" .Values.database.statementTimeout }}
{{- end }}
{{- if include "sessiond.auth.enabled" . }}
{{- $_ := set $s "SESSIOND_API_KEYS_FILE" $paths.apiKeys }}
{{- end }}
{{- if .Values.auth.allowUnauthenticated }}
{{- $_ := set $s "SESSIOND_ALLOW_UNAUTHENTICATED" "true" }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $_ := set $s "SESSIOND_TLS_CERT" $paths.tlsCert }}
{{- $_ := set $s "SESSIOND_TLS_KEY" $paths.tlsKey }}
{{- if .Values.tls.clientCA.enabled }}
{{- $_ := set $s "SESSIOND_TLS_CLIENT_CA" $paths.tlsClientCA }}
{{- end }}
{{- end }}
{{- with .Values.telemetry.otlpEndpoint }}
{{- $_ := set $s "SESSIOND_OTLP_ENDPOINT" . }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $s "SESSIOND_METRICS_LISTEN" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- end }}
{{- range $name, $value := .Values.settings }}
{{- $_ := set $s $name (include "sessiond.settingValue" $value) }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/*
A probe's handler: the kubelet's native gRPC probe against grpc.health.v1
on the gRPC port; with TLS, which that probe does not speak, `sessiond
probe` run in the container (it reads the same SESSIOND_* settings, so it
speaks TLS to the loopback address of SESSIOND_LISTEN).
Called with (dict "root" $ "service" NAME "timeoutSeconds" N).
*/}}
{{- define "sessiond.probeHandler" -}}
{{- if .root.Values.tls.enabled }}
exec:
  command:
    - /usr/local/bin/sessiond
    - probe
    - --timeout={{ int .timeoutSeconds }}s
    {{- with .service }}
    - --service={{ . }}
    {{- end }}
{{- else }}
grpc:
  port: 50051
  {{- with .service }}
  service: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
"true" when the cluster runs the preStop sleep action (beta and on by
default from Kubernetes 1.30; older API servers refuse it).
*/}}
{{- define "sessiond.preStopSleep" -}}
{{- if and (gt (int .Values.shutdown.preStopSleepSeconds) 0) (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end }}

{{/* The OTLP collector's port: networkPolicy.otlp.port, the endpoint's, or 4317. */}}
{{- define "sessiond.otlpPort" -}}
{{- if .Values.networkPolicy.otlp.port }}
{{- int .Values.networkPolicy.otlp.port }}
{{- else }}
{{- $host := (urlParse .Values.telemetry.otlpEndpoint).host }}
{{- $parts := splitList ":" $host }}
{{- if and (gt (len $parts) 1) (regexMatch "^[0-9]+$" (last $parts)) }}{{ last $parts }}{{ else }}4317{{ end }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work, each with what to do instead. */}}
{{- define "sessiond.validate" -}}
{{- $database := include "sessiond.database.enabled" . }}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "sessiond: set database.url or database.existingSecret, not both." }}
{{- end }}
{{- if and (not $database) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "sessiond: replicaCount is %d, but without a database sessiond keeps its state in the embedded store, which only one replica can open. Set database.url or database.existingSecret to run several replicas, or set replicaCount: 1." (int .Values.replicaCount)) }}
{{- end }}
{{- if and (not $database) .Values.autoscaling.enabled }}
{{- fail "sessiond: autoscaling.enabled needs a database (database.url or database.existingSecret): the embedded store runs as a single replica." }}
{{- end }}
{{- if and $database .Values.persistence.enabled }}
{{- fail "sessiond: persistence.enabled keeps the embedded store on a volume, but with a database sessiond stores in PostgreSQL; set persistence.enabled: false." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "sessiond: autoscaling.minReplicas is above autoscaling.maxReplicas." }}
{{- end }}
{{- if and .Values.auth.apiKeys .Values.auth.existingSecret }}
{{- fail "sessiond: set auth.apiKeys or auth.existingSecret, not both." }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "sessiond: tls.enabled needs tls.existingSecret, a kubernetes.io/tls Secret with tls.crt and tls.key." }}
{{- end }}
{{- if and .Values.tls.clientCA.enabled (not .Values.tls.enabled) }}
{{- fail "sessiond: tls.clientCA.enabled needs tls.enabled." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "sessiond: metrics.serviceMonitor.enabled needs metrics.enabled." }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) 50051) }}
{{- fail "sessiond: metrics.port must differ from the gRPC port 50051." }}
{{- end }}
{{- $stopping := add (int .Values.shutdown.preStopSleepSeconds) (int .Values.shutdown.drainTimeoutSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) $stopping }}
{{- fail (printf "sessiond: terminationGracePeriodSeconds (%d) must exceed shutdown.preStopSleepSeconds + shutdown.drainTimeoutSeconds (%d), or pods are killed while they drain." (int .Values.terminationGracePeriodSeconds) $stopping) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "sessiond: ingress.enabled needs at least one entry in ingress.hosts." }}
{{- end }}
{{- if and .Values.grpcRoute.enabled (not .Values.grpcRoute.parentRefs) }}
{{- fail "sessiond: grpcRoute.enabled needs grpcRoute.parentRefs, the Gateway (and listener) the route attaches to." }}
{{- end }}
{{- $owned := include "sessiond.chartOwnedSettings" . | fromJsonArray }}
{{- range $name, $_ := .Values.settings }}
{{- if has $name $owned }}
{{- fail (printf "sessiond: settings.%s is set by the chart; use its own value (see values.yaml)." $name) }}
{{- end }}
{{- end }}
{{- /* Last, so that the other refusals name their own cause. */}}
{{- if not (or (include "sessiond.auth.enabled" .) (and .Values.tls.enabled .Values.tls.clientCA.enabled) .Values.auth.allowUnauthenticated) }}
{{- fail "sessiond: no authentication configured, so every caller would be an admin of tenant 'default'. Set auth.apiKeys (hashes from `sessiond hash-key --generate`) or auth.existingSecret, or require client certificates (tls.clientCA.enabled), or set auth.allowUnauthenticated: true to serve open on purpose." }}
{{- end }}
{{- end }}
