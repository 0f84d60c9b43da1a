// Package resource answers metrics.k8s.io (NodeMetrics, PodMetrics) from
// storage. Its REST storage (Install) answers GET, LIST, selectors and
// tables as metrics-server's pkg/api does, but keeps an error's kind (a
// deadline is 504, not 500); behind it a metrics-server MetricsGetter reads
// the kubelet tails, or one PromQL evaluation of a range selector on the
// shared engine. Usage follows metrics-server v0.9.0 exactly: cpu is the rate
// between the last two samples of the cumulative counter, memory the last
// working set; see docs/resource-metrics.md. RulesGetter instead answers
// from a prometheus-adapter file's resourceRules, as the adapter does.
package resource
