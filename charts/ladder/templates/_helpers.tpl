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
- name: LADDER_MAX_IN_FLIGHT
  value: {{ $l.maxInFlight | int64 | quote }}
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
