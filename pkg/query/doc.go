// Package query serves the Prometheus HTTP API's read endpoints
// (/api/v1/query, query_range, series, labels, label values, metadata,
// targets, status) over the gateway's storage and its shared PromQL engine,
// so Grafana's Prometheus datasource and client_golang read the same data
// the metrics APIs answer from. The handlers are Prometheus' own (web/api/v1);
// this package picks which endpoints are served, bounds concurrent queries
// and instruments every endpoint. Authentication and authorization are the
// server's: package server mounts the handler behind its delegated chain,
// under /prometheus.
package query
