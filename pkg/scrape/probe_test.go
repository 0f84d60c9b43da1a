package scrape

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestProbeKubelet probes a fake HTTPS kubelet serving the golden
// /metrics/resource fixture, through the kubelet job's own discovery,
// relabeling, TLS and token, and checks each way it can fail stops at the
// stage doctor explains.
func TestProbeKubelet(t *testing.T) {
	body, err := os.ReadFile("testdata/kubelet/round1.txt")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") == "Bearer forbidden":
			http.Error(w, "Forbidden (user=x, verb=get, resource=nodes, subresource=metrics)", http.StatusForbidden)
		case r.Header.Get("Authorization") == "Bearer not-a-kubelet":
			_, _ = w.Write([]byte("# TYPE up gauge\nup 1\n"))
		case r.Header.Get("Authorization") != "Bearer test-token":
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		case r.URL.Path != "/metrics/resource":
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write(body)
		}
	}))
	defer srv.Close()
	port := int32(srv.Listener.Addr().(*net.TCPAddr).Port)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCA, selfSignedCA(t), 0o600); err != nil {
		t.Fatal(err)
	}
	node := func(addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
			Status: corev1.NodeStatus{
				Addresses:       addrs,
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
			},
		}
	}
	internal := corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}
	statusPort := DefaultKubeletOptions()
	statusPort.UseNodeStatusPort = true
	fixedPort := DefaultKubeletOptions()
	fixedPort.Port = int(port)
	closedPort := DefaultKubeletOptions() // 10250: nothing listens there in tests
	closedPort.Port = freeClosedPort(t)
	wrongCA := statusPort
	wrongCA.CAFile = otherCA
	hostnameOnly := statusPort
	hostnameOnly.PreferredAddressTypes = []string{"Hostname"}
	missingCA := statusPort
	missingCA.CAFile = filepath.Join(t.TempDir(), "missing.crt")
	good := Credentials{BearerToken: "test-token", CAData: ca}

	for _, tc := range []struct {
		name    string
		node    *corev1.Node
		o       KubeletOptions
		c       Credentials
		stage   string // "" for success
		status  int
		errText string
	}{
		{name: "node status port", node: node(internal), o: statusPort, c: good},
		{name: "fixed port", node: node(internal), o: fixedPort, c: good},
		{name: "nothing listening", node: node(internal), o: closedPort, c: good, stage: ProbeStageConnect, errText: "connection refused"},
		{name: "kubelet CA not trusted", node: node(internal), o: wrongCA, c: good, stage: ProbeStageConnect, errText: "x509"},
		{name: "CA file missing", node: node(internal), o: missingCA, c: good, stage: ProbeStageConfig, errText: "missing.crt"},
		{name: "no address of a preferred type", node: node(internal), o: hostnameOnly, c: good, stage: ProbeStageAddress, errText: "Hostname"},
		{name: "no address at all", node: node(), o: statusPort, c: good, stage: ProbeStageAddress, errText: "no addresses"},
		{name: "token refused", node: node(internal), o: statusPort, c: Credentials{BearerToken: "wrong", CAData: ca}, stage: ProbeStageStatus, status: 401},
		{name: "forbidden", node: node(internal), o: statusPort, c: Credentials{BearerToken: "forbidden", CAData: ca}, stage: ProbeStageStatus, status: 403, errText: "nodes"},
		{name: "not a kubelet", node: node(internal), o: statusPort, c: Credentials{BearerToken: "not-a-kubelet", CAData: ca}, stage: ProbeStageParse, errText: NodeCPUMetric},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p, err := ProbeKubelet(ctx, tc.node, tc.o, tc.c)
			if tc.stage == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasSuffix(p.URL, "/metrics/resource") || !strings.HasPrefix(p.URL, "https://127.0.0.1:") {
					t.Errorf("URL %s", p.URL)
				}
				// round1.txt: 2 node series and 3 per container of 2 pods.
				if p.Samples < 5 {
					t.Errorf("%d samples, want the fixture's", p.Samples)
				}
				return
			}
			var pe *ProbeError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a *ProbeError", err)
			}
			if pe.Stage != tc.stage {
				t.Errorf("stage %q, want %q (%v)", pe.Stage, tc.stage, err)
			}
			if pe.StatusCode != tc.status {
				t.Errorf("status %d, want %d", pe.StatusCode, tc.status)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q does not mention %q", err, tc.errText)
			}
		})
	}
}

// freeClosedPort is a loopback port nothing listens on.
func freeClosedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// selfSignedCA is a CA certificate that signed nothing the fake kubelet
// serves (httptest's servers all share one certificate).
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "other-ca"}, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certutil.EncodeCertificates(ca)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
