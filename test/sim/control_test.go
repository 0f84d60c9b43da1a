package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestControlTruth(t *testing.T) {
	s, clk := newTestSim(t)
	p := startWeb(t, s, map[string]string{AnnotationCPUBase: "0.1", AnnotationMemory: "100Mi"})
	for range 40 {
		get(t, nil, podURL(p, "/"), "")
	}
	clk.Step(time.Second)
	srv := httptest.NewServer(s.ControlHandler())
	defer srv.Close()

	code, body := get(t, nil, srv.URL+"/truth", "")
	if code != http.StatusOK {
		t.Fatalf("GET /truth = %d %s", code, body)
	}
	var truth Truth
	if err := json.Unmarshal([]byte(body), &truth); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	pt, ok := truth.Pods["default/web-1"]
	if !ok {
		t.Fatalf("no default/web-1 in %s", body)
	}
	// 40 requests in the window: 4 req/s, 2 per container.
	approx(t, "rps", pt.RPS, 4)
	if pt.Requests != 40 || pt.Node != "node-a" || pt.IP != p.IP.String() {
		t.Errorf("pod truth = %+v", pt)
	}
	for _, c := range []string{"app", "side"} {
		approx(t, c+" cores", pt.Containers[c].CPUCores, 0.1+0.01*2)
		approx(t, c+" memory", pt.Containers[c].MemoryBytes, 100*mib+2*mib)
	}
	node := truth.Nodes["node-a"]
	approx(t, "node cores", node.CPUCores, 0.1+2*0.12)
	approx(t, "node memory", node.MemoryBytes, 500*mib+2*102*mib)
}

func TestControlSetters(t *testing.T) {
	s, clk := newTestSim(t)
	p := startWeb(t, s, map[string]string{AnnotationQueueDepth: "3"})
	srv := httptest.NewServer(s.ControlHandler())
	defer srv.Close()

	tests := []struct {
		name, path, body string
		want             int
	}{
		{"healthz", "", "", http.StatusOK},
		{"mode", "/nodes/node-a/mode", "hang", http.StatusOK},
		{"mode with newline", "/nodes/node-a/mode", "500\n", http.StatusOK},
		{"bad mode", "/nodes/node-a/mode", "slow", http.StatusBadRequest},
		{"unknown node", "/nodes/node-z/mode", "ok", http.StatusNotFound},
		{"extra cpu", "/pods/default/web-1/extra-cpu", "1.5", http.StatusOK},
		{"bad extra cpu", "/pods/default/web-1/extra-cpu", "much", http.StatusBadRequest},
		{"negative extra cpu", "/pods/default/web-1/extra-cpu", "-1", http.StatusBadRequest},
		{"unknown pod", "/pods/default/web-2/extra-cpu", "1", http.StatusNotFound},
		{"queue depth", "/pods/default/web-1/queue-depth", "42", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var body string
			if tt.path == "" {
				code, body = get(t, nil, srv.URL+"/healthz", "")
			} else {
				code, body = post(t, srv.URL+tt.path, tt.body)
			}
			if code != tt.want {
				t.Errorf("= %d %q, want %d", code, body, tt.want)
			}
		})
	}
	if m := s.Node("node-a").Mode(); m != Mode500 {
		t.Errorf("mode = %q, want 500", m)
	}
	if code, _ := get(t, nil, srv.URL+"/truth", ""); code != http.StatusOK {
		t.Errorf("GET /truth = %d", code)
	}
	// The extra 1.5 cores are split over both containers from when they were set.
	clk.Step(10 * time.Second)
	u := p.Model.Usage(clk.Now())
	approx(t, "app cores", u.Containers[0].CPUCores, 0.01+0.75)
	approx(t, "pod cpu seconds", u.CPUSeconds(), 2*0.01*10+1.5*10)
	fams := parseExposition(t, mustGet(t, podURL(p, "/metrics")))
	approx(t, "queue_depth", value(fams["queue_depth"].GetMetric()[0]), 42)
	if code, _ := get(t, nil, srv.URL+"/truth", ""); code != http.StatusOK {
		t.Errorf("GET /truth = %d", code)
	}
	if code, _ := get(t, nil, srv.URL+"/pods/default/web-1/extra-cpu", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET on a POST route = %d, want 405", code)
	}
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	code, body := get(t, nil, url, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", url, code, body)
	}
	return body
}
