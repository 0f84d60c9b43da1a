package grafana

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// series is one stored series of the fixture: value(i) is its sample at
// step i.
type series struct {
	labels labels.Labels
	value  func(i int) float64
}

func counter(perStep float64) func(int) float64 {
	return func(i int) float64 { return perStep * float64(i) }
}
func gauge(v float64) func(int) float64 { return func(int) float64 { return v } }

// cluster is a small cluster as the gateway stores it: two kubelets, three
// containers, two annotated pods, the gateway's own metrics and the cAdvisor
// job, with the labels the scrape jobs give them.
func cluster() []series {
	var out []series
	add := func(v func(int) float64, kv ...string) {
		b := labels.NewScratchBuilder(len(kv) / 2)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] != "" { // as the scrape loop stores them: no empty labels
				b.Add(kv[i], kv[i+1])
			}
		}
		b.Sort()
		out = append(out, series{b.Labels(), v})
	}
	up := func(job, instance string, kv ...string) {
		base := append([]string{"job", job, "instance", instance}, kv...)
		add(gauge(1), append([]string{"__name__", "up"}, base...)...)
		add(gauge(0.02), append([]string{"__name__", "scrape_duration_seconds"}, base...)...)
		add(gauge(60), append([]string{"__name__", "scrape_samples_scraped"}, base...)...)
		add(gauge(20), append([]string{"__name__", "scrape_samples_post_metric_relabeling"}, base...)...)
		add(gauge(0), append([]string{"__name__", "scrape_series_added"}, base...)...)
	}
	containers := []struct{ node, ns, pod, container string }{
		{"n1", "shop", "web-1", "app"}, {"n2", "shop", "web-2", "app"}, {"n1", "kube-system", "dns-1", "dns"},
	}
	for i, node := range []string{"n1", "n2"} {
		inst := fmt.Sprintf("10.0.0.%d:10250", i+1)
		k := []string{"job", "kubelet", "instance", inst, "node", node}
		add(counter(15*0.8), append([]string{"__name__", "node_cpu_usage_seconds_total"}, k...)...)
		add(gauge(2e9), append([]string{"__name__", "node_memory_working_set_bytes"}, k...)...)
		up("kubelet", inst, "node", node)
		up("kubernetes-cadvisor", inst, "node", node)
		for _, c := range containers {
			if c.node != node {
				continue
			}
			ck := append([]string{"namespace", c.ns, "pod", c.pod, "container", c.container}, k...)
			add(counter(15*0.1), append([]string{"__name__", "container_cpu_usage_seconds_total"}, ck...)...)
			add(gauge(1e8), append([]string{"__name__", "container_memory_working_set_bytes"}, ck...)...)
			add(gauge(1.79e9), append([]string{"__name__", "container_start_time_seconds"}, ck...)...)
			cadvisor := func(container string) []string {
				return []string{"namespace", c.ns, "pod", c.pod, "container", container, "job", "kubernetes-cadvisor", "instance", inst, "node", node}
			}
			cad := cadvisor(c.container)
			add(counter(150), append([]string{"__name__", "container_cpu_cfs_periods_total"}, cad...)...)
			add(counter(3), append([]string{"__name__", "container_cpu_cfs_throttled_periods_total"}, cad...)...)
			add(gauge(5e7), append([]string{"__name__", "container_memory_rss"}, cad...)...)
			add(gauge(4096), append([]string{"__name__", "container_fs_usage_bytes", "device", "/dev/sda1"}, cad...)...)
			// The cAdvisor job stores the same two names as the kubelet
			// job, for the container and for the pod's cgroup (no
			// container).
			for _, ctr := range []string{c.container, ""} {
				add(counter(15*0.1), append([]string{"__name__", "container_cpu_usage_seconds_total"}, cadvisor(ctr)...)...)
				add(gauge(1e8), append([]string{"__name__", "container_memory_working_set_bytes"}, cadvisor(ctr)...)...)
			}
			net := []string{"namespace", c.ns, "pod", c.pod, "job", "kubernetes-cadvisor", "instance", inst, "node", node, "interface", "eth0"}
			add(counter(15e3), append([]string{"__name__", "container_network_receive_bytes_total"}, net...)...)
			add(counter(15e3), append([]string{"__name__", "container_network_transmit_bytes_total"}, net...)...)
		}
	}
	for i, pod := range []string{"web-1", "web-2"} {
		inst := fmt.Sprintf("10.1.0.%d:8080", i+1)
		p := []string{"job", "kubernetes-pods", "instance", inst, "namespace", "shop", "pod", pod}
		add(counter(15*12), append([]string{"__name__", "http_requests_total"}, p...)...)
		add(gauge(7), append([]string{"__name__", "queue_depth"}, p...)...)
		up("kubernetes-pods", inst, "namespace", "shop", "pod", pod)
	}
	g := []string{"job", "metrics-gateway", "instance", "metrics-gateway-0"}
	up("metrics-gateway", "metrics-gateway-0")
	for _, job := range []string{"kubelet", "kubernetes-pods", "metrics-gateway"} {
		// Without honor_labels the metric's own job label is stored as
		// exported_job.
		add(gauge(0), append([]string{"__name__", "metrics_gateway_scrape_failures_total", "exported_job", job}, g...)...)
	}
	for name, v := range map[string]func(int) float64{
		"metrics_gateway_head_series":           gauge(1000),
		"metrics_gateway_series_rejected_total": gauge(0),
		"metrics_gateway_storage_ready":         gauge(1),
		"prometheus_tsdb_head_series":           gauge(1000),
		"process_resident_memory_bytes":         gauge(1e8),
		"process_cpu_seconds_total":             counter(1.5),
		"go_goroutines":                         gauge(200),
	} {
		add(v, append([]string{"__name__", name}, g...)...)
	}
	add(counter(15*70), append([]string{"__name__", "prometheus_tsdb_head_samples_appended_total", "type", "float"}, g...)...)
	// One HPA, as the self job and the recorder store it.
	hpa := append([]string{"namespace", "shop", "horizontalpodautoscaler", "web"}, g...)
	for name, v := range map[string]float64{
		"kube_horizontalpodautoscaler_info": 1, "kube_horizontalpodautoscaler_spec_min_replicas": 2, "kube_horizontalpodautoscaler_spec_max_replicas": 10,
		"kube_horizontalpodautoscaler_status_current_replicas": 2, "kube_horizontalpodautoscaler_status_desired_replicas": 3,
		"metrics_gateway_autoscaler_recommendation_replicas": 3, "metrics_gateway_autoscaler_replay_desired_replicas": 3, "metrics_gateway_autoscaler_target_replicas": 2,
	} {
		add(gauge(v), append([]string{"__name__", name}, hpa...)...)
	}
	metric := append([]string{"metric_name", "http_requests", "metric_target_type", "average"}, hpa...)
	add(gauge(10), append([]string{"__name__", "kube_horizontalpodautoscaler_spec_target_metric"}, metric...)...)
	add(gauge(13), append([]string{"__name__", "kube_horizontalpodautoscaler_status_target_metric"}, metric...)...)
	add(gauge(1), append([]string{"__name__", "kube_horizontalpodautoscaler_status_condition", "condition", "AbleToScale", "status", "true"}, hpa...)...)
	for _, pod := range []string{"web-1", "web-2"} {
		add(gauge(1), append([]string{"__name__", "metrics_gateway_autoscaler_pod_ready", "pod", pod}, hpa...)...)
	}
	req := append([]string{"group", "metrics.k8s.io", "version", "v1beta1", "resource", "pods", "subresource", "", "scope", "namespace", "component", "apiserver", "dry_run", ""}, g...)
	add(counter(15), append([]string{"__name__", "apiserver_request_total", "verb", "LIST", "code", "200"}, req...)...)
	q := append([]string{"handler", "query"}, g...)
	add(counter(3), append([]string{"__name__", "metrics_gateway_query_api_requests_total", "code", "200"}, q...)...)
	for i, le := range []float64{0.005, 0.025, 0.1, 1, math.Inf(1)} {
		perStep := 15 * float64(i+1) / 5
		l := strconv.FormatFloat(le, 'g', -1, 64)
		add(counter(perStep), append([]string{"__name__", "apiserver_request_duration_seconds_bucket", "verb", "LIST", "le", l}, req...)...)
		add(counter(perStep/5), append([]string{"__name__", "metrics_gateway_query_api_request_duration_seconds_bucket", "le", l}, q...)...)
	}
	return out
}

// TestExpressionsReturnData runs every expression, on the gateway's own
// engine, against a cluster stored as the gateway stores it: none may come
// back empty or all-NaN. It is the unit-test side of the e2e check that no
// panel is empty, and fails when a query joins on a label the series lack.
func TestExpressionsReturnData(t *testing.T) {
	s, err := storage.Open(storage.Options{Path: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const steps = 41 // 10 minutes at 15s
	t0 := time.UnixMilli(1_790_000_000_000)
	app := s.Appendable().AppenderV2(context.Background())
	for _, ser := range cluster() {
		for i := range steps {
			ts := t0.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
			if _, err := app.Append(0, ser.labels, 0, ts, ser.value(i), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatalf("append %s: %v", ser.labels, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	end := t0.Add((steps - 1) * 15 * time.Second)
	ctx := context.Background()
	for _, vars := range varSets {
		exprs, err := Expressions(vars)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exprs {
			where := fmt.Sprintf("%s: panel %q %s variable %q: %s", e.Dashboard, e.Panel, e.RefID, e.Variable, e.Expr)
			v, err := s.Instant(ctx, e.Expr, end, storage.QueryOptions{})
			if err != nil {
				t.Errorf("%s: instant: %v", where, err)
				continue
			}
			if !hasData(v) {
				t.Errorf("%s: instant query returned no data: %v", where, v)
			}
			if e.Instant {
				continue
			}
			v, err = s.Range(ctx, e.Expr, end.Add(-5*time.Minute), end, 15*time.Second, storage.QueryOptions{})
			if err != nil {
				t.Errorf("%s: range: %v", where, err)
				continue
			}
			if !hasData(v) {
				t.Errorf("%s: range query returned no data: %v", where, v)
			}
		}
	}
}

// hasData says whether v holds at least one number that is not NaN.
func hasData(v parser.Value) bool {
	switch v := v.(type) {
	case promql.Vector:
		for _, s := range v {
			if !math.IsNaN(s.F) {
				return true
			}
		}
	case promql.Matrix:
		for _, s := range v {
			for _, p := range s.Floats {
				if !math.IsNaN(p.F) {
					return true
				}
			}
		}
	case promql.Scalar:
		return !math.IsNaN(v.V)
	}
	return false
}
