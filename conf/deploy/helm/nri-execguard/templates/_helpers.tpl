{{- define "nri-execguard.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nri-execguard.labels" -}}
app.kubernetes.io/name: nri-execguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: execguard
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nri-execguard.selector" -}}
app.kubernetes.io/name: nri-execguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nri-execguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "nri-execguard.securityContext" -}}
runAsUser: 0
runAsGroup: 0
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
