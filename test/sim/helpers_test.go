package sim

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// TestMain pins the kubelet version as the command does, so the collector hides
// the families a v1.37 kubelet hides.
func TestMain(m *testing.M) {
	v, err := KubeletVersion()
	if err != nil {
		// Test binaries of library packages carry no dependency list; the module
		// file says the same thing.
		v, err = kubernetesFromGoMod("../go.mod")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	PinKubeletVersion(v)
	os.Exit(m.Run())
}

var goModKubernetes = regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`)

func kubernetesFromGoMod(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := goModKubernetes.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s requires no k8s.io/kubernetes", path)
	}
	return string(m[1]), nil
}

// Test addresses stay clear of simkubelet's defaults (127.0.0.10+, 127.1.0.0/16)
// so the tests pass while a simulator runs on the same machine.
var (
	testNodeIP  = netip.MustParseAddr("127.0.0.200")
	testPodBase = netip.MustParseAddr("127.77.0.0")
)

func newTestSim(t *testing.T) (*Sim, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	s, err := New(Config{
		Nodes:       []NodeConfig{{Name: "node-a", IP: testNodeIP}},
		PodCIDRBase: testPodBase,
		Clock:       clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, clk
}

// freePort finds a port that is free on ip now. The pod or kubelet listens on it
// right after, so a race with another process is possible but harmless in CI.
func freePort(t *testing.T, ip netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startWeb starts default/web-1 with containers app and side on a free port.
func startWeb(t *testing.T, s *Sim, ann map[string]string) *Pod {
	t.Helper()
	ip := testPodBase.Next() // the pool's first address, which the pod will get
	p, err := s.StartPod(PodSpec{
		Namespace: "default", Name: "web-1", UID: "uid-web-1", Node: "node-a",
		Containers: []string{"app", "side"}, Ports: []int{freePort(t, ip)}, Annotations: ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.IP != ip {
		t.Fatalf("pod IP = %s, want %s", p.IP, ip)
	}
	return p
}

func podURL(p *Pod, path string) string {
	return "http://" + net.JoinHostPort(p.IP.String(), strconv.Itoa(p.Ports[0])) + path
}

// get returns the status and body of a GET with an optional bearer token.
func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
