// Package e2e proves the gateway against real components: kube-apiserver
// with its aggregator, kube-controller-manager (Deployment, ReplicaSet and
// HPA controllers), kube-scheduler, kubectl, and kubelets simulated with the
// kubelet's own metrics code. Run with `make e2e`.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

var e *env.Env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "metrics-gateway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Addresses apart from simkubelet's defaults, which the demo and the
	// benchmarks use, so the suite runs beside them.
	e, err = env.Up(ctx, env.Options{Dir: dir, Nodes: 3, FirstNodeIP: "127.0.3.10", PodCIDRBase: "127.3.0.0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: environment:", err)
		return 1
	}
	code := m.Run()
	if err := e.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: down:", err)
	}
	if code == 0 && os.Getenv("E2E_KEEP_DIR") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Println("e2e: state and logs kept in", dir)
	}
	return code
}

// logsOnFailure prints the tail of every component's log if t fails.
func logsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", e.LogTails(40))
		}
	})
}

// eventually polls f every second until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	pollEvery(t, time.Second, timeout, what, f)
}

// pollEvery polls f every period until it returns nil or timeout passes,
// for the waits whose length is itself measured.
func pollEvery(t *testing.T, period, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := cluster.Poll(context.Background(), period, timeout, what, f); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEnd runs the scenarios in order on one cluster. Each can also
// run alone (go test -run 'TestEndToEnd/<name>'): what it needs from those
// before it, it makes itself (prereq_test.go), and in the full run finds
// already made. The zero-config custom metrics come before the restart
// onto an adapter config file; the hostile targets, the kubelet and the
// restart tests disturb the gateway on purpose, so they come later; the
// self-managed certificate last, since it leaves the gateway on it.
func TestEndToEnd(t *testing.T) {
	for _, s := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"kubectl top matches the simulation", testKubectlTop},
		{"raw metrics.k8s.io API", testRawResourceAPI},
		{"kubectl top reads metrics.k8s.io v1", testTopReadsV1},
		{"kubelets receive a read-only token", testKubeletLeastPrivilege},
		{"manifests: every overlay passes a server-side dry run", testManifestsDryRun},
		{"HPA scales on cpu", testHPAScalesOnCPU},
		{"custom metrics with zero config", testZeroConfigCustomMetrics},
		{"Prometheus API and Grafana dashboards", testPrometheusAPI},
		{"HPA scales on an external metric from an adapter config", testHPAScalesOnExternalMetric},
		{"two replicas agree after a cpu and a request-rate step", testReplicasAgree},
		{"hostile scrape targets", testHostileTargets},
		{"a bad kubelet", testBadKubelet},
		{"gateway SIGKILL and restart", testGatewaySurvivesSIGKILL},
		{"gateway SIGTERM with a request held open", testGatewaySIGTERM},
		{"metrics-gateway doctor on a healthy and a broken cluster", testDoctor},
		{"Helm chart installed as a release, its gateway ready", testHelmChartInstall},
		// Before the managed certificate's scenario, which leaves the
		// gateway managing its certificate and keeping the APIServices'
		// caBundle at its own CA, which the scale-out replicas' certificate
		// is not signed by.
		{"scale-out: two sharded replicas, Thanos receive and query", testScaleOut},
		{"self-managed serving certificate shared by two replicas, and its rotation", testManagedServingCert},
	} {
		if !t.Run(s.name, s.f) {
			// Keep going: each scenario reports on its own.
			continue
		}
	}
}
