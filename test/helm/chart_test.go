package helm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const chartDir = "../../charts/metrics-gateway"

// objects parses a multi-document manifest into its objects by
// kind/namespace/name.
func objects(t *testing.T, manifest string) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, doc := range strings.Split(manifest, "\n---") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		if obj == nil {
			continue
		}
		md, _ := obj["metadata"].(map[string]any)
		key := fmt.Sprintf("%s/%v/%v", obj["kind"], md["namespace"], md["name"])
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = obj
	}
	return objs
}

// kustomize renders a kustomization with the control plane's kubectl
// (test/bin, built by make e2e-build; KUBECTL overrides it).
func kustomize(t *testing.T, dir string) string {
	t.Helper()
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "../bin/kubectl"
	}
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("%s kustomize %s (make e2e-build builds it): %v", kubectl, dir, err)
	}
	return string(out)
}

func render(t *testing.T, o Options) map[string]map[string]any {
	t.Helper()
	o.Chart = chartDir
	out, err := Render(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return objects(t, out)
}

// TestChartRendersTheManifests: with its defaults, released as
// metrics-gateway in kube-system, the chart renders exactly the objects of
// manifests/base, and with ci/ha-values.yaml those of manifests/overlays/ha.
func TestChartRendersTheManifests(t *testing.T) {
	for _, tc := range []struct{ name, kustomization, values string }{
		{"base", "../../manifests/base", ""},
		{"ha", "../../manifests/overlays/ha", "ci/ha-values.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Release: "metrics-gateway", Namespace: "kube-system"}
			if tc.values != "" {
				o.ValuesFiles = []string{filepath.Join(chartDir, tc.values)}
			}
			got, want := render(t, o), objects(t, kustomize(t, tc.kustomization))
			for key, w := range want {
				g, ok := got[key]
				switch {
				case !ok:
					t.Errorf("%s: in %s, not rendered by the chart", key, tc.kustomization)
				case !reflect.DeepEqual(g, w):
					gy, _ := yaml.Marshal(g)
					wy, _ := yaml.Marshal(w)
					t.Errorf("%s differs.\nchart:\n%s\n%s:\n%s", key, gy, tc.kustomization, wy)
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					t.Errorf("%s: rendered by the chart, not in %s", key, tc.kustomization)
				}
			}
		})
	}
}

// TestChartInAnotherNamespace: a release of another name in another
// namespace names every object after itself, binds only its own accounts,
// and tells the gateway its Secret, Service and kubelet account; only the
// extension-apiserver-authentication reader stays in kube-system.
func TestChartInAnotherNamespace(t *testing.T) {
	got := render(t, Options{Release: "monitoring", Namespace: "observability", Set: []string{"apiService.create=false"}})
	const full = "monitoring-metrics-gateway"
	for key, obj := range got {
		md := obj["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		if !strings.Contains(name, full) {
			t.Errorf("%s is not named after the release (%s)", key, full)
		}
		if ns, ok := md["namespace"]; ok && ns != "observability" && key != "RoleBinding/kube-system/"+full+"-auth-reader" {
			t.Errorf("%s is in namespace %v", key, ns)
		}
		if obj["kind"] == "APIService" {
			t.Errorf("%s rendered with apiService.create=false", key)
		}
		subjects, _ := obj["subjects"].([]any)
		for _, s := range subjects {
			s := s.(map[string]any)
			if s["name"] != "horizontal-pod-autoscaler" && (s["namespace"] != "observability" || !strings.HasPrefix(s["name"].(string), full)) {
				t.Errorf("%s binds %v/%v", key, s["namespace"], s["name"])
			}
		}
	}
	args := containerArgs(t, got["Deployment/observability/"+full])
	for _, want := range []string{
		"--kubelet-service-account=observability/" + full + "-kubelet",
		"--serving-cert-secret=" + full + "-serving-cert",
		"--serving-cert-service=" + full,
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
}

// TestChartOptions: metrics-server's chart's value names do what they do
// there.
func TestChartOptions(t *testing.T) {
	got := render(t, Options{Release: "metrics-gateway", Namespace: "kube-system",
		ValuesFiles: []string{filepath.Join(chartDir, "ci/servicemonitor-values.yaml")},
		Set: []string{"args={--kubelet-insecure-tls}", "containerPort=4443", "image.tag=v9", "podDisruptionBudget.enabled=true",
			"podDisruptionBudget.maxUnavailable=1", "commonLabels.team=obs", "extraConfigFiles.adapter\\.yaml=rules: []"}})
	sm := got["ServiceMonitor/kube-system/metrics-gateway"]
	if sm == nil || sm["metadata"].(map[string]any)["labels"].(map[string]any)["release"] != "prometheus" {
		t.Errorf("ServiceMonitor: %v", sm)
	}
	d := got["Deployment/kube-system/metrics-gateway"]
	args := containerArgs(t, d)
	for _, want := range []string{"--secure-port=4443", "--authorization-always-allow-paths=/metrics", "--kubelet-insecure-tls"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if args[len(args)-1] != "--kubelet-insecure-tls" {
		t.Errorf("args %q: args are not appended last", args)
	}
	c := container(t, d)
	if c["image"] != "ghcr.io/metrics-gateway/metrics-gateway:v9" {
		t.Errorf("image %v", c["image"])
	}
	if port := c["ports"].([]any)[0].(map[string]any)["containerPort"]; port != float64(4443) {
		t.Errorf("containerPort %v", port)
	}
	pdb := got["PodDisruptionBudget/kube-system/metrics-gateway"]
	if spec := pdb["spec"].(map[string]any); spec["maxUnavailable"] != float64(1) || spec["minAvailable"] != nil {
		t.Errorf("PodDisruptionBudget spec %v", spec)
	}
	for key, obj := range got {
		if obj["metadata"].(map[string]any)["labels"].(map[string]any)["team"] != "obs" {
			t.Errorf("%s lacks commonLabels", key)
		}
	}
	cm := got["ConfigMap/kube-system/metrics-gateway-config"]
	if data := cm["data"].(map[string]any); data["adapter.yaml"] != "rules: []\n" || data["config.yaml"] == nil {
		t.Errorf("ConfigMap data %v", data)
	}
}

// TestChartLints: helm lint --strict passes with the defaults and every
// values file under ci/.
func TestChartLints(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no ci/ values files")
	}
	for _, f := range append([]string{""}, files...) {
		o := Options{Chart: chartDir, Namespace: "kube-system"}
		if f != "" {
			o.ValuesFiles = []string{f}
		}
		if err := Lint(o); err != nil {
			t.Errorf("values %q: %v", f, err)
		}
	}
	// Lint must be able to fail: values the schema refuses.
	for _, bad := range []string{"replicas=two", "containerPort=0", "image.pullPolicy=Sometimes"} {
		if err := Lint(Options{Chart: chartDir, Set: []string{bad}}); err == nil {
			t.Errorf("lint passed with %s", bad)
		}
	}
}

func container(t *testing.T, deployment map[string]any) map[string]any {
	t.Helper()
	if deployment == nil {
		t.Fatal("no Deployment rendered")
	}
	spec := deployment["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	return spec["containers"].([]any)[0].(map[string]any)
}

func containerArgs(t *testing.T, deployment map[string]any) []string {
	t.Helper()
	var args []string
	for _, a := range container(t, deployment)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}
