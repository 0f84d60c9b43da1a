package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
)

// TestExplainFlags needs no cluster: every case stops before a client is
// used, or finds nothing listening (the gateway at port 1).
func TestExplainFlags(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	checkRunCases(t, []runCase{
		{"help", []string{"explain", "--help"}, "", "kubectl explain-hpa NAME"},
		{"no kind", []string{"explain", "web"}, "want `explain hpa NAME`", ""},
		{"no name", []string{"explain", "hpa"}, "want `explain hpa NAME`", ""},
		{"bad output", []string{"explain", "hpa", "web", "-o", "yaml"}, "want text or json", ""},
		{"negative tolerance", []string{"explain", "hpa", "web", "--tolerance=-1"}, "negative", ""},
		{"at without gateway", []string{"explain", "hpa", "web", "--at=-5m", "--kubeconfig", kc}, "--at needs --gateway", ""},
		{"bad gateway", []string{"explain", "hpa", "web", "--gateway", "ftp://x", "--kubeconfig", kc}, "want http://HOST:PORT", ""},
		{"tolerance with gateway", []string{"explain", "hpa", "web", "--gateway", "http://127.0.0.1:1", "--tolerance=0.2", "--kubeconfig", kc}, "applies to a local replay", ""},
		{"future duration", []string{"explain", "hpa", "web", "--gateway", "http://127.0.0.1:1", "--at=5m", "--kubeconfig", kc}, "how long ago", ""},
		{"bad at", []string{"explain", "hpa", "web", "--gateway", "http://127.0.0.1:1", "--at=yesterday", "--kubeconfig", kc}, "want an RFC 3339 time", ""},
		{"gateway down", []string{"explain", "hpa", "web", "--gateway", "http://127.0.0.1:1", "--kubeconfig", kc}, "connection refused", ""},
		{"missing kubeconfig", []string{"explain", "hpa", "web", "--kubeconfig", t.TempDir() + "/none"}, "explain: kubernetes client config", ""},
	})
}

// TestPrintExplanation: the verdict comes first, then each metric with a
// row per pod, saying why a pod was left out and what was assumed for it.
func TestPrintExplanation(t *testing.T) {
	zero := int64(0)
	e := autoscaling.Explanation{Namespace: "shop", Name: "web", At: time.Now(), Verdict: "scale from 2 to 3: cpu: usage ratio 1.400 × 2 pods with values = 3",
		Current: 2, Min: 2, Max: 10, Proposal: 3, Winner: "cpu", Stabilized: 3, Desired: 3, LimitReason: "DesiredWithinRange",
		Metrics: []autoscaling.MetricExplain{{Name: "cpu", Type: "Resource", Target: "50% average utilization", Verdict: autoscaling.MetricVerdict{
			Current: 70, Ratio: 1.4, Proposal: 3, Reason: "usage ratio 1.400 × 2 pods with values = 3",
			Pods: []autoscaling.PodVerdict{{Name: "web-1", State: "used", Value: 700, Request: 1000}, {Name: "web-2", State: "unready", Reason: "pending", Request: 1000, Assumed: &zero}},
		}}}}
	var out bytes.Buffer
	if err := printExplanation(&out, e); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"shop/web: scale from 2 to 3", "current 70%, usage ratio 1.400, proposal 3", "web-1  used", "web-2  unready", "pending", "history: none"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	if !strings.HasPrefix(text, "shop/web: scale from 2 to 3") {
		t.Errorf("the verdict is not first:\n%s", text)
	}
}
