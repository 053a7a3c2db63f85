{{/*
Expand the name of the chart.
*/}}
{{- define "rollback-verifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "rollback-verifier.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "rollback-verifier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "rollback-verifier.labels" -}}
helm.sh/chart: {{ include "rollback-verifier.chart" . }}
{{ include "rollback-verifier.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rollback-verifier
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels. Name and instance ONLY: a Deployment's selector is immutable, so these must never
change between chart versions (a revert across a selector change would need the Deployment deleted).
*/}}
{{- define "rollback-verifier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollback-verifier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The name of the service account to use.
*/}}
{{- define "rollback-verifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rollback-verifier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository[:tag]@digest when a digest is set (the digest wins; the tag is only
shown when explicitly set), else repository:tag (tag defaults to the chart's appVersion).
*/}}
{{- define "rollback-verifier.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.digest }}
{{- if .Values.image.tag }}
{{- printf "%s:%s@%s" $repo .Values.image.tag .Values.image.digest }}
{{- else }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the settings ConfigMap.
*/}}
{{- define "rollback-verifier.settingsName" -}}
{{- printf "%s-settings" (include "rollback-verifier.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The operator's settings file (mounted at /etc/rollback-verifier/settings.yaml). Each detection
application gets its namespace filled in (argocd.namespace). Fails the render, with a message, when
the values ask for something the RBAC this chart grants could not serve.
*/}}
{{- define "rollback-verifier.settings" -}}
{{- $argocdNs := .Values.argocd.namespace }}
{{- $apps := list }}
{{- range $i, $app := .Values.detection.applications }}
{{- $ns := $app.namespace | default $argocdNs }}
{{- if ne $ns $argocdNs }}
{{- fail (printf "detection.applications[%d] (%s): namespace %q must equal argocd.namespace %q: the operator reads Applications only there" $i $app.name $ns $argocdNs) }}
{{- end }}
{{- if not $.Values.rbac.clusterScoped }}
{{- if not (has $app.verificationNamespace $.Values.controller.namespaces) }}
{{- fail (printf "detection.applications[%d] (%s): verificationNamespace %q is not in controller.namespaces %v: add it there or set rbac.clusterScoped=true" $i $app.name $app.verificationNamespace $.Values.controller.namespaces) }}
{{- end }}
{{- range $app.targets }}
{{- if and .namespace (not (has .namespace $.Values.controller.namespaces)) }}
{{- fail (printf "detection.applications[%d] (%s): target %s namespace %q is not in controller.namespaces %v: add it there or set rbac.clusterScoped=true" $i $app.name .name .namespace $.Values.controller.namespaces) }}
{{- end }}
{{- end }}
{{- end }}
{{- $apps = append $apps (merge (dict "namespace" $ns) (deepCopy $app)) }}
{{- end }}
{{- if not .Values.rbac.clusterScoped }}
{{- range $ns, $others := .Values.trust.targetNamespaces }}
{{- range $others }}
{{- if not (has . $.Values.controller.namespaces) }}
{{- fail (printf "trust.targetNamespaces.%s: namespace %q is not in controller.namespaces %v: add it there or set rbac.clusterScoped=true" $ns . $.Values.controller.namespaces) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $trust := dict "allowLocalRepositories" .Values.trust.allowLocalRepositories "targetNamespaces" .Values.trust.targetNamespaces "destinationClusters" .Values.trust.destinationClusters }}
{{- $settings := dict "argocdNamespace" $argocdNs "detection" (dict "enabled" .Values.detection.enabled "applications" $apps) "trust" $trust "destinations" (dict "enabled" .Values.destinations.enabled) }}
{{- toYaml $settings }}
{{- end }}
