package scrape

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// SelfJobName is the job under which the gateway stores its own metrics, so
// that dashboards read its health through the same query API.
const SelfJobName = "metrics-gateway"

// SelfMetrics are the families of the gateway's own /metrics kept in its
// TSDB: enough for the health dashboard, without the per-target families
// (the scrape loop already stores up and scrape_duration_seconds for every
// target) or the full Go runtime set.
var SelfMetrics = []string{
	"metrics_gateway_scrape_failures_total",
	"metrics_gateway_head_series",
	"metrics_gateway_series_rejected_total",
	"metrics_gateway_storage_ready",
	"metrics_gateway_query_api_requests_total",
	"metrics_gateway_query_api_request_duration_seconds_(bucket|sum|count)",
	"prometheus_tsdb_head_series",
	"prometheus_tsdb_head_samples_appended_total",
	"apiserver_request_total",
	"apiserver_request_duration_seconds_(bucket|sum|count)",
	"process_resident_memory_bytes",
	// HorizontalPodAutoscalers (pkg/autoscaling), kube-state-metrics' names.
	"kube_horizontalpodautoscaler_.+",
	"process_cpu_seconds_total",
	"go_goroutines",
}

// SelfJobYAML renders the job scraping the gateway's own metrics at addr
// (a loopback listener, plain HTTP) every interval, with token as its
// bearer token. instance names the gateway (its pod name), since the
// listener's port changes on restart.
func SelfJobYAML(addr, token, instance string, interval time.Duration) (string, error) {
	if addr == "" || token == "" || instance == "" || interval <= 0 {
		return "", fmt.Errorf("self job: address %q, a token, instance %q and interval %v must all be set", addr, instance, interval)
	}
	job := map[string]any{
		"job_name": SelfJobName,
		// Loopback: compressing costs CPU on both ends and saves nothing.
		"enable_compression": false,
		"scrape_interval":    model.Duration(interval).String(),
		"scrape_timeout":     model.Duration(min(interval, 10*time.Second)).String(),
		"authorization":      map[string]any{"type": "Bearer", "credentials": token},
		"static_configs": []map[string]any{{
			"targets": []string{addr},
			"labels":  map[string]string{"instance": instance},
		}},
		"metric_relabel_configs": []map[string]any{{
			"source_labels": []string{"__name__"},
			"regex":         strings.Join(SelfMetrics, "|"),
			"action":        "keep",
		}},
	}
	b, err := yaml.Marshal(map[string]any{"scrape_configs": []any{job}})
	if err != nil {
		return "", fmt.Errorf("render self job: %w", err)
	}
	return string(b), nil
}

// SelfFamilyFilter returns whether the self job keeps a metric family (a
// histogram's samples carry suffixes its family name does not). The
// self-metrics handler serves only these families, so the gateway neither
// encodes nor parses the thousands of lines the job would drop.
func SelfFamilyFilter() func(family string) bool {
	re := regexp.MustCompile("^(?:" + strings.Join(SelfMetrics, "|") + ")$")
	return func(family string) bool {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if re.MatchString(family + suffix) {
				return true
			}
		}
		return false
	}
}
