{{/*
The operator's API access: THE one list of RBAC rules (exact verbs and resources, no wildcards).
The ClusterRole (default) and the Role (rbac.namespaced=true) both render it; tests compare it with
the calls the operator's code makes (see artisan_operator/rbac.py).

Why each rule (tests/chart/test_chart_rbac_matches_code.py renders both modes and requires them to
equal artisan_operator.cluster.permissions.required_rules(), which reads the operator's API calls
from its code, so nothing here is granted "just in case"):
- artisan.dev kinds: kopf lists and watches them and patches annotations/finalizers (never spec);
  the reconcilers read them afresh (get); status is written through the status subresource (patch).
- <kind>/finalizers update (TrainingRun, ModelPin, Canary: the kinds that own children): the children's
  ownerReferences set blockOwnerDeletion, which clusters with OwnerReferencesPermissionEnforcement
  allow only to who may update the owner's finalizers.
- jobs: the trainer Job of each attempt; delete: an operator rollback replaces the Job (foreground,
  so the old pod has released the checkpoint PVC before the next attempt starts).
- persistentvolumeclaims, configmaps, services, deployments: the children the operator owns
  (checkpoint PVC, trainer config, metrics Service; ensemble and canary Deployments, Services,
  routing ConfigMap); get + create + patch only: garbage collection removes them with their owner.
- pods list: trainer pod state (crash loops, restarts) and the pods whose /metrics are scraped.
- events create: an Event for every action (kopf posts core/v1 Events).
- httproutes get/patch: Canary trafficRouting.gatewayAPI sets the backend weights of an existing route.
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
  verbs: ["patch"]
- apiGroups: ["artisan.dev"]
  resources: ["trainingruns/finalizers", "modelpins/finalizers", "canaries/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "configmaps", "services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
{{- if not .Values.rbac.namespaced }}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
