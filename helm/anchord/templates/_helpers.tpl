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

{{/* gRPC address of a component inside the cluster (its ClusterIP Service). */}}
{{- define "anchord.grpcAddr" -}}
{{- printf "%s:%d" (include "anchord.cname" .) (int .root.Values.ports.grpc) -}}
{{- end -}}

{{/*
The target peers use to reach every replica of a component: its headless Service through gRPC's
DNS resolver, which returns one address per ready pod; the services' channels use round_robin over
them (libs/rpc PeerChannelArguments). (dict "root" $ "c" "submitter").
*/}}
{{- define "anchord.peerTarget" -}}
{{- printf "dns:///%s-peers:%d" (include "anchord.cname" .) (int .root.Values.ports.grpc) -}}
{{- end -}}

{{/*
The same over the internal port (Track, Reanchor): the submitter's target for the poller and the
poller's for the submitter. (dict "root" $ "c" "poller").
*/}}
{{- define "anchord.peerInternalTarget" -}}
{{- printf "dns:///%s-peers:%d" (include "anchord.cname" .) (int .root.Values.ports.internal) -}}
{{- end -}}

{{/* "true" when the submitter and poller share a PostgreSQL database (database.existingSecret). */}}
{{- define "anchord.database" -}}
{{- if .Values.database.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Name of the Secret holding the internal token. */}}
{{- define "anchord.internalTokenSecret" -}}
{{- default (printf "%s-internal" (include "anchord.fullname" .)) .Values.internalToken.existingSecret -}}
{{- end -}}

{{/* The proofd URL (see anchord.providerUrl). */}}
{{- define "anchord.proofdUrl" -}}
{{- include "anchord.providerUrl" (dict "root" . "name" "proofd") -}}
{{- end -}}

{{/* The enabled providers, comma-separated: provider.name first, then provider.additional. */}}
{{- define "anchord.enabledProviders" -}}
{{- $p := .Values.provider -}}
{{- prepend (default (list) $p.additional) $p.name | uniq | join "," -}}
{{- end -}}

{{/* The enabled providers that need an API key (proofd, proofledger, simpleproof), comma-separated. */}}
{{- define "anchord.keyedProviders" -}}
{{- $enabled := splitList "," (include "anchord.enabledProviders" .) -}}
{{- $out := list -}}
{{- range $n := list "proofd" "proofledger" "simpleproof" -}}
{{- if has $n $enabled }}{{ $out = append $out $n }}{{ end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
A provider's base URL: (dict "root" $ "name" "proofledger"). The configured one, or the in-cluster
sandbox (it speaks proofd, ProofLedger and SimpleProof on one port) when enabled and no URL is set.
*/}}
{{- define "anchord.providerUrl" -}}
{{- $c := index .root.Values.provider .name -}}
{{- if $c.url -}}
{{- $c.url -}}
{{- else if .root.Values.sandbox.enabled -}}
{{- printf "http://%s:%d" (include "anchord.cname" (dict "root" .root "c" "sandbox")) (int .root.Values.sandbox.port) -}}
{{- else -}}
{{- fail (printf "provider.%s.url is empty and sandbox.enabled is false: the submitter and poller need a provider" .name) -}}
{{- end -}}
{{- end -}}

{{/* Where a provider's key file is mounted: (dict "root" $ "name" "proofd"). */}}
{{- define "anchord.keyFile" -}}
{{- printf "/etc/anchord/provider/%s" (index .root.Values.provider .name).secretKey -}}
{{- end -}}

{{/*
The provider-keys volume holding the key files of the providers in .names (a list), read-only and
group-readable for fsGroup (the process is not root). proofd alone: exactly the single-item Secret
volume of earlier chart versions. Otherwise a projected volume, one source per provider; every key
except proofd's is optional, so the Secret only needs the keys of the providers actually used.
*/}}
{{- define "anchord.providerKeysVolume" -}}
{{- $p := .root.Values.provider -}}
{{- $paths := dict -}}
{{- range $n := .names -}}
{{- $k := (index $p $n).secretKey -}}
{{- if hasKey $paths $k -}}
{{- fail (printf "provider.%s.secretKey %q is also provider.%s.secretKey: every key needs its own name" $n $k (get $paths $k)) -}}
{{- end -}}
{{- $_ := set $paths $k $n -}}
{{- end -}}
{{- if eq (join "," .names) "proofd" }}
- name: provider-keys
  secret:
    secretName: {{ $p.proofd.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $p.proofd.secretKey }}
        path: {{ $p.proofd.secretKey }}
{{- else if .names }}
- name: provider-keys
  projected:
    defaultMode: 0440
    sources:
      {{- range $n := .names }}
      {{- $c := index $p $n }}
      - secret:
          name: {{ default $p.proofd.existingSecret $c.existingSecret }}
          items:
            - key: {{ $c.secretKey }}
              path: {{ $c.secretKey }}
          {{- if ne $n "proofd" }}
          optional: true
          {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Render-time checks of combinations the schema cannot express. */}}
{{- define "anchord.validate" -}}
{{- $p := .Values.provider -}}
{{- $enabled := splitList "," (include "anchord.enabledProviders" .) -}}
{{- if not (include "anchord.database" .) -}}
{{- range $c := list "submitter" "poller" -}}
{{- $v := index $.Values $c -}}
{{- if or (gt (int $v.replicas) 1) $v.autoscaling.enabled -}}
{{- fail (printf "%s.replicas > 1 and %s.autoscaling need database.existingSecret: without a database each replica would keep its own SQLite queue" $c $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $p.simpleproof.callbackUrl (not .Values.poller.webhook.enabled) -}}
{{- fail "provider.simpleproof.callbackUrl is set but poller.webhook.enabled is false: nothing would receive the callbacks" -}}
{{- end -}}
{{- if has "ots" $enabled -}}
{{- $n := ternary 4 (len $p.ots.calendars) (empty $p.ots.calendars) -}}
{{- if gt (int $p.ots.minCalendars) $n -}}
{{- fail (printf "provider.ots.minCalendars (%d) exceeds the %d calendars configured" (int $p.ots.minCalendars) $n) -}}
{{- end -}}
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
{{- if ne .c "hasher" }}
  - name: internal
    containerPort: {{ .root.Values.ports.internal }}
    protocol: TCP
{{- end }}
{{- if and (eq .c "poller") .root.Values.poller.webhook.enabled }}
  - name: webhook
    containerPort: {{ .root.Values.poller.webhook.port }}
    protocol: TCP
{{- end }}
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
