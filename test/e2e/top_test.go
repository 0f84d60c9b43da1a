package e2e

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
)

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// topWorkloads run at fixed usage (no load), so kubectl top must match the
// simulation's truth: one single-container and one two-container workload.
var topWorkloads = []deployment{
	{ns: "e2e-top", name: "web", replicas: 3, containers: []string{"app"}, cpuBase: 0.25, memory: 200 << 20},
	{ns: "e2e-top", name: "db", replicas: 2, containers: []string{"db", "exporter"}, cpuBase: 0.12, memory: 300 << 20},
}

func within5(got, want float64) bool { return math.Abs(got-want) <= 0.05*want }

// testKubectlTop: every simulated node and pod, per container, within ±5%
// of the simulated truth, through kube-apiserver's aggregator and kubectl.
func testKubectlTop(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ensureTopWorkloads(ctx, t)
	eventually(t, 90*time.Second, "kubectl top pods matches the truth", func() error {
		out, err := e.Kubectl(ctx, "top", "pods", "-A", "--containers", "--no-headers")
		if err != nil {
			return err
		}
		truth, err := e.SimTruth(ctx)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 5 {
				return fmt.Errorf("unexpected line %q", line)
			}
			key := f[0] + "/" + f[1]
			want, ok := truth.Pods[key].Containers[f[2]]
			if !ok {
				return fmt.Errorf("kubectl shows %s container %s, the simulation has no such container", key, f[2])
			}
			if err := compare(key+"/"+f[2], f[3], f[4], want.CPUCores, want.MemoryBytes); err != nil {
				return err
			}
			seen[key+"/"+f[2]] = true
		}
		for pod, p := range truth.Pods {
			for c := range p.Containers {
				if !seen[pod+"/"+c] {
					return fmt.Errorf("kubectl top lacks %s/%s:\n%s", pod, c, out)
				}
			}
		}
		return nil
	})
	eventually(t, 60*time.Second, "kubectl top nodes matches the truth", func() error {
		out, err := e.Kubectl(ctx, "top", "nodes", "--no-headers")
		if err != nil {
			return err
		}
		truth, err := e.SimTruth(ctx)
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(truth.Nodes) {
			return fmt.Errorf("%d nodes shown, %d simulated:\n%s", len(lines), len(truth.Nodes), out)
		}
		for _, line := range lines {
			f := strings.Fields(line) // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
			want, ok := truth.Nodes[f[0]]
			if !ok || len(f) != 5 {
				return fmt.Errorf("unexpected line %q", line)
			}
			if err := compare(f[0], f[1], f[3], want.CPUCores, want.MemoryBytes); err != nil {
				return err
			}
		}
		return nil
	})
}

func compare(what, cpu, mem string, wantCPU, wantMem float64) error {
	c, err := resource.ParseQuantity(cpu)
	if err != nil {
		return fmt.Errorf("%s cpu %q: %w", what, cpu, err)
	}
	m, err := resource.ParseQuantity(mem)
	if err != nil {
		return fmt.Errorf("%s memory %q: %w", what, mem, err)
	}
	gotCPU, gotMem := float64(c.MilliValue())/1000, float64(m.Value())
	if !within5(gotCPU, wantCPU) || !within5(gotMem, wantMem) {
		return fmt.Errorf("%s: kubectl shows cpu %s memory %s, simulated %.3f cores %.0f bytes", what, cpu, mem, wantCPU, wantMem)
	}
	return nil
}

var creationTimestamps = regexp.MustCompile(`"creationTimestamp":"[^"]*"`)

// testTopReadsV1: kubectl 1.37 top reads metrics.k8s.io/v1 when it is
// served (its request log names the path), and v1 answers what v1beta1,
// which the HPA controller reads, answers: the same pods, windows,
// timestamps and usage, through the aggregator.
func testTopReadsV1(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ensureTopWorkloads(ctx, t)
	var out string
	// Alone, the scenario starts before the pods' first scrapes.
	eventually(t, 90*time.Second, "kubectl top pods answers", func() error {
		var err error
		out, err = e.Kubectl(ctx, "top", "pods", "-n", "e2e-top", "-v=6")
		return err
	})
	if !strings.Contains(out, `url="https://`) || !strings.Contains(out, "/apis/metrics.k8s.io/v1/namespaces/e2e-top/pods") || strings.Contains(out, "/apis/metrics.k8s.io/v1beta1/") {
		t.Errorf("kubectl top did not read metrics.k8s.io/v1 alone:\n%s", out)
	}
	for _, path := range []string{"/namespaces/e2e-top/pods", "/nodes"} {
		eventually(t, 60*time.Second, "v1 and v1beta1 answer alike for "+path, func() error {
			// A scrape can land between the two reads: then the next try.
			v1, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1"+path)
			if err != nil {
				return err
			}
			beta, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1"+path)
			if err != nil {
				return err
			}
			asBeta := strings.ReplaceAll(v1, `"apiVersion":"metrics.k8s.io/v1"`, `"apiVersion":"metrics.k8s.io/v1beta1"`)
			// creationTimestamp is the time of each request, as metrics-server's.
			same := creationTimestamps.ReplaceAllString(asBeta, "") == creationTimestamps.ReplaceAllString(beta, "")
			if !same || !strings.Contains(v1, `"usage"`) {
				return fmt.Errorf("v1 answered\n%s\nv1beta1\n%s", v1, beta)
			}
			return nil
		})
	}
}

// testRawResourceAPI reads metrics.k8s.io through the aggregator as kubectl
// get --raw does, including selectors and a missing pod.
func testRawResourceAPI(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ensureTopWorkloads(ctx, t)
	eventually(t, 90*time.Second, "web pods answered", func() error {
		out, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/e2e-top/pods?labelSelector=app%3Dweb")
		if err != nil {
			return err
		}
		if n := strings.Count(out, `"name":"web-`); n != 3 {
			return fmt.Errorf("%d web pods in %s", n, out)
		}
		return nil
	})
	pods, err := e.Kubectl(ctx, "get", "pods", "-n", "e2e-top", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/apis/metrics.k8s.io/v1beta1/nodes", `"kind":"NodeMetricsList"`},
		{"/apis/metrics.k8s.io/v1beta1/nodes/sim-node-0", `"kind":"NodeMetrics"`},
		{"/apis/metrics.k8s.io/v1beta1/pods", `"kind":"PodMetricsList"`},
		{"/apis/metrics.k8s.io/v1beta1/namespaces/e2e-top/pods/" + pods, `"name":"` + pods + `"`},
		{"/apis/metrics.k8s.io/v1beta1/namespaces/e2e-top/pods?labelSelector=app%3Ddb", `"name":"exporter"`},
	} {
		out, err := e.Kubectl(ctx, "get", "--raw", tc.path)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("GET %s: %v\n%s", tc.path, err, out)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/apis/metrics.k8s.io/v1beta1/namespaces/e2e-top/pods/no-such-pod", "NotFound"},
		{"/apis/metrics.k8s.io/v1beta1/nodes/no-such-node", "NotFound"},
		{"/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app+in+(", "BadRequest"},
	} {
		out, err := e.Kubectl(ctx, "get", "--raw", tc.path)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("GET %s: want %s, got %v\n%s", tc.path, tc.want, err, out)
		}
	}
}
