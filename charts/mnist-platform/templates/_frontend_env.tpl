{{/*
The frontend's environment: every name here is defined in services/frontend/frontend/config.py
(ENV_SETTINGS); tests/chart/test_chart_consistency.py checks the two agree.
*/}}
{{- define "mnist-platform.frontendEnv" -}}
- name: MNIST_BACKEND
  value: {{ .Values.frontend.backend | quote }}
- name: MNIST_MODEL_NAME
  value: {{ .Values.modelName | quote }}
{{- if include "mnist-platform.servingEnabled" . }}
{{- /* The headless Service: the frontend resolves it to every ready TF Serving pod and spreads over them. */}}
- name: MNIST_SERVING_GRPC
  value: {{ printf "%s:%d" (include "mnist-platform.servingHeadlessName" .) (int .Values.serving.grpcPort) | quote }}
- name: MNIST_SERVING_REST
  value: {{ printf "http://%s:%d" (include "mnist-platform.servingHeadlessName" .) (int .Values.serving.restPort) | quote }}
{{- else }}
- name: MNIST_MODEL_BASE_PATH
  value: {{ include "mnist-platform.modelBasePath" . | quote }}
{{- end }}
- name: MNIST_ROUTING_FILE
  value: {{ printf "%s/routing.json" (include "mnist-platform.routingDir" .) | quote }}
- name: MNIST_API_KEYS_FILE
  value: {{ printf "%s/api-keys" (include "mnist-platform.apiKeysDir" .) | quote }}
- name: MNIST_MAX_BATCH
  value: {{ int .Values.frontend.maxBatch | quote }}
- name: MNIST_MAX_BODY_BYTES
  value: {{ int64 .Values.frontend.maxBodyBytes | quote }}
- name: MNIST_BACKEND_TIMEOUT_S
  value: {{ .Values.frontend.backendTimeoutSeconds | quote }}
- name: MNIST_TRUST_PROXY
  value: {{ int .Values.frontend.trustProxy | quote }}
{{- if .Values.frontend.sharedFeedbackKey }}
- name: MNIST_FEEDBACK_KEY_FILE
  value: {{ printf "%s/feedback-key" (include "mnist-platform.feedbackKeyDir" .) | quote }}
{{- end }}
- name: MNIST_BIND
  value: {{ printf "0.0.0.0:%d" (int .Values.frontend.port) | quote }}
- name: MNIST_WORKERS
  value: {{ int .Values.frontend.workers | quote }}
- name: MNIST_THREADS
  value: {{ int .Values.frontend.threads | quote }}
{{- end }}
