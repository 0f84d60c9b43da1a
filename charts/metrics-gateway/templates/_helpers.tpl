{{/* The chart's name, or nameOverride. */}}
{{- define "metrics-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fullname every object is named from: fullnameOverride, else the release
name when it contains the chart's name, else <release>-<name>.
*/}}
{{- define "metrics-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "metrics-gateway.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pods are selected by the fullname alone, as manifests/base selects them. */}}
{{- define "metrics-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metrics-gateway.fullname" . }}
{{- end }}

{{/* The labels of every object: the selector's and commonLabels. */}}
{{- define "metrics-gateway.labels" -}}
{{ include "metrics-gateway.selectorLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "metrics-gateway.serviceAccountName" -}}
{{- default (include "metrics-gateway.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The read-only account whose tokens kubelets receive. */}}
{{- define "metrics-gateway.kubeletServiceAccountName" -}}
{{- printf "%s-kubelet" (include "metrics-gateway.fullname" .) }}
{{- end }}

{{/* The serving certificate's Secret, which the gateway fills. */}}
{{- define "metrics-gateway.servingCertSecret" -}}
{{- printf "%s-serving-cert" (include "metrics-gateway.fullname" .) }}
{{- end }}

{{/* The subject of the gateway's ServiceAccount in bindings. */}}
{{- define "metrics-gateway.subject" -}}
- kind: ServiceAccount
  name: {{ include "metrics-gateway.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* The APIServices the gateway serves, as group/version. */}}
{{- define "metrics-gateway.apiServices" -}}
- v1.metrics.k8s.io
- v1beta1.metrics.k8s.io
- v1beta1.custom.metrics.k8s.io
- v1beta2.custom.metrics.k8s.io
- v1beta1.external.metrics.k8s.io
{{- end }}
