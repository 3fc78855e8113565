{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ladder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart name. */}}
{{- define "ladder.fullname" -}}
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

{{- define "ladder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ladder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ladder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ladder.labels" -}}
helm.sh/chart: {{ include "ladder.chart" . }}
{{ include "ladder.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ladder
{{- end }}

{{/* The image reference; a digest wins over a tag. */}}
{{- define "ladder.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the TLS Secret is mounted, and the file names its keys are projected to. */}}
{{- define "ladder.tlsDir" -}}/etc/ladder/tls{{- end }}

{{/* The topic spec file the provisioning job reads. */}}
{{- define "ladder.topicsFile" -}}
{{- if .Values.topics.spec }}/etc/ladder/topics/topics.yaml{{ else }}/usr/share/ladder/topics/topics.yaml{{ end }}
{{- end }}

{{/*
The ladder section of the topic spec in the image (topics/topics.yaml), which
the provisioning job applies when topics.spec is empty. The chart cannot read
the image, so it keeps this copy; TestImageSpecMatchesChart keeps it equal.
*/}}
{{- define "ladder.imageTopicSpec" -}}
topicPrefix: delay-
tiers: [1m, 15m, 1h, 6h]
{{- end }}

{{/*
A tier delay in milliseconds, "" when it is not whole milliseconds: Go's
duration syntax (90s, 1h30m, 1.5h, 500ms) or whole days (2d), as ladder
parses it.
*/}}
{{- define "ladder.delayMillis" -}}
{{- $s := toString . | trim }}
{{- $ms := 0.0 }}
{{- if regexMatch "^[1-9][0-9]*d$" $s }}
{{- $ms = mulf (float64 (trimSuffix "d" $s)) 86400000.0 }}
{{- else }}
{{- $unit := dict "ns" 0.000001 "us" 0.001 "µs" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $s -1 }}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $ms = addf $ms (mulf (float64 $n) (get $unit (trimPrefix $n .))) }}
{{- end }}
{{- end }}
{{- $ms = round $ms 6 }}
{{- if and (gt $ms 0.0) (eq (floor $ms) $ms) }}{{ int64 $ms }}{{ end }}
{{- end }}

{{/*
The tier topic names of a prefix and a list of delays (dict "prefix" "tiers"),
shortest delay first, ", "-separated: the prefix plus the delay in its
shortest exact unit, as ladder names them (60s and 1m are both delay-1m).
*/}}
{{- define "ladder.tierTopics" -}}
{{- $keyed := list }}
{{- range .tiers }}
{{- $ms := include "ladder.delayMillis" . }}
{{- $label := toString . }}
{{- if $ms }}
{{- $n := int64 $ms }}
{{- if eq (mod $n 86400000) 0 }}{{ $label = printf "%dd" (div $n 86400000) }}
{{- else if eq (mod $n 3600000) 0 }}{{ $label = printf "%dh" (div $n 3600000) }}
{{- else if eq (mod $n 60000) 0 }}{{ $label = printf "%dm" (div $n 60000) }}
{{- else if eq (mod $n 1000) 0 }}{{ $label = printf "%ds" (div $n 1000) }}
{{- else }}{{ $label = printf "%dms" $n }}
{{- end }}
{{- end }}
{{- $keyed = append $keyed (printf "%020s %s%s" ($ms | default "0") $.prefix $label) }}
{{- end }}
{{- $names := list }}
{{- range sortAlpha $keyed }}
{{- $names = append $names (regexReplaceAll "^ *[0-9]+ " . "") }}
{{- end }}
{{- join ", " $names }}
{{- end }}

{{/*
Fails the render when the forwarders' tiers (ladder.tiers, ladder.topicPrefix)
are not the tiers of the topic spec the provisioning job applies: the
forwarders would read topics that were never provisioned. `ladder topics`
refuses the same mismatch.
*/}}
{{- define "ladder.checkTopicSpec" -}}
{{- if .Values.topics.provision }}
{{- $source := printf "the topic spec in the image (%s)" (include "ladder.topicsFile" .) }}
{{- $spec := include "ladder.imageTopicSpec" . | fromYaml }}
{{- $hint := "; for other tiers give their topic spec in topics.spec" }}
{{- if .Values.topics.spec }}
{{- $source = "topics.spec" }}
{{- $spec = .Values.topics.spec.ladder | default dict }}
{{- $hint = "" }}
{{- end }}
{{- $want := include "ladder.tierTopics" (dict "prefix" ($spec.topicPrefix | default "delay-") "tiers" ($spec.tiers | default list)) }}
{{- $have := include "ladder.tierTopics" (dict "prefix" .Values.ladder.topicPrefix "tiers" .Values.ladder.tiers) }}
{{- if ne $want $have }}
{{- fail (printf "ladder.tiers %v and ladder.topicPrefix %q name the tier topics %s, but %s, which the provisioning job applies, names %s: the forwarders would read topics that are never provisioned. Make them agree%s." .Values.ladder.tiers .Values.ladder.topicPrefix $have $source $want $hint) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The shutdown timeout the forwarder is given, and the longer grace period of its pod. */}}
{{- define "ladder.terminationGracePeriodSeconds" -}}
{{- $shutdown := int .Values.ladder.shutdownTimeoutSeconds }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if eq $grace 0 }}
{{- add $shutdown 15 }}
{{- else if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed ladder.shutdownTimeoutSeconds (%d): the kubelet would kill the forwarder before its in-flight records are acknowledged" $grace $shutdown) }}
{{- else }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
The LADDER_* environment shared by the forwarders and the provisioning job.
Every value is a string; numbers go through int64 so large ones do not
render as 1e+06.
*/}}
{{- define "ladder.env" -}}
{{- $k := .Values.kafka }}
{{- $l := .Values.ladder }}
- name: LADDER_BROKERS
  value: {{ join "," $k.brokers | quote }}
- name: LADDER_KAFKA_VERSION
  value: {{ $k.version | quote }}
- name: LADDER_CLIENT_ID
  value: {{ $k.clientId | quote }}
- name: LADDER_TIERS
  value: {{ join "," $l.tiers | quote }}
- name: LADDER_TOPIC_PREFIX
  value: {{ $l.topicPrefix | quote }}
- name: LADDER_GROUP
  value: {{ $l.group | quote }}
- name: LADDER_BUFFER_MEMORY
  value: {{ $l.bufferMemory | quote }}
- name: LADDER_TARGET_TIMEOUT
  value: {{ $l.targetTimeout | quote }}
- name: LADDER_RESUME_LEAD
  value: {{ $l.resumeLead | quote }}
- name: LADDER_MAX_HOPS
  value: {{ $l.maxHops | int64 | quote }}
- name: LADDER_SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int64 $l.shutdownTimeoutSeconds) | quote }}
- name: LADDER_STATS_INTERVAL
  value: {{ $l.statsInterval | quote }}
- name: LADDER_LOG_LEVEL
  value: {{ $l.logLevel | quote }}
- name: LADDER_LOG_FORMAT
  value: {{ $l.logFormat | quote }}
- name: LADDER_HTTP_ADDR
  value: {{ printf ":%d" (int64 .Values.httpPort) | quote }}
- name: LADDER_EXACTLY_ONCE
  value: {{ $l.exactlyOnce | toString | quote }}
{{- with $l.workAhead }}
- name: LADDER_WORKAHEAD_ENABLED
  value: {{ .enabled | toString | quote }}
{{- if .enabled }}
{{- if not (kindIs "invalid" .lagThreshold) }}
- name: LADDER_WORKAHEAD_LAG_THRESHOLD
  value: {{ .lagThreshold | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" .rate) }}
- name: LADDER_WORKAHEAD_RATE
  value: {{ .rate | int64 | quote }}
{{- end }}
{{- with .lanes }}
{{- $pairs := list }}
{{- range . }}
{{- $pairs = append $pairs (printf "%s=%s" .target .group) }}
{{- end }}
- name: LADDER_WORKAHEAD_LANES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $k.sasl }}
{{- if .mechanism }}
- name: LADDER_SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: LADDER_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with a SASL mechanism" .existingSecret | quote }}
      key: {{ .usernameKey | quote }}
- name: LADDER_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
{{- end }}
{{- with $k.tls }}
{{- if .enabled }}
- name: LADDER_TLS_ENABLED
  value: "true"
{{- if and .existingSecret .caKey }}
- name: LADDER_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" (include "ladder.tlsDir" $) | quote }}
{{- end }}
{{- if and .existingSecret .certKey .keyKey }}
- name: LADDER_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "ladder.tlsDir" $) | quote }}
- name: LADDER_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "ladder.tlsDir" $) | quote }}
{{- end }}
{{- with .serverName }}
- name: LADDER_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if .insecureSkipVerify }}
- name: LADDER_TLS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the TLS Secret is mounted. */}}
{{- define "ladder.tlsMounted" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret (or .Values.kafka.tls.caKey .Values.kafka.tls.certKey) }}true{{ end }}
{{- end }}

{{/* Volumes for the TLS files, mounted from the existing Secret under fixed names. */}}
{{- define "ladder.tlsVolume" -}}
{{- if include "ladder.tlsMounted" . }}
{{- $t := .Values.kafka.tls }}
- name: kafka-tls
  secret:
    secretName: {{ $t.existingSecret | quote }}
    defaultMode: 0440
    items:
      {{- if $t.caKey }}
      - key: {{ $t.caKey | quote }}
        path: ca.crt
      {{- end }}
      {{- if and $t.certKey $t.keyKey }}
      - key: {{ $t.certKey | quote }}
        path: tls.crt
      - key: {{ $t.keyKey | quote }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{- define "ladder.tlsVolumeMount" -}}
{{- if include "ladder.tlsMounted" . }}
- name: kafka-tls
  mountPath: {{ include "ladder.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the forwarders and the job. */}}
{{- define "ladder.podCommon" -}}
enableServiceLinks: false
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . | quote }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The job's volumes: the topic spec ConfigMap (unless the image's spec is used) and the TLS files. */}}
{{- define "ladder.topicsVolumes" -}}
{{- if .Values.topics.spec }}
- name: topics
  configMap:
    name: {{ include "ladder.fullname" . }}-topics
{{- end }}
{{- include "ladder.tlsVolume" . }}
{{- end }}

{{/* The job containers' volumeMounts key, or nothing when there is nothing to mount. */}}
{{- define "ladder.topicsVolumeMounts" -}}
{{- $tls := include "ladder.tlsVolumeMount" . | trim }}
{{- if or .Values.topics.spec $tls }}
volumeMounts:
{{- if .Values.topics.spec }}
  - name: topics
    mountPath: /etc/ladder/topics
    readOnly: true
{{- end }}
{{- with $tls }}
  {{- . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
