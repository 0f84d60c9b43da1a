package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Truth is the model's current rates (not counters): what `kubectl top` should
// show, within the error of averaging over its window.
type Truth struct {
	Nodes map[string]Rate     `json:"nodes"`
	Pods  map[string]PodTruth `json:"pods"` // by namespace/name
}

// PodTruth is one pod's current rates.
type PodTruth struct {
	Node       string          `json:"node"`
	IP         string          `json:"ip"`
	RPS        float64         `json:"rps"`
	Requests   uint64          `json:"requests"`
	Containers map[string]Rate `json:"containers"`
}

// Truth reads every node at one instant.
func (s *Sim) Truth() Truth {
	now := s.clock.Now()
	t := Truth{Nodes: map[string]Rate{}, Pods: map[string]PodTruth{}}
	for _, n := range s.Nodes() {
		snap := n.Snapshot(now)
		t.Nodes[n.Name] = snap.Rate
		for _, ps := range snap.pods {
			pt := PodTruth{Node: n.Name, IP: ps.pod.IP.String(), RPS: ps.usage.RPS, Requests: ps.pod.Model.Requests(), Containers: map[string]Rate{}}
			for _, c := range ps.usage.Containers {
				pt.Containers[c.Name] = c.Rate
			}
			t.Pods[ps.pod.Key()] = pt
		}
	}
	return t
}

// maxBody bounds what the control API reads; every body is one word or number.
const maxBody = 1 << 10

// ControlHandler serves the control API tests use to read the model and to steer
// it: GET /truth, POST /nodes/{name}/mode, POST /pods/{ns}/{name}/extra-cpu,
// POST /pods/{ns}/{name}/queue-depth, GET /healthz.
func (s *Sim) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /kubelet-tokens", func(w http.ResponseWriter, _ *http.Request) {
		seen := []SeenToken{}
		if s.webhook != nil {
			seen = s.webhook.Seen()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen)
	})
	mux.HandleFunc("GET /truth", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Truth())
	})
	mux.HandleFunc("POST /nodes/{name}/mode", func(w http.ResponseWriter, r *http.Request) {
		n := s.Node(r.PathValue("name"))
		if n == nil {
			http.Error(w, fmt.Sprintf("no node %q", r.PathValue("name")), http.StatusNotFound)
			return
		}
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		m, err := ParseMode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.SetMode(m)
		_, _ = fmt.Fprintf(w, "%s\n", m)
	})
	mux.HandleFunc("POST /pods/{ns}/{name}/extra-cpu", s.podSetter(func(p *Pod, v float64) {
		p.Model.SetExtraCPU(s.clock.Now(), v)
	}))
	mux.HandleFunc("POST /pods/{ns}/{name}/queue-depth", s.podSetter(func(p *Pod, v float64) {
		p.Model.SetQueueDepth(v)
	}))
	return mux
}

// podSetter parses a non-negative float body and applies it to the named pod.
func (s *Sim) podSetter(set func(*Pod, float64)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("ns") + "/" + r.PathValue("name")
		p := s.Pod(key)
		if p == nil {
			http.Error(w, fmt.Sprintf("no running pod %s", key), http.StatusNotFound)
			return
		}
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		v, err := strconv.ParseFloat(body, 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			http.Error(w, fmt.Sprintf("body %q: want a non-negative number", body), http.StatusBadRequest)
			return
		}
		set(p, v)
		_, _ = fmt.Fprintf(w, "%g\n", v)
	}
}

func readBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v", err), http.StatusBadRequest)
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
