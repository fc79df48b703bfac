{{/*
The operator's API access: THE one list of RBAC rules (exact verbs and resources, no wildcards).
The ClusterRole (default) and the Role (rbac.namespaced=true) both render it; tests compare it with
the calls the operator's code makes (see artisan_operator/rbac.py).

Why each rule:
- artisan.dev kinds: kopf lists and watches them and patches annotations/finalizers (never spec);
  status is written through the status subresource.
- jobs, persistentvolumeclaims, configmaps, services, deployments: the children the operator owns
  (trainer Job + checkpoint PVC + config ConfigMap + metrics Service; ensemble Deployment + Service
  + routing ConfigMap). delete: a TrainingRun restart replaces its Job; the routing ConfigMap
  entries and the canary fleet are removed when their owner goes.
- pods, pods/log: trainer and ensemble pod state (crash loops, exit codes) for status.
- events (core and events.k8s.io): an Event for every action.
- httproutes: Canary trafficRouting.gatewayAPI sets the backend weights of an existing HTTPRoute.
- customresourcedefinitions (cluster mode only: a Role cannot grant a cluster-scoped resource):
  kopf scans CRDs to find the served versions of the resources it handles.
No leases: the operator runs with kopf --standalone (one replica, no peering objects).
*/}}
{{- define "artisan.rbacRules" -}}
- apiGroups: ["artisan.dev"]
  resources: ["trainingruns", "modelpins", "canaries", "abexperiments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["artisan.dev"]
  resources: ["trainingruns/status", "modelpins/status", "canaries/status", "abexperiments/status"]
  verbs: ["get", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
{{- if not .Values.rbac.namespaced }}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}
