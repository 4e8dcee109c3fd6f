{{/* Names and labels shared by every template. */}}

{{- define "dbwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dbwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dbwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "dbwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dbwarden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dbwarden.webhookService" -}}
{{- printf "%s-webhook" (include "dbwarden.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dbwarden.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "dbwarden.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dbwarden.injector" -}}
{{- printf "%s-injector" (include "dbwarden.fullname" .) -}}
{{- end -}}

{{- define "dbwarden.validator" -}}
{{- printf "%s-validator" (include "dbwarden.fullname" .) -}}
{{- end -}}

{{/* clientConfig of a webhook at path . (a dict with root and path). */}}
{{- define "dbwarden.clientConfig" -}}
{{- if .root.Values.operator.enabled -}}
service:
  name: {{ include "dbwarden.webhookService" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- else -}}
url: {{ printf "%s%s" (required "webhook.url is required when operator.enabled is false" .root.Values.webhook.url | trimSuffix "/") .path | quote }}
{{- end -}}
{{- end -}}

{{- define "dbwarden.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) -}}
{{- end -}}
