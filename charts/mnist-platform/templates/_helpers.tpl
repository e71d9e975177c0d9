{{/* Chart name, 63 chars max (a DNS label). */}}
{{- define "mnist-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart> unless the release already contains the chart name. */}}
{{- define "mnist-platform.fullname" -}}
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

{{/* <fullname>-<suffix>, kept a DNS label (suffixes are short, the prefix gives way). */}}
{{- define "mnist-platform.componentName" -}}
{{- $root := index . 0 }}{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "mnist-platform.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "mnist-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "mnist-platform.labels" -}}
helm.sh/chart: {{ include "mnist-platform.chart" . }}
{{ include "mnist-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnist-platform
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: name + instance only (never change on upgrade). */}}
{{- define "mnist-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (list $ "frontend"). */}}
{{- define "mnist-platform.componentLabels" -}}
{{ include "mnist-platform.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "mnist-platform.componentSelectorLabels" -}}
{{ include "mnist-platform.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* image reference: call with (list $ .Values.frontend.image). */}}
{{- define "mnist-platform.image" -}}
{{- $root := index . 0 }}{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* Names shared between templates (and with the operator through its environment). */}}
{{- define "mnist-platform.modelConfigName" -}}{{ include "mnist-platform.componentName" (list . "model-config") }}{{- end }}
{{- define "mnist-platform.routingName" -}}{{ include "mnist-platform.componentName" (list . "routing") }}{{- end }}
{{- define "mnist-platform.servingConfigName" -}}{{ include "mnist-platform.componentName" (list . "serving-config") }}{{- end }}
{{- define "mnist-platform.servingGrpcName" -}}{{ include "mnist-platform.componentName" (list . "serving-grpc") }}{{- end }}
{{- define "mnist-platform.servingRestName" -}}{{ include "mnist-platform.componentName" (list . "serving-rest") }}{{- end }}
{{- define "mnist-platform.servingHeadlessName" -}}{{ include "mnist-platform.componentName" (list . "serving-headless") }}{{- end }}
{{- define "mnist-platform.frontendName" -}}{{ include "mnist-platform.componentName" (list . "frontend") }}{{- end }}
{{- define "mnist-platform.modelStoreClaim" -}}
{{- default (include "mnist-platform.componentName" (list . "models")) .Values.modelStore.existingClaim }}
{{- end }}
{{- define "mnist-platform.apiKeysSecret" -}}
{{- default (include "mnist-platform.componentName" (list . "api-keys")) .Values.frontend.apiKeys.existingSecret }}
{{- end }}
{{/* TF Serving is deployed unless the frontend serves from the model store itself (frontend.backend: embedded). */}}
{{- define "mnist-platform.servingEnabled" -}}{{ if ne .Values.frontend.backend "embedded" }}true{{ end }}{{- end }}
{{- define "mnist-platform.modelBasePath" -}}{{ printf "%s/%s" .Values.modelStore.mountPath .Values.modelName }}{{- end }}

{{/* Paths inside the containers. */}}
{{- define "mnist-platform.routingDir" -}}/etc/mnist/routing{{- end }}
{{- define "mnist-platform.apiKeysDir" -}}/etc/mnist/api-keys{{- end }}
{{- define "mnist-platform.feedbackKeyDir" -}}/etc/mnist/feedback-key{{- end }}
{{- define "mnist-platform.modelConfigDir" -}}/etc/tfserving/models{{- end }}
{{- define "mnist-platform.servingConfigDir" -}}/etc/tfserving/static{{- end }}

{{/* The pod securityContext every pod gets. */}}
{{- define "mnist-platform.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{/* The container securityContext every container gets (user/group follow the pod's). */}}
{{- define "mnist-platform.containerSecurityContext" -}}
{{ toYaml (merge (dict "runAsUser" .Values.podSecurityContext.runAsUser "runAsGroup" .Values.podSecurityContext.runAsGroup) .Values.containerSecurityContext) }}
{{- end }}

{{/* Scheduling fields of a component: call with its values. */}}
{{- define "mnist-platform.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "mnist-platform.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule: DNS, which every pod needs to find Services (networkPolicy.dns: who answers). */}}
{{- define "mnist-platform.dnsEgress" -}}
- {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - port: {{ . }}
      protocol: UDP
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/*
The port of operator.prometheusUrl: the URL's own, else the scheme's (80, 443). Fails on a URL the operator
could not use either.
*/}}
{{- define "mnist-platform.prometheusPort" -}}
{{- $url := urlParse .Values.operator.prometheusUrl }}
{{- if not (has $url.scheme (list "http" "https")) }}
{{- fail (printf "operator.prometheusUrl %q: give an http:// or https:// URL, e.g. http://prometheus-server.monitoring:9090" .Values.operator.prometheusUrl) }}
{{- end }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- $port | default (ternary "443" "80" (eq $url.scheme "https")) }}
{{- end }}

{{/* The Prometheus pods as a NetworkPolicy peer (networkPolicy.prometheus). */}}
{{- define "mnist-platform.prometheusPeer" -}}
- namespaceSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.prometheus.namespaceSelector | nindent 6 }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.prometheus.podSelector | nindent 6 }}
{{- end }}
{{/* NetworkPolicy egress rule: the Kubernetes API server. */}}
{{- define "mnist-platform.apiServerEgress" -}}
- {{- with .Values.networkPolicy.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/*
checkov findings accepted on purpose, one line of reason each (checkov reads these annotations).
Call with (list "pull" "digest" "token" "probes").
*/}}
{{- define "mnist-platform.checkovSkips" -}}
{{- $reasons := dict
  "pull" "CKV_K8S_15=pull policy is a value; IfNotPresent by default because kind-loaded images exist only on the nodes"
  "digest" "CKV_K8S_43=tags are pinned; images built by make images have no registry digest (set image.tag to tag@sha256:...)"
  "token" "CKV_K8S_38=this pod calls the Kubernetes API (least-privilege Role), so it needs its token"
  "liveness" "CKV_K8S_8=run-once test pod: nothing restarts it, helm test's timeout bounds it"
  "readiness" "CKV_K8S_9=run-once test pod: no Service routes to it"
}}
{{- range $index, $key := . }}
checkov.io/skip{{ add1 $index }}: {{ index $reasons $key | quote }}
{{- end }}
{{- end }}
