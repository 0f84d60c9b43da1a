package sim

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPodServer(t *testing.T) {
	s, _ := newTestSim(t)
	p := startWeb(t, s, map[string]string{AnnotationQueueDepth: "7"})
	for _, path := range []string{"/", "/api/info", "/healthz"} {
		if body := mustGet(t, podURL(p, path)); body != "ok\n" {
			t.Errorf("GET %s = %q", path, body)
		}
	}
	resp, err := http.Get(podURL(p, "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	// The /metrics scrapes so far are not requests.
	fams := parseExposition(t, mustGet(t, podURL(p, "/metrics")))
	if got := fams["http_requests_total"].GetMetric()[0].GetCounter().GetValue(); got != 3 {
		t.Errorf("http_requests_total = %g, want 3", got)
	}
	if got := value(fams["queue_depth"].GetMetric()[0]); got != 7 {
		t.Errorf("queue_depth = %g, want 7 from the annotation", got)
	}
}

func TestPodPortsAndDefaults(t *testing.T) {
	tests := []struct {
		in, want []int
	}{
		{nil, []int{DefaultPodPort}},
		{[]int{9090, 8080, 9090, 0}, []int{9090, 8080}},
	}
	for _, tt := range tests {
		got := uniquePorts(tt.in)
		if len(got) != len(tt.want) {
			t.Errorf("uniquePorts(%v) = %v, want %v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("uniquePorts(%v) = %v, want %v", tt.in, got, tt.want)
			}
		}
	}
}

// TestStopPod checks that a stopped pod's port closes, its CPU stays in the node
// counter, and its IP is not handed out again at once.
func TestStopPod(t *testing.T) {
	s, clk := newTestSim(t)
	p := startWeb(t, s, nil)
	n := s.Node("node-a")
	clk.Step(10 * time.Second)
	before := n.Snapshot(clk.Now()).CPUSeconds
	if err := s.StopPod(p.Key(), "some-other-uid"); err != nil || s.Pod(p.Key()) == nil {
		t.Fatalf("StopPod with another UID stopped the pod (err %v)", err)
	}
	if err := s.StopPod(p.Key(), p.UID); err != nil {
		t.Fatal(err)
	}
	if s.Pod(p.Key()) != nil {
		t.Fatal("pod still indexed")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(p.IP.String(), strconv.Itoa(p.Ports[0])), time.Second); err == nil {
		c.Close()
		t.Error("pod port still open")
	}
	after := n.Snapshot(clk.Now()).CPUSeconds
	if after < before {
		t.Errorf("node counter went back from %g to %g", before, after)
	}
	approx(t, "node rate after stop", n.Snapshot(clk.Now()).Rate.CPUCores, NodeOverheadCPU)

	next, err := s.StartPod(PodSpec{Namespace: "default", Name: "web-2", UID: "u2", Node: "node-a",
		Containers: []string{"app"}, Ports: []int{freePort(t, p.IP.Next())}})
	if err != nil {
		t.Fatal(err)
	}
	if next.IP == p.IP {
		t.Errorf("freed IP %s reused at once", p.IP)
	}
	if err := s.StopPod("default/absent", ""); err != nil {
		t.Errorf("stopping an absent pod: %v", err)
	}
}

func TestStartPodKeepsPreviousIP(t *testing.T) {
	s, _ := newTestSim(t)
	want := testPodBase.Next().Next().Next()
	spec := PodSpec{Namespace: "default", Name: "web-1", UID: "u1", Node: "node-a",
		Containers: []string{"app"}, Ports: []int{freePort(t, want)}, PreviousIP: want}
	p, err := s.StartPod(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.IP != want {
		t.Errorf("IP = %s, want the previous %s", p.IP, want)
	}
	if again, err := s.StartPod(spec); err != nil || again != p {
		t.Errorf("restarting the same UID = %v, %v; want the running pod", again, err)
	}
	spec.UID = "u2"
	if _, err := s.StartPod(spec); err == nil {
		t.Error("a second UID under a running key started")
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{
		Nodes: []NodeConfig{
			{Name: "a", IP: testNodeIP}, {Name: "a", IP: testNodeIP},
			{Name: "b", IP: testPodBase.Next()}, {Name: "c", IP: testNodeIP.Prev()},
		},
		PodCIDRBase: testPodBase,
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"listed twice", "inside the pod range", "no clock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
