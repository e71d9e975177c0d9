{{/* The training pod spec, shared by the install-time Job and the CronJob template. */}}
{{- define "mnist-platform.trainerPodSpec" -}}
{{- $gpu := .Values.trainer.gpu }}
restartPolicy: Never
serviceAccountName: {{ include "mnist-platform.componentName" (list . "trainer") }}
# The token is needed only to register ModelVersion resources.
automountServiceAccountToken: {{ .Values.trainer.registerModelVersion }}
{{- include "mnist-platform.imagePullSecrets" . }}
securityContext:
  {{- include "mnist-platform.podSecurityContext" . | nindent 2 }}
{{- if and $gpu.enabled $gpu.runtimeClassName }}
runtimeClassName: {{ $gpu.runtimeClassName }}
{{- end }}
{{- $nodeSelector := .Values.trainer.nodeSelector }}
{{- $tolerations := .Values.trainer.tolerations }}
{{- if $gpu.enabled }}
{{- $nodeSelector = merge (deepCopy $gpu.nodeSelector) .Values.trainer.nodeSelector }}
{{- $tolerations = concat $gpu.tolerations .Values.trainer.tolerations }}
{{- end }}
{{- include "mnist-platform.storeScheduling" (dict "root" . "nodeSelector" $nodeSelector "tolerations" $tolerations "affinity" .Values.trainer.affinity "followGpu" false) }}
containers:
  - name: trainer
    image: {{ include "mnist-platform.image" (list . .Values.trainer.image) }}
    imagePullPolicy: {{ .Values.trainer.image.pullPolicy }}
    command: ["mnist-train"]
    args:
      {{- include "mnist-platform.trainerArgs" . | nindent 6 }}
      {{- range .Values.trainer.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "mnist-platform.trainerEnv" . | nindent 6 }}
      {{- with .Values.trainer.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    securityContext:
      {{- include "mnist-platform.containerSecurityContext" . | nindent 6 }}
    # No probes: nothing routes traffic to a batch pod (readiness has no consumer), and a hung
    # training is ended by the Job's activeDeadlineSeconds rather than a liveness restart.
    resources:
      {{- $resources := deepCopy .Values.trainer.resources }}
      {{- if $gpu.enabled }}
      {{- $_ := set $resources "limits" (merge (dict $gpu.resourceName $gpu.count) ($resources.limits | default dict)) }}
      {{- $_ := set $resources "requests" (merge (dict $gpu.resourceName $gpu.count) ($resources.requests | default dict)) }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    volumeMounts:
      - name: models
        mountPath: {{ .Values.modelStore.mountPath }}
      - name: tmp
        mountPath: /tmp
volumes:
  - name: models
    persistentVolumeClaim:
      claimName: {{ include "mnist-platform.modelStoreClaim" . }}
  - name: tmp
    emptyDir:
      sizeLimit: 1Gi
{{- end }}

{{- define "mnist-platform.trainerArgs" -}}
- --model-base-path={{ include "mnist-platform.modelBasePath" . }}
- --model-name={{ .Values.modelName }}
- --data={{ .Values.trainer.dataPath }}
- --epochs={{ .Values.trainer.epochs }}
- --batch-size={{ .Values.trainer.batchSize }}
- --register={{ ternary "always" "never" .Values.trainer.registerModelVersion }}
{{- end }}

{{- define "mnist-platform.trainerEnv" -}}
- name: MNIST_MODEL_NAME
  value: {{ .Values.modelName | quote }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: HOME
  value: /tmp
{{- end }}
