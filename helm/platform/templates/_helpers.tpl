{{/* Labels shared by every object of this chart. */}}
{{- define "platform.labels" -}}
app.kubernetes.io/name: mlops-platform
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Step kinds, in pipeline order. */}}
{{- define "platform.stepKinds" -}}
ingest validate train evaluate score publish
{{- end -}}
