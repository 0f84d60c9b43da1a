package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// keptMetrics are the kubelet series the gateway stores (pkg/scrape).
var keptMetrics = map[string]bool{
	"container_cpu_usage_seconds_total": true, "container_memory_working_set_bytes": true,
	"container_start_time_seconds": true, "node_cpu_usage_seconds_total": true, "node_memory_working_set_bytes": true,
}

// prefill writes history for exactly the series the gateway will scrape, read
// from every simulated kubelet now, into storage (see hack/benchtool). The
// labels are the gateway's: job, node, and instance set to the node name.
func (w *World) prefill(ctx context.Context, benchtool, storage string, span, resolution time.Duration) error {
	file := filepath.Join(filepath.Dir(storage), "series.jsonl")
	if err := w.writeSeries(ctx, file); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, benchtool, "prefill", "--storage-path", storage, "--series", file,
		"--span", span.String(), "--metric-resolution", resolution.String()).Output()
	if err != nil {
		return fmt.Errorf("benchtool prefill: %w", exitErr(err))
	}
	w.progress("%s", strings.TrimSpace(string(out)))
	return nil
}

func (w *World) writeSeries(ctx context.Context, file string) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(w.KubeletCA)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, n := range w.Nodes {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s:10250/metrics/resource", n.IP), nil)
		req.Header.Set("Authorization", "Bearer "+w.Token)
		resp, err := client.Do(req)
		if err != nil {
			f.Close()
			return fmt.Errorf("scrape %s: %w", n.Name, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			f.Close()
			return fmt.Errorf("parse %s: %w", n.Name, err)
		}
		for name, fam := range families {
			if !keptMetrics[name] {
				continue
			}
			for _, m := range fam.GetMetric() {
				lbls := map[string]string{"__name__": name, "job": "kubelet", "instance": n.Name, "node": n.Name}
				for _, l := range m.GetLabel() {
					lbls[l.GetName()] = l.GetValue()
				}
				var v float64
				switch fam.GetType() {
				case dto.MetricType_COUNTER:
					v = m.GetCounter().GetValue()
				default:
					v = m.GetGauge().GetValue()
				}
				if err := enc.Encode(map[string]any{"labels": lbls, "value": v, "counter": fam.GetType() == dto.MetricType_COUNTER}); err != nil {
					f.Close()
					return err
				}
			}
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
