{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "anchord.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name; "anchord" alone when the release is called anchord. */}}
{{- define "anchord.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "c" "hasher"). */}}
{{- define "anchord.cname" -}}
{{- printf "%s-%s" (include "anchord.fullname" .root) .c -}}
{{- end -}}

{{- define "anchord.labels" -}}
app.kubernetes.io/name: {{ include "anchord.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c }}
app.kubernetes.io/part-of: anchord
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "anchord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "anchord.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c }}
{{- end -}}

{{/* Every anchord pod of this release (for NetworkPolicy peers). */}}
{{- define "anchord.releaseSelector" -}}
app.kubernetes.io/name: {{ include "anchord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "anchord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "anchord.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of one program: (dict "root" $ "c" "hasher"). */}}
{{- define "anchord.image" -}}
{{- $img := .root.Values.image -}}
{{- $tag := default .root.Chart.AppVersion $img.tag -}}
{{- if $img.registry -}}
{{- printf "%s/%s-%s:%s" $img.registry $img.repositoryPrefix .c $tag -}}
{{- else -}}
{{- printf "%s-%s:%s" $img.repositoryPrefix .c $tag -}}
{{- end -}}
{{- end -}}

{{/* gRPC address of a component inside the cluster. */}}
{{- define "anchord.grpcAddr" -}}
{{- printf "%s:%d" (include "anchord.cname" .) (int .root.Values.ports.grpc) -}}
{{- end -}}

{{/* The proofd URL: the configured one, or the in-cluster sandbox when it is enabled and no URL is set. */}}
{{- define "anchord.proofdUrl" -}}
{{- if .Values.provider.proofd.url -}}
{{- .Values.provider.proofd.url -}}
{{- else if .Values.sandbox.enabled -}}
{{- printf "http://%s:%d" (include "anchord.cname" (dict "root" . "c" "sandbox")) (int .Values.sandbox.port) -}}
{{- else -}}
{{- fail "provider.proofd.url is empty and sandbox.enabled is false: the submitter and poller need a provider" -}}
{{- end -}}
{{- end -}}

{{/*
Pod-level settings shared by the three services: (dict "root" $ "c" "hasher" "v" .Values.hasher).
*/}}
{{- define "anchord.podCommon" -}}
serviceAccountName: {{ include "anchord.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .v.terminationGracePeriodSeconds }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Container fields shared by the three services: image, ports, config from the ConfigMap, native
gRPC probes against grpc.health.v1 (served by every service; it turns NOT_SERVING while draining,
so readiness drops before the pod stops), and the locked-down security context.
*/}}
{{- define "anchord.containerCommon" -}}
image: {{ include "anchord.image" . }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "anchord.cname" . }}
ports:
  - name: grpc
    containerPort: {{ .root.Values.ports.grpc }}
    protocol: TCP
  - name: metrics
    containerPort: {{ .root.Values.ports.metrics }}
    protocol: TCP
startupProbe:
  grpc:
    port: {{ .root.Values.ports.grpc }}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  grpc:
    port: {{ .root.Values.ports.grpc }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  grpc:
    port: {{ .root.Values.ports.grpc }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
resources:
  {{- toYaml .v.resources | nindent 2 }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
{{- end -}}
