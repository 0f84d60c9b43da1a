package manifests

import (
	"errors"
	"strings"
	"testing"
)

// TestChecksReject breaks the base on purpose, one thing at a time: each
// check must notice, or it could not fail on the real manifests either.
func TestChecksReject(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(objs []object) []object
		want   string
	}{
		{"runs as root", setContainer("securityContext", "runAsUser", 0.0), "runAsUser is not 65532"},
		{"runAsNonRoot off", setContainer("securityContext", "runAsNonRoot", false), "runAsNonRoot is not true"},
		{"writable root filesystem", setContainer("securityContext", "readOnlyRootFilesystem", false), "readOnlyRootFilesystem is not true"},
		{"privilege escalation", setContainer("securityContext", "allowPrivilegeEscalation", true), "allowPrivilegeEscalation is not false"},
		{"capabilities kept", setContainer("securityContext", "capabilities", map[string]any{"drop": []any{"NET_RAW"}}), "must drop ALL"},
		{"no seccomp profile", edit("Deployment", gatewayName, func(o object) {
			delete(get(o, "spec", "template", "spec", "securityContext").(map[string]any), "seccompProfile")
		}), "seccompProfile is not RuntimeDefault"},
		{"host network", edit("Deployment", gatewayName, func(o object) {
			get(o, "spec", "template", "spec").(map[string]any)["hostNetwork"] = true
		}), "shares a host namespace"},
		{"misspelt field", setContainer("securityContext", "readOnlyRootFileSystem", true), `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"unknown flag", addArg("--no-such-flag"), "unknown flag: --no-such-flag"},
		{"metrics-server flag the gateway lacks", addArg("--deprecated-kubelet-completely-insecure"), "unknown flag"},
		{"flag value the gateway refuses", addArg("--kubelet-preferred-address-types=NodeIP"), `unknown address type "NodeIP"`},
		{"storage on the root filesystem", addArg("--storage-path=/data"), "/data is not on a writable volume"},
		{"cert-dir on the root filesystem", addArg("--cert-dir=/certs"), "/certs is not on a writable volume"},
		{"config not mounted", addArg("--config=/config.yaml"), "--config=/config.yaml: not on a ConfigMap volume"},
		{"invalid config", edit("ConfigMap", "metrics-gateway-config", func(o object) {
			get(o, "data").(map[string]any)["config.yaml"] = "apiVersion: metrics-gateway.io/v1alpha1\nkind: GatewayConfig\npods:\n  scrapeInterval: 500ms\n"
		}), "pods.scrapeInterval"},
		{"eager liveness", setContainer("livenessProbe", "failureThreshold", 1.0), "livenessProbe: kills after 0s of failures"},
		{"liveness on readyz", setContainer("livenessProbe", "httpGet", map[string]any{"path": "/readyz", "port": "https", "scheme": "HTTPS"}), "livenessProbe: want HTTPS GET /livez"},
		{"no startup probe nor delay", setContainer("startupProbe", "", nil), "no startup probe and an initial delay"},
		{"cpu limit", setContainer("resources", "limits", map[string]any{"cpu": "1", "memory": "1Gi"}), "cpu limit set"},
		{"head-series cap beyond the pod's memory", edit("ConfigMap", "metrics-gateway-config", func(o object) {
			get(o, "data").(map[string]any)["config.yaml"] = "apiVersion: metrics-gateway.io/v1alpha1\nkind: GatewayConfig\nstorage:\n  maxHeadSeries: 1000000\n"
		}), "memory budget 2476 MiB (storage.maxHeadSeries 1000000"},
		{"query samples beyond the pod's memory", addArg("--query-max-samples=50000000"), "--query-max-samples 50000000"},
		{"memory limit below the budget", setContainer("resources", "limits", map[string]any{"memory": "512Mi"}), "is above --auto-gomemlimit-ratio 0.9 of the memory limit"},
		{"GOMEMLIMIT above the limit", setContainer("env", "", []any{map[string]any{"name": "GOMEMLIMIT", "value": "2GiB"}}), "GOMEMLIMIT 2GiB is not below"},
		{"other image", setContainer("image", "", "registry.k8s.io/metrics-server/metrics-server:v0.9.0"), "want ghcr.io/metrics-gateway/metrics-gateway:v0.1.0"},
		{"images transformer not applied", edit("Deployment", gatewayName, func(o object) {
			setImages(o, imageSpec{Name: "ghcr.io/metrics-gateway/metrics-gateway", NewTag: "latest"})
		}), "image ghcr.io/metrics-gateway/metrics-gateway:latest"},
		{"nodes/proxy", addRule("system:metrics-gateway", map[string]any{"apiGroups": []any{""}, "resources": []any{"nodes/proxy"}, "verbs": []any{"get"}}), "resource nodes/proxy"},
		{"wildcard verbs", addRule("system:metrics-gateway", map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"*"}}), `verb "*"`},
		{"wildcard resources", addRule("system:metrics-gateway", map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"*"}, "verbs": []any{"list"}}), `resource "*" outside`},
		{"writes pods", addRule("system:metrics-gateway", map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"delete"}}), "writes pods"},
		{"secrets cluster-wide", addRule("system:metrics-gateway", map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "resourceNames": []any{"metrics-gateway-serving-cert"}, "verbs": []any{"get"}}), "secrets in a cluster-wide role"},
		{"reads every secret", edit("Role", certsRole, func(o object) {
			o["rules"] = append(o["rules"].([]any), map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"get", "list"}})
		}), "secrets without resourceNames"},
		{"creates secrets", edit("Role", certsRole, func(o object) {
			o["rules"] = append(o["rules"].([]any), map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"create"}})
		}), "create on Secrets, which RBAC cannot limit"},
		{"no serving-certificate Secret", remove("Secret", "metrics-gateway-serving-cert"), "no Secret kube-system/metrics-gateway-serving-cert: the gateway may not create it"},
		{"serving-certificate Secret with data", edit("Secret", "metrics-gateway-serving-cert", func(o object) {
			o["data"] = map[string]any{"tls.crt": "Cg=="}
		}), "has data: re-applying"},
		{"serving-certificate Secret not labeled", edit("Secret", "metrics-gateway-serving-cert", func(o object) {
			delete(get(o, "metadata", "labels").(map[string]any), "metrics-gateway.io/serving-cert")
		}), "lacks the label metrics-gateway.io/serving-cert=owned"},
		{"insecureSkipTLSVerify", edit("APIService", "v1beta1.metrics.k8s.io", func(o object) {
			get(o, "spec").(map[string]any)["insecureSkipTLSVerify"] = true
		}), "sets insecureSkipTLSVerify"},
		{"caBundle in the file", edit("APIService", "v1beta1.metrics.k8s.io", func(o object) {
			get(o, "spec").(map[string]any)["caBundle"] = "Cg=="
		}), "sets caBundle"},
		{"v1beta2 not preferred", edit("APIService", "v1beta2.custom.metrics.k8s.io", func(o object) {
			get(o, "spec").(map[string]any)["versionPriority"] = 100.0
		}), "priorities [100 100], want [100 200]"},
		{"APIService on another port", edit("APIService", "v1beta1.metrics.k8s.io", func(o object) {
			get(o, "spec", "service").(map[string]any)["port"] = 8443.0
		}), "not served by kube-system/metrics-gateway port 443"},
		{"cert RBAC names an APIService not rendered", remove("APIService", "v1beta1.external.metrics.k8s.io"), "may patch APIServices"},
		{"query API reader bound", add(object{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": map[string]any{"name": "oops"},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": queryReaderRole},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": gatewayName, "namespace": namespace}},
		}), "which is for users to bind"},
		{"delegation missing", remove("ClusterRoleBinding", "metrics-gateway:system:auth-delegator"), "not bound to ClusterRole system:auth-delegator"},
		{"PDB blocks drains", add(object{
			"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": map[string]any{"name": gatewayName, "namespace": namespace},
			"spec": map[string]any{"minAvailable": 1.0, "selector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": gatewayName}}},
		}), "minAvailable must stay below the 1 replicas"},
		{"Service selects nothing", edit("Service", gatewayName, func(o object) {
			get(o, "spec").(map[string]any)["selector"] = map[string]any{"app": "other"}
		}), "does not select the pods"},
		{"certificate RBAC missing", func(objs []object) []object {
			for _, k := range []string{"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} {
				objs = remove(k, certsRole)(objs)
			}
			return objs
		}, "manages its serving certificate, but the ClusterRole and Role"},
		{"no certificate at all", func(objs []object) []object {
			for _, k := range []string{"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} {
				objs = remove(k, certsRole)(objs)
			}
			return addArg("--manage-serving-cert=false")(objs)
		}, "without --tls-cert-file"},
		{"own certificate, RBAC kept", addArg("--tls-cert-file=/tmp/tls.crt"), "certificate RBAC, but the gateway does not manage"},
		{"apiservice-names narrower than the RBAC", addArg("--apiservice-names=v1beta1.metrics.k8s.io"), "--apiservice-names is [v1beta1.metrics.k8s.io]"},
		{"another Secret name", addArg("--serving-cert-secret=other"), "no get on Secret other"},
		{"cannot patch the APIServices", edit("ClusterRole", certsRole, func(o object) {
			get(o, "rules").([]any)[0].(map[string]any)["verbs"] = []any{"get"}
		}), "no patch on the APIServices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render("base")
			if err != nil {
				t.Fatal(err)
			}
			objs = tc.break_(objs)
			var errs []error
			if r, err := newRendering(objs); err != nil {
				errs = []error{err}
			} else {
				errs = checkAll(r, t.TempDir())
			}
			if all := errors.Join(errs...); all == nil || !strings.Contains(all.Error(), tc.want) {
				t.Errorf("want an error containing %q, got:\n%v", tc.want, all)
			}
		})
	}
}

func edit(kind, name string, f func(object)) func([]object) []object {
	return func(objs []object) []object {
		for _, o := range objs {
			if str(o, "kind") == kind && str(o, "metadata", "name") == name {
				f(o)
			}
		}
		return objs
	}
}

// setContainer sets field (or, with sub, field.sub) of the gateway's
// container; a nil value deletes it.
func setContainer(field, sub string, v any) func([]object) []object {
	return edit("Deployment", gatewayName, func(o object) {
		c := get(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
		target, k := c, field
		if sub != "" {
			target, k = c[field].(map[string]any), sub
		}
		if v == nil {
			delete(target, k)
		} else {
			target[k] = v
		}
	})
}

func addArg(arg string) func([]object) []object {
	return edit("Deployment", gatewayName, func(o object) {
		c := get(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
		c["args"] = append(c["args"].([]any), arg)
	})
}

func addRule(clusterRole string, rule map[string]any) func([]object) []object {
	return edit("ClusterRole", clusterRole, func(o object) { o["rules"] = append(o["rules"].([]any), rule) })
}

func remove(kind, name string) func([]object) []object {
	return func(objs []object) []object {
		var out []object
		for _, o := range objs {
			if str(o, "kind") != kind || str(o, "metadata", "name") != name {
				out = append(out, o)
			}
		}
		return out
	}
}

func add(o object) func([]object) []object {
	return func(objs []object) []object { return append(objs, o) }
}
