// Package resource answers metrics.k8s.io (NodeMetrics, PodMetrics) from
// storage. It implements metrics-server's MetricsGetter, so metrics-server's
// own pkg/api serves the API (GET, LIST, selectors, tables) unchanged, while
// every request is one PromQL evaluation of a range selector on the shared
// engine. Usage follows metrics-server v0.9.0 exactly: cpu is the rate
// between the last two samples of the cumulative counter, memory the last
// working set; see docs/resource-metrics.md. RulesGetter instead answers
// from a prometheus-adapter file's resourceRules, as the adapter does.
package resource
