package scrape

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// TestUnixSocketJobs: the pod-bytes bound replaces the scrape manager's
// dialer, which Prometheus also uses to reach __unix_socket__ targets, so a
// job that sets that label and the bound cannot run together. The gateway
// says so when it starts instead of scraping __address__ over TCP, and with
// the bound off the socket is scraped.
func TestUnixSocketJobs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets: %v", err)
	}
	var served atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "via_socket 1\n")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	podJob := map[string]any{"job_name": PodJobName, "scrape_interval": "1s", "static_configs": []any{map[string]any{"targets": []string{"127.0.0.1:1"}}}}
	for _, c := range []struct {
		name    string
		job     map[string]any
		bound   int64
		wantErr bool
	}{
		{"static label, bound on", map[string]any{"static_configs": []any{map[string]any{"targets": []string{"localhost"}, "labels": map[string]string{"__unix_socket__": sock}}}}, 1 << 20, true},
		{"relabeled, bound on", map[string]any{
			"static_configs":  []any{map[string]any{"targets": []string{"localhost"}}},
			"relabel_configs": []any{map[string]any{"target_label": "__unix_socket__", "replacement": sock}},
		}, 1 << 20, true},
		{"static label, bound off", map[string]any{"static_configs": []any{map[string]any{"targets": []string{"localhost"}, "labels": map[string]string{"__unix_socket__": sock}}}}, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.job["job_name"], c.job["scrape_interval"] = "sock", "200ms"
			c.job["scrape_timeout"] = "200ms"
			doc, err := yaml.Marshal(map[string]any{"scrape_configs": []any{podJob, c.job}})
			if err != nil {
				t.Fatal(err)
			}
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			cfg, err := LoadConfig(logger, string(doc))
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewManager(cfg, &nopAppendable{}, ManagerOptions{PodMaxBytesInFlight: c.bound}, logger, prometheus.NewRegistry())
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), `scrape job "sock" sets __unix_socket__`) || !strings.Contains(err.Error(), "set it to 0") {
					t.Fatalf("got %v, want an error naming the job and the way out", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before := served.Load()
			ctx, cancel := context.WithCancel(context.Background())
			go func() { _ = m.Run(ctx) }()
			deadline := time.Now().Add(10 * time.Second)
			for served.Load() == before && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			m.Stop()
			if served.Load() == before {
				t.Error("the socket was never scraped")
			}
		})
	}
}
