// Package scrape discovers targets and scrapes them into storage, using
// Prometheus' own discovery (kubernetes SD) and scrape manager as libraries.
// It turns metrics-server's kubelet flags into a Prometheus scrape job, adds
// a job for pods annotated prometheus.io/scrape and the user's own
// scrape_configs from the GatewayConfig file (all built as YAML and loaded
// with config.Load), applies per-target limits and a cap on head series, and
// records per-target self-metrics by watching the scrape reports on their way
// to the TSDB.
package scrape
