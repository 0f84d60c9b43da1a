// Package scrape discovers targets and scrapes them into storage, using
// Prometheus' own discovery (kubernetes SD) and scrape manager as libraries.
// It turns metrics-server's kubelet flags into a Prometheus scrape job (built
// as YAML and loaded with config.Load, like any user job), and records per
// target self-metrics by watching the scrape reports on their way to the TSDB.
package scrape
