{{- define "mlflow.selectorLabels" -}}
app.kubernetes.io/name: mlflow
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlflow.labels" -}}
{{ include "mlflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mlflow.image" -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .Values.image.digest) -}}
{{- fail "image.digest must be sha256:<64 hex>: the server runs a pinned image" -}}
{{- end -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- end -}}

{{- define "mlflow.allowedHosts" -}}
{{- $svc := "mlflow" -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $all := list "localhost" "localhost:*" -}}
{{- range $hosts }}{{ $all = append $all . }}{{ $all = append $all (printf "%s:*" .) }}{{ end -}}
{{- join "," (concat $all .Values.extraAllowedHosts) -}}
{{- end -}}

{{- define "mlflow.provisioningImage" -}}
{{- $image := .Values.provisioning.image -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $image.digest) -}}
{{- fail "provisioning.image.digest must be sha256:<64 hex>: the Job runs a pinned image" -}}
{{- end -}}
{{ $image.repository }}@{{ $image.digest }}
{{- end -}}

{{- define "mlflow.inClusterUrl" -}}
https://mlflow.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.service.port }}
{{- end -}}

{{- define "mlflow.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
