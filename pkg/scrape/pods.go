package scrape

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/util/strutil"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
)

// PodJobName is the job label of every series scraped from annotated pods.
const PodJobName = "kubernetes-pods"

// Labels the pod job puts on every series, so the custom metrics API can
// find a pod's series without trusting what the pod says about itself.
const (
	NamespaceLabel = "namespace"
	PodLabel       = "pod"
)

// The annotations that opt a pod in and say where it serves metrics, as
// Prometheus' kubernetes-pods example and most Helm charts read them.
const (
	annotationMeta = "__meta_kubernetes_pod_annotation_prometheus_io_"
	scrapeAnnot    = annotationMeta + "scrape"
	pathAnnot      = annotationMeta + "path"
	portAnnot      = annotationMeta + "port"
	schemeAnnot    = annotationMeta + "scheme"
)

// PodJobOptions say which annotated pods to scrape and how often.
type PodJobOptions struct {
	Interval, Timeout time.Duration
	// Include, when not empty, restricts discovery to these namespaces:
	// the API server then sends nothing else.
	Include []string
	// Exclude drops targets in these namespaces after discovery.
	Exclude []string
	Limits  Limits
}

// PodJobYAML renders the annotated-pods job as Prometheus configuration.
// Pods are discovered with the gateway's API credentials, but scraped with
// none: a pod is not trusted with the gateway's token.
func PodJobYAML(o PodJobOptions, c Credentials) (string, error) {
	sd := map[string]any{"role": "pod"}
	if c.Kubeconfig != "" {
		sd["kubeconfig_file"] = c.Kubeconfig
	}
	if len(o.Include) > 0 {
		sd["namespaces"] = map[string]any{"names": o.Include}
	}
	job := map[string]any{
		"job_name":              PodJobName,
		"scrape_interval":       promDuration(o.Interval),
		"scrape_timeout":        promDuration(o.Timeout),
		"kubernetes_sd_configs": []any{sd},
		"relabel_configs":       podRelabeling(o.Exclude),
		// A pod answering a redirect would make the gateway fetch any
		// address it names, inside the cluster network, and store the answer
		// as the pod's own series.
		"follow_redirects": false,
	}
	podScrapeHTTP(job)
	o.Limits.applyTo(job)
	b, err := yaml.Marshal(map[string]any{"scrape_configs": []any{job}})
	if err != nil {
		return "", fmt.Errorf("render pod job: %w", err)
	}
	return string(b), nil
}

// podJobKeeps is what the pod job's first two relabeling rules keep, read
// off the pod before discovery builds its labels: a running pod annotated
// prometheus.io/scrape: "true". Relabeling still decides; this only spares
// discovery and the scrape pool the labels of pods it would drop. Every
// annotation that sanitizes to the rule's label counts, as discovery keeps
// whichever of them it saw last.
func podJobKeeps(p *pods.Pod) bool {
	if p.Phase != corev1.PodRunning {
		return false
	}
	for k, v := range p.Annotations {
		if v == "true" && metaPod+"annotation_"+strutil.SanitizeLabelName(k) == scrapeAnnot {
			return true
		}
	}
	return false
}

// promDuration formats d so that Prometheus parses it back exactly:
// Duration.String gives "1.5s", which model.ParseDuration rejects.
func promDuration(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// podRelabeling keeps Running, annotated pods outside the excluded
// namespaces and leaves one target per pod where it can: kubernetes SD
// emits a target per container port (and one per container without ports).
func podRelabeling(exclude []string) []map[string]any {
	rules := []map[string]any{
		{"source_labels": []string{scrapeAnnot}, "regex": "true", "action": "keep"},
		// Pending pods have no IP yet; finished ones serve nothing.
		{"source_labels": []string{"__meta_kubernetes_pod_phase"}, "regex": "Running", "action": "keep"},
	}
	if len(exclude) > 0 {
		quoted := make([]string, len(exclude))
		for i, ns := range exclude {
			quoted[i] = regexp.QuoteMeta(ns)
		}
		rules = append(rules, map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "regex": strings.Join(quoted, "|"), "action": "drop"})
	}
	rules = append(rules,
		// Init containers have exited by the time the pod runs.
		map[string]any{"source_labels": []string{"__meta_kubernetes_pod_container_init"}, "regex": "true", "action": "drop"},
		// Without a port annotation the declared TCP ports are the
		// candidates; a container without ports would be scraped on :80.
		map[string]any{"source_labels": []string{portAnnot, "__meta_kubernetes_pod_container_port_number"}, "separator": ";", "regex": ";", "action": "drop"},
		map[string]any{"source_labels": []string{portAnnot, "__meta_kubernetes_pod_container_port_protocol"}, "separator": ";", "regex": ";(UDP|SCTP)", "action": "drop"},
		// With a port annotation every target of the pod gets the same
		// address, and the scrape pool keeps one of identical targets.
		map[string]any{"source_labels": []string{portAnnot, "__meta_kubernetes_pod_ip"}, "separator": ";", "regex": `(\d+);(.*:.*)`, "target_label": "__address__", "replacement": "[$2]:$1"},
		map[string]any{"source_labels": []string{portAnnot, "__meta_kubernetes_pod_ip"}, "separator": ";", "regex": `(\d+);([^:]+)`, "target_label": "__address__", "replacement": "$2:$1"},
		map[string]any{"source_labels": []string{pathAnnot}, "regex": "(.+)", "target_label": "__metrics_path__", "replacement": "$1"},
		map[string]any{"source_labels": []string{schemeAnnot}, "regex": "(https?)", "target_label": "__scheme__", "replacement": "$1"},
		map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "target_label": NamespaceLabel},
		map[string]any{"source_labels": []string{"__meta_kubernetes_pod_name"}, "target_label": PodLabel},
	)
	return rules
}
