package query

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReleaseOf(t *testing.T) {
	for _, tc := range []struct {
		module, want string
		ok           bool
	}{
		{"v0.316.0", "3.16.0", true},
		{"v0.316.2", "3.16.2", true},
		{"v0.300.1", "3.0.1", true},
		{"v0.316.0-rc.1", "3.16.0", true},
		{"v2.55.1+incompatible", "", false},
		{"v0.55.0", "", false},
		{"(devel)", "", false},
	} {
		got, ok := releaseOf(tc.module)
		if got != tc.want || ok != tc.ok {
			t.Errorf("releaseOf(%q) = %q, %v; want %q, %v", tc.module, got, ok, tc.want, tc.ok)
		}
	}
}

// TestPrometheusModule keeps the release reported by buildinfo in step
// with the Prometheus module actually compiled in.
func TestPrometheusModule(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/prometheus/prometheus (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/prometheus/prometheus")
	}
	if string(m[1]) != PrometheusModule {
		t.Errorf("go.mod has prometheus %s, PrometheusModule says %s: update it", m[1], PrometheusModule)
	}
	if r := prometheusRelease(); r == "3.0.0" {
		t.Errorf("PrometheusModule %s maps to no release", PrometheusModule)
	}
}

// TestBounded holds every slot and checks that one more request waits, then
// gets Prometheus' 503 "timeout", and that a freed slot serves again.
func TestBounded(t *testing.T) {
	sem := make(chan struct{}, 2)
	release := make(chan struct{})
	var running sync.WaitGroup
	running.Add(2)
	h := bounded(sem, 200*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("block") != "" {
			running.Done()
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	done := make(chan int, 2)
	for range 2 {
		go func() {
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodGet, "/query?block=1", nil))
			done <- rec.Code
		}()
	}
	running.Wait()

	start := time.Now()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/query", nil))
	var body struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable || body.Status != "error" || body.ErrorType != "timeout" {
		t.Errorf("third request with two slots held: %d %s, want 503 timeout", rec.Code, rec.Body)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("third request answered after %v, before its wait of 200ms", waited)
	}

	close(release)
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Errorf("held request: %d", code)
		}
	}
	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/query", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after release: %d", rec.Code)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{}.validate()
	if err == nil {
		t.Fatal("empty options accepted")
	}
	for _, want := range []string{"engine, queryable", "logger, registerer", "max concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
