{{/*
The operator's environment: every name is defined in operator/mnist_operator/config.py (ENV_SETTINGS);
tests/chart/test_chart_consistency.py checks the names, the ConfigMap names/keys and the selector.
*/}}
{{- define "mnist-platform.operatorEnv" -}}
- name: MNIST_OPERATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Empty without TF Serving (frontend.backend: embedded): the operator writes the routing only.
- name: MNIST_OPERATOR_SERVING_CONFIGMAP
  value: {{ ternary (include "mnist-platform.modelConfigName" .) "" (eq (include "mnist-platform.servingEnabled" .) "true") | quote }}
- name: MNIST_OPERATOR_SERVING_CONFIGMAP_KEY
  value: "models.config"
- name: MNIST_OPERATOR_ROUTING_CONFIGMAP
  value: {{ include "mnist-platform.routingName" . | quote }}
- name: MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY
  value: "routing.json"
- name: MNIST_OPERATOR_FRONTEND_SELECTOR
  value: {{ printf "app.kubernetes.io/instance=%s,app.kubernetes.io/component=frontend" .Release.Name | quote }}
- name: MNIST_OPERATOR_METRICS_PORT
  value: {{ int .Values.frontend.port | quote }}
- name: MNIST_OPERATOR_METRICS_PATH
  value: "/metrics"
- name: MNIST_OPERATOR_PROMETHEUS_URL
  value: {{ .Values.operator.prometheusUrl | quote }}
# Empty without TF Serving: the AVAILABLE gate checks the model store instead.
- name: MNIST_OPERATOR_SERVING_REST
  value: {{ ternary (printf "http://%s:%d" (include "mnist-platform.servingRestName" .) (int .Values.serving.restPort)) "" (eq (include "mnist-platform.servingEnabled" .) "true") | quote }}
# The REST Service whose EndpointSlices list every TF Serving replica; empty without TF Serving.
- name: MNIST_OPERATOR_SERVING_SERVICE
  value: {{ ternary (include "mnist-platform.servingRestName" .) "" (eq (include "mnist-platform.servingEnabled" .) "true") | quote }}
# Empty when the store is not mounted (mnist-platform.operatorMountsStore): no discovery; ModelVersions and TF
# Serving's status API answer the gate.
- name: MNIST_OPERATOR_MODEL_BASE_PATH
  value: {{ ternary .Values.modelStore.mountPath "" (eq (include "mnist-platform.operatorMountsStore" .) "true") | quote }}
- name: MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE
  value: {{ printf "%s/{model}" .Values.modelStore.mountPath | quote }}
- name: HOME
  value: /tmp
{{- end }}
