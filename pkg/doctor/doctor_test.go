package doctor

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
)

// cluster is a hand-built cluster state; each test case breaks one part.
type cluster struct {
	data        map[string]string // extension-apiserver-authentication
	apiServices []*unstructured.Unstructured
	denied      map[string]bool // "verb resource" the access reviews refuse
	sawUser     []string        // users SubjectAccessReviews were asked about
}

func healthy() *cluster {
	c := &cluster{
		data: map[string]string{
			"requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
			"requestheader-allowed-names":  `["front-proxy-client"]`,
		},
		denied: map[string]bool{},
	}
	for _, n := range certs.DefaultAPIServiceNames {
		c.apiServices = append(c.apiServices, apiServiceObj(n, "kube-system", "metrics-gateway", "True", "Passed", "all checks passed"))
	}
	return c
}

func apiServiceObj(name, ns, svc, status, reason, msg string) *unstructured.Unstructured {
	version, group, _ := strings.Cut(name, ".")
	spec := map[string]interface{}{"group": group, "version": version}
	if svc != "" {
		spec["service"] = map[string]interface{}{"namespace": ns, "name": svc, "port": int64(443)}
	}
	return &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]interface{}{"name": name},
		"spec":       spec,
		"status": map[string]interface{}{"conditions": []interface{}{
			map[string]interface{}{"type": "Available", "status": status, "reason": reason, "message": msg},
		}},
	}}
}

func (c *cluster) set(name string, u *unstructured.Unstructured) {
	for i, s := range c.apiServices {
		if s.GetName() == name {
			c.apiServices[i] = u
			return
		}
	}
	c.apiServices = append(c.apiServices, u)
}

func (c *cluster) run(t *testing.T, o Options) []Result {
	t.Helper()
	kube := fake.NewSimpleClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "extension-apiserver-authentication"},
		Data:       c.data,
	})
	allowed := func(a *authzv1.ResourceAttributes) authzv1.SubjectAccessReviewStatus {
		r := a.Resource
		if a.Subresource != "" {
			r += "/" + a.Subresource
		}
		if c.denied[a.Verb+" "+r] {
			return authzv1.SubjectAccessReviewStatus{Reason: "no RBAC policy matched"}
		}
		return authzv1.SubjectAccessReviewStatus{Allowed: true}
	}
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		r.Status = allowed(r.Spec.ResourceAttributes)
		return true, r, nil
	})
	kube.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		c.sawUser = append(c.sawUser, r.Spec.User)
		r.Status = allowed(r.Spec.ResourceAttributes)
		return true, r, nil
	})
	objs := make([]runtime.Object, len(c.apiServices))
	for i, u := range c.apiServices {
		objs[i] = u
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{certs.APIServiceResource: "APIServiceList"}, objs...)
	if o.Namespace == "" {
		o = Options{Namespace: "kube-system", Service: "metrics-gateway", APIServiceNames: certs.DefaultAPIServiceNames, AsServiceAccount: o.AsServiceAccount}
	}
	return Run(context.Background(), kube, dyn, o)
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*cluster)
		as     string
		// wantFail are prefixes of the FAIL lines expected, each also
		// checked for a "Fix:"; every other line must be a PASS.
		wantFail []string
		wantIn   []string // substrings somewhere in the output
	}{
		{name: "healthy", break_: func(*cluster) {}, wantIn: []string{
			"PASS requestheader-client-ca\n",
			"PASS requestheader-allowed-names: [front-proxy-client]",
			"PASS apiservice v1.metrics.k8s.io\n",
			"PASS apiservice v1beta1.metrics.k8s.io\n",
			"PASS api-group-owner\n",
			"PASS rbac get nodes/metrics\n",
			"PASS rbac get configmaps kube-system/extension-apiserver-authentication\n",
		}},
		{name: "any allowed name", break_: func(c *cluster) { c.data["requestheader-allowed-names"] = "[]" },
			wantIn: []string{"PASS requestheader-allowed-names: empty"}},
		{name: "no requestheader CA", break_: func(c *cluster) { delete(c.data, "requestheader-client-ca-file") },
			wantFail: []string{"FAIL requestheader-client-ca: ConfigMap kube-system/extension-apiserver-authentication has no requestheader-client-ca-file"},
			wantIn:   []string{"--requestheader-client-ca-file"}},
		{name: "caBundle mismatch", break_: func(c *cluster) {
			c.set("v1beta1.metrics.k8s.io", apiServiceObj("v1beta1.metrics.k8s.io", "kube-system", "metrics-gateway", "False", "FailedDiscoveryCheck",
				`failing or missing response from https://10.96.0.10:443/apis/metrics.k8s.io/v1beta1: Get "https://10.96.0.10:443/apis/metrics.k8s.io/v1beta1": tls: failed to verify certificate: x509: certificate signed by unknown authority`))
		}, wantFail: []string{"FAIL apiservice v1beta1.metrics.k8s.io: kube-apiserver does not trust the gateway's serving certificate: spec.caBundle does not match it"}},
		{name: "unreachable", break_: func(c *cluster) {
			c.set("v1beta1.external.metrics.k8s.io", apiServiceObj("v1beta1.external.metrics.k8s.io", "kube-system", "metrics-gateway", "False", "FailedDiscoveryCheck",
				`failing or missing response from https://10.96.0.10:443: dial tcp 10.96.0.10:443: connect: connection refused`))
		}, wantFail: []string{"FAIL apiservice v1beta1.external.metrics.k8s.io: kube-apiserver cannot reach the gateway"}},
		{name: "no endpoints", break_: func(c *cluster) {
			c.set("v1beta2.custom.metrics.k8s.io", apiServiceObj("v1beta2.custom.metrics.k8s.io", "kube-system", "metrics-gateway", "False", "MissingEndpoints", "endpoints for service/metrics-gateway in \"kube-system\" have no addresses"))
		}, wantFail: []string{"FAIL apiservice v1beta2.custom.metrics.k8s.io: the Service kube-system/metrics-gateway has no ready endpoints"}},
		{name: "service not found", break_: func(c *cluster) {
			c.set("v1beta1.metrics.k8s.io", apiServiceObj("v1beta1.metrics.k8s.io", "kube-system", "metrics-gateway", "False", "ServiceNotFound", `service/metrics-gateway in "kube-system" is not present`))
		}, wantFail: []string{"FAIL apiservice v1beta1.metrics.k8s.io: the Service kube-system/metrics-gateway does not exist"}},
		{name: "proxy client rejected", break_: func(c *cluster) {
			c.set("v1beta1.metrics.k8s.io", apiServiceObj("v1beta1.metrics.k8s.io", "kube-system", "metrics-gateway", "False", "FailedDiscoveryCheck",
				"failing or missing response from https://10.96.0.10:443/apis/metrics.k8s.io/v1beta1: bad status from https://10.96.0.10:443/apis/metrics.k8s.io/v1beta1: 401"))
		}, wantFail: []string{
			"FAIL requestheader-allowed-names: APIService v1beta1.metrics.k8s.io reports",
			"FAIL apiservice v1beta1.metrics.k8s.io: the gateway rejected kube-apiserver's proxied request",
		}, wantIn: []string{"must be one of [front-proxy-client]"}},
		{name: "missing APIService", break_: func(c *cluster) {
			c.apiServices = slices.DeleteFunc(c.apiServices, func(a *unstructured.Unstructured) bool { return a.GetName() == "v1beta1.metrics.k8s.io" })
		},
			wantFail: []string{"FAIL apiservice v1beta1.metrics.k8s.io: it does not exist"}},
		{name: "owned by metrics-server", break_: func(c *cluster) {
			c.set("v1beta1.metrics.k8s.io", apiServiceObj("v1beta1.metrics.k8s.io", "kube-system", "metrics-server", "True", "Passed", "all checks passed"))
		}, wantFail: []string{"FAIL api-group-owner v1beta1.metrics.k8s.io: APIService v1beta1.metrics.k8s.io is served by kube-system/metrics-server (looks like metrics-server)"}},
		{name: "points at a Service that does not exist", break_: func(c *cluster) {
			c.set("v1beta1.custom.metrics.k8s.io", apiServiceObj("v1beta1.custom.metrics.k8s.io", "kube-system", "metrics-gateway-gone", "False", "ServiceNotFound", `service/metrics-gateway-gone in "kube-system" is not present`))
		}, wantFail: []string{"FAIL api-group-owner v1beta1.custom.metrics.k8s.io: APIService v1beta1.custom.metrics.k8s.io points at Service kube-system/metrics-gateway-gone, which does not exist"}},
		{name: "other version owned by prometheus-adapter", break_: func(c *cluster) {
			c.set("v1beta3.custom.metrics.k8s.io", apiServiceObj("v1beta3.custom.metrics.k8s.io", "monitoring", "prometheus-adapter", "True", "Passed", ""))
			c.set("v1beta1.other.example.com", apiServiceObj("v1beta1.other.example.com", "monitoring", "other", "True", "Passed", ""))
		}, wantFail: []string{"FAIL api-group-owner v1beta3.custom.metrics.k8s.io: APIService v1beta3.custom.metrics.k8s.io is served by monitoring/prometheus-adapter (looks like prometheus-adapter)"}},
		{name: "local APIService", break_: func(c *cluster) {
			c.set("v1beta1.metrics.k8s.io", apiServiceObj("v1beta1.metrics.k8s.io", "", "", "True", "Local", ""))
		}, wantFail: []string{"FAIL apiservice v1beta1.metrics.k8s.io: it has no spec.service"}},
		{name: "missing RBAC", break_: func(c *cluster) {
			c.denied["get nodes/metrics"] = true
			c.denied["create tokenreviews"] = true
		}, wantFail: []string{
			"FAIL rbac get nodes/metrics: the caller may not get nodes/metrics (no RBAC policy matched). Fix: apply the ClusterRole system:metrics-gateway",
			"FAIL rbac create tokenreviews.authentication.k8s.io: the caller may not create tokenreviews.authentication.k8s.io (no RBAC policy matched). Fix: bind the gateway's ServiceAccount to the ClusterRole system:auth-delegator",
		}},
		{name: "missing RBAC as service account", as: "kube-system/metrics-gateway", break_: func(c *cluster) {
			c.denied["get configmaps"] = true
		}, wantFail: []string{
			"FAIL rbac get configmaps kube-system/extension-apiserver-authentication: system:serviceaccount:kube-system:metrics-gateway may not get configmaps",
		}, wantIn: []string{"RoleBinding metrics-gateway-auth-reader"}},
		{name: "bad service account", as: "metrics-gateway", break_: func(*cluster) {},
			wantFail: []string{`FAIL rbac: --as-serviceaccount "metrics-gateway" is not namespace/name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := healthy()
			tc.break_(c)
			var out bytes.Buffer
			failed := Print(&out, c.run(t, Options{AsServiceAccount: tc.as}))
			text := out.String()
			if failed != len(tc.wantFail) {
				t.Errorf("%d failures, want %d:\n%s", failed, len(tc.wantFail), text)
			}
			for _, w := range tc.wantFail {
				found := false
				for _, line := range strings.Split(text, "\n") {
					if strings.HasPrefix(line, w) {
						found = true
						if !strings.Contains(line, ". Fix: ") {
							t.Errorf("line lacks a fix: %s", line)
						}
					}
				}
				if !found {
					t.Errorf("no line starting %q in:\n%s", w, text)
				}
			}
			for _, w := range tc.wantIn {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				if !strings.HasPrefix(line, "PASS ") && !strings.HasPrefix(line, "FAIL ") {
					t.Errorf("line is neither PASS nor FAIL: %q", line)
				}
			}
			if tc.as != "" && strings.Contains(tc.as, "/") {
				for _, u := range c.sawUser {
					if u != "system:serviceaccount:kube-system:metrics-gateway" {
						t.Errorf("reviewed user %q", u)
					}
				}
				if len(c.sawUser) == 0 {
					t.Error("no SubjectAccessReview")
				}
			}
		})
	}
}

func TestRunUnreadableConfigMap(t *testing.T) {
	kube := fake.NewSimpleClientset()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{certs.APIServiceResource: "APIServiceList"})
	rs := Run(context.Background(), kube, dyn, Options{Namespace: "kube-system", Service: "metrics-gateway"})
	if rs[0].OK || !strings.Contains(rs[0].Problem, "cannot read ConfigMap") {
		t.Errorf("first result %v", rs[0])
	}
}
