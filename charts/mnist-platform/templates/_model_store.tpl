{{/*
Who mounts the model store, and where they may run (docs/CLUSTER.md, "The model store on several nodes").

A ReadWriteOnce volume attaches to one node at a time: with several nodes, a second node's pod fails to attach it
(and the post-install training Job would hang). So unless the claim is ReadWriteMany, every pod that mounts it
carries the label storeLabel and a required pod affinity to that label on kubernetes.io/hostname: the first one
scheduled picks the node (the scheduler lets a pod that matches its own term go first), the others follow. With
the GPU training on, that node must be a GPU node, so the other pods that mount the store take the trainer's GPU
nodeSelector and tolerations too (not the GPU itself).
*/}}

{{/* "true" when every pod that mounts the store must share one node (the claim is not ReadWriteMany). */}}
{{- define "mnist-platform.storeOneNode" -}}
{{- if not (has "ReadWriteMany" .Values.modelStore.accessModes) }}true{{ end }}
{{- end }}

{{/* The pod label the store's pod affinity matches: the claim's name (a label value: 63 characters at most). */}}
{{- define "mnist-platform.storeLabel" -}}
mnist-platform.dev/model-store: {{ include "mnist-platform.modelStoreClaim" . | trunc 63 | trimSuffix "-" | trimSuffix "." | quote }}
{{- end }}

{{/*
"true" when the operator mounts the store: it must without TF Serving (its AVAILABLE gate reads the store) and
when the trainer does not register ModelVersions (it discovers the published versions); operator.readModelStore
asks for it otherwise. Else the ModelVersions and TF Serving's status API tell it all, and it may run anywhere.
*/}}
{{- define "mnist-platform.operatorMountsStore" -}}
{{- if or (not (include "mnist-platform.servingEnabled" .)) (not .Values.trainer.enabled) (not .Values.trainer.registerModelVersion) .Values.operator.readModelStore }}true{{ end }}
{{- end }}

{{/*
Scheduling fields of a pod that mounts the store. Call with (dict "root" $ "nodeSelector" .. "tolerations" ..
"affinity" .. "followGpu" bool); followGpu: add the GPU trainer's node selector and tolerations (every pod but the
trainer, which has them already).
*/}}
{{- define "mnist-platform.storeScheduling" -}}
{{- $root := .root }}
{{- $nodeSelector := deepCopy (.nodeSelector | default dict) }}
{{- $tolerations := .tolerations | default list }}
{{- $affinity := deepCopy (.affinity | default dict) }}
{{- if include "mnist-platform.storeOneNode" $root }}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "mnist-platform.storeLabel" $root | fromYaml)) "topologyKey" "kubernetes.io/hostname" }}
{{- $podAffinity := $affinity.podAffinity | default dict }}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append ($podAffinity.requiredDuringSchedulingIgnoredDuringExecution | default list) $term) }}
{{- $_ := set $affinity "podAffinity" $podAffinity }}
{{- $gpu := $root.Values.trainer.gpu }}
{{- if and .followGpu $root.Values.trainer.enabled $gpu.enabled }}
{{- $nodeSelector = merge (deepCopy $gpu.nodeSelector) $nodeSelector }}
{{- $tolerations = concat $gpu.tolerations $tolerations }}
{{- end }}
{{- end }}
{{- include "mnist-platform.scheduling" (dict "nodeSelector" $nodeSelector "tolerations" $tolerations "affinity" $affinity) }}
{{- end }}

{{/* Combinations that cannot work, refused before anything is created. */}}
{{- define "mnist-platform.checkModelStore" -}}
{{- $modes := .Values.modelStore.accessModes }}
{{- if has "ReadWriteOncePod" $modes }}
{{- fail "modelStore.accessModes: ReadWriteOncePod lets one pod mount the store, but the trainer and TF Serving (or the embedded frontend) mount it together. Use ReadWriteOnce (every pod that mounts it is then kept on one node) or ReadWriteMany (docs/CLUSTER.md, \"The model store on several nodes\")." }}
{{- end }}
{{- if and .Values.trainer.enabled (not (or (has "ReadWriteOnce" $modes) (has "ReadWriteMany" $modes))) }}
{{- fail (printf "modelStore.accessModes %v: the trainer writes the store; give ReadWriteOnce or ReadWriteMany (or trainer.enabled=false when versions are published otherwise)." $modes) }}
{{- end }}
{{- end }}
