package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// scratchNS receives the manifests' Service in the dry run: the harness's
// own Service of that name (type ExternalName, for the aggregator to reach
// a local process) occupies kube-system/metrics-gateway, and a Service
// cannot change type by an apply that does not clear externalName.
const scratchNS = "e2e-manifests"

// testManifestsDryRun renders manifests/base and every overlay with
// kubectl's kustomize, and the Helm chart with its defaults and each values
// file under its ci/ (Helm's Go library, test/helm), and sends every object
// to the real kube-apiserver as a server-side dry run: validation and
// admission pass for each. (The gateway itself already runs as the base's
// ServiceAccount with its RBAC.)
func testManifestsDryRun(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scratchNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(e.Root(), "manifests", "base")}
	overlays, err := filepath.Glob(filepath.Join(e.Root(), "manifests", "overlays", "*"))
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	dirs = append(dirs, overlays...)
	renders := map[string]func() (string, error){}
	for _, dir := range dirs {
		renders[filepath.Base(dir)] = func() (string, error) { return e.Kubectl(ctx, "kustomize", dir) }
	}
	chartValues, _ := filepath.Glob(filepath.Join(chartDir(), "ci", "*.yaml"))
	for _, values := range append([]string{""}, chartValues...) {
		name := "chart"
		args := []string{"render", "--chart", chartDir()}
		if values != "" {
			if strings.Contains(values, "servicemonitor") {
				continue // the ServiceMonitor CRD is not installed here
			}
			name += "-" + strings.TrimSuffix(filepath.Base(values), ".yaml")
			args = append(args, "-f", values)
		}
		renders[name] = func() (string, error) { return helmchart(ctx, args...) }
	}
	for _, name := range slices.Sorted(maps.Keys(renders)) {
		t.Run(name, func(t *testing.T) {
			rendered, err := renders[name]()
			if err != nil {
				t.Fatal(err)
			}
			rendered = strings.TrimPrefix(strings.TrimSpace(rendered), "---\n")
			var rest, services []string
			kinds := map[string]int{}
			for _, doc := range strings.Split(rendered, "\n---\n") {
				var obj map[string]any
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					t.Fatal(err)
				}
				kind, _ := obj["kind"].(string)
				kinds[kind]++
				if kind == "Service" {
					obj["metadata"].(map[string]any)["namespace"] = scratchNS
					b, _ := yaml.Marshal(obj)
					services = append(services, string(b))
					continue
				}
				rest = append(rest, doc)
			}
			dir := t.TempDir()
			for file, docs := range map[string][]string{"rest.yaml": rest, "services.yaml": services} {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			out, err := e.Kubectl(ctx, "apply", "--dry-run=server", "-f", filepath.Join(dir, "rest.yaml"))
			if err != nil {
				t.Fatalf("server-side dry run of %s: %v", name, err)
			}
			if len(services) > 0 {
				svc, err := e.Kubectl(ctx, "create", "--dry-run=server", "-f", filepath.Join(dir, "services.yaml"))
				if err != nil {
					t.Fatalf("server-side dry run of %s's Service: %v", name, err)
				}
				out += svc
			}
			if got := strings.Count(out, "(server dry run)"); got != len(rest)+len(services) {
				t.Errorf("%d objects, %d accepted in the dry run:\n%s", len(rest)+len(services), got, out)
			}
			t.Logf("%s: %d objects %v accepted by a server-side dry run", name, len(rest)+len(services), fmt.Sprint(kinds))
		})
	}
}
