package doctor

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
)

// TestCheckKubelet probes a fake HTTPS kubelet serving the golden
// /metrics/resource through checkKubelet, and checks that each way a real
// kubelet refuses the gateway is named with the setting that fixes it.
func TestCheckKubelet(t *testing.T) {
	body, err := os.ReadFile("../scrape/testdata/kubelet/round1.txt")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			_, _ = w.Write(body)
		case "Bearer no-rbac":
			http.Error(w, "Forbidden (user=system:serviceaccount:kube-system:metrics-gateway, verb=get, resource=nodes, subresource=metrics)", http.StatusForbidden)
		default:
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	port := int32(srv.Listener.Addr().(*net.TCPAddr).Port)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	node := func(name string, ready corev1.ConditionStatus, port int32) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}},
			Status: corev1.NodeStatus{
				Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
				Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
			},
		}
	}
	closed := closedPort(t)
	// a-down sorts first but is not Ready: the probe must skip it.
	nodes := []runtime.Object{node("a-down", corev1.ConditionFalse, closed), node("b-up", corev1.ConditionTrue, port)}
	opts := scrape.DefaultKubeletOptions()
	opts.UseNodeStatusPort = true
	insecure := opts
	insecure.InsecureTLS = true
	noSuchPool := opts
	noSuchPool.NodeSelector = "pool=none"

	for _, tc := range []struct {
		name      string
		k         KubeletCheck
		ok        bool
		check     string
		want, fix string // substrings of the line
	}{
		{name: "healthy", k: KubeletCheck{Options: opts, Credentials: scrape.Credentials{BearerToken: "good", CAData: ca}},
			ok: true, check: "kubelet b-up", want: "/metrics/resource answered"},
		{name: "untrusted serving certificate", k: KubeletCheck{Options: opts, Credentials: scrape.Credentials{BearerToken: "good"}},
			check: "kubelet b-up", want: "does not trust the kubelet's serving certificate", fix: "--kubelet-certificate-authority"},
		{name: "token refused", k: KubeletCheck{Options: insecure, Credentials: scrape.Credentials{BearerToken: "stranger"}},
			check: "kubelet b-up", want: "rejected the gateway's credentials", fix: "authentication.webhook.enabled"},
		{name: "nodes/metrics denied", k: KubeletCheck{Options: insecure, Credentials: scrape.Credentials{BearerToken: "no-rbac"}},
			check: "kubelet b-up", want: "denied it", fix: "nodes/metrics"},
		{name: "unreachable", k: KubeletCheck{Options: insecure, Credentials: scrape.Credentials{BearerToken: "good"}, Node: "a-down"},
			check: "kubelet a-down", want: "cannot reach the kubelet", fix: "NetworkPolicies"},
		{name: "no such node", k: KubeletCheck{Options: opts, Node: "gone"},
			check: "kubelet gone", want: "cannot get the node", fix: "--kubelet-node"},
		{name: "selector matches nothing", k: KubeletCheck{Options: noSuchPool},
			check: "kubelet", want: `no node matches --node-selector "pool=none"`, fix: "--node-selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkKubelet(context.Background(), fake.NewSimpleClientset(nodes...), tc.k)
			line := r.String()
			if r.OK != tc.ok || r.Check != tc.check {
				t.Fatalf("got %q, want ok=%v check %q", line, tc.ok, tc.check)
			}
			if !strings.Contains(line, tc.want) || !strings.Contains(r.Fix, tc.fix) {
				t.Errorf("line %q\nwant %q with a fix mentioning %q", line, tc.want, tc.fix)
			}
		})
	}
}

func TestExplainProbeCoversEveryStage(t *testing.T) {
	for _, stage := range []string{scrape.ProbeStageConfig, scrape.ProbeStageAddress, scrape.ProbeStageConnect, scrape.ProbeStageStatus, scrape.ProbeStageParse} {
		problem, fix := explainProbe(&scrape.ProbeError{Stage: stage, URL: "https://n:10250/metrics/resource", StatusCode: 500, Err: errString("boom")}, scrape.DefaultKubeletOptions())
		if !strings.Contains(problem, "boom") || fix == "" {
			t.Errorf("stage %s: problem %q fix %q", stage, problem, fix)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func closedPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}
