package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// chartDir is the gateway's Helm chart.
func chartDir() string { return filepath.Join(e.Root(), "charts", "metrics-gateway") }

// helmchart runs test/bin/helmchart (test/helm: Helm's Go library, v4; make
// e2e-build builds it) and returns its standard output.
func helmchart(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "helmchart"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("helmchart %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// testHelmChartInstall installs the chart as a Helm release (Helm's own
// install: objects applied server-side, the release recorded in a Secret)
// into a namespace of its own, under another release name, beside the
// harness's gateway (apiService.create=false: the APIServices stay the
// harness's). It then runs the gateway the release's Deployment describes,
// with the release's ServiceAccount token, arguments and ConfigMap: it
// must become ready (informers, kubelets scraped with the release's
// kubelet account), fill the release's certificate Secret, and answer
// metrics.k8s.io for every node. helm uninstall removes the objects.
func testHelmChartInstall(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const release, ns = "e2e-chart", "e2e-chart"
	const full = release + "-metrics-gateway"
	kubeconfig := e.Cluster.Kubeconfig
	// Left over from an interrupted run: helm install refuses a name in use.
	_, _ = helmchart(ctx, "uninstall", "--kubeconfig", kubeconfig, "--release", release, "--namespace", ns)
	out, err := helmchart(ctx, "install", "--kubeconfig", kubeconfig, "--chart", chartDir(), "--release", release,
		"--namespace", ns, "--set", "apiService.create=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	uninstalled := false
	defer func() {
		if !uninstalled {
			_, _ = helmchart(context.Background(), "uninstall", "--kubeconfig", kubeconfig, "--release", release, "--namespace", ns)
		}
	}()
	if _, err := e.Client.CoreV1().Secrets(ns).Get(ctx, "sh.helm.release.v1."+release+".v1", metav1.GetOptions{}); err != nil {
		t.Fatalf("Helm's release record: %v", err)
	}
	d, err := e.Client.AppsV1().Deployments(ns).Get(ctx, full, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := e.Client.CoreV1().ConfigMaps(ns).Get(ctx, full+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.StartInstalled(ctx, env.InstalledGateway{
		Name: "chart-gateway", Namespace: ns, ServiceAccount: d.Spec.Template.Spec.ServiceAccountName,
		Args: d.Spec.Template.Spec.Containers[0].Args, Config: []byte(cm.Data["config.yaml"]),
		Service: full, Secret: full + "-serving-cert",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	secret, err := e.Client.CoreV1().Secrets(ns).Get(ctx, full+"-serving-cert", metav1.GetOptions{})
	if err != nil || len(secret.Data["ca.crt"]) == 0 {
		t.Fatalf("the release's certificate Secret was not filled: %v", err)
	}
	code, body, err := g.Get(ctx, "/apis/metrics.k8s.io/v1beta1/nodes")
	if err != nil || code != 200 {
		t.Fatalf("NodeMetrics from the chart's gateway: %d %v: %.300s", code, err, body)
	}
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Usage    map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != e.Nodes {
		t.Fatalf("%d NodeMetrics, want %d: %.300s", len(nodes.Items), e.Nodes, body)
	}
	for _, n := range nodes.Items {
		if n.Usage["cpu"] == "" || n.Usage["memory"] == "" {
			t.Errorf("node %s usage %v", n.Metadata.Name, n.Usage)
		}
	}
	t.Logf("the chart's gateway (%s) answered NodeMetrics for %d nodes", strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "), len(nodes.Items))
	if err := g.Stop(); err != nil {
		t.Log("stop:", err)
	}
	out, err = helmchart(ctx, "uninstall", "--kubeconfig", kubeconfig, "--release", release, "--namespace", ns)
	if err != nil {
		t.Fatal(err)
	}
	uninstalled = true
	t.Log(out)
	if _, err := e.Client.AppsV1().Deployments(ns).Get(ctx, full, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment after uninstall: %v", err)
	}
	if _, err := e.Client.RbacV1().ClusterRoles().Get(ctx, "system:"+full, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole after uninstall: %v", err)
	}
}
