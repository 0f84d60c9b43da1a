// Package custom serves custom.metrics.k8s.io and external.metrics.k8s.io
// from the embedded TSDB. It sits between storage and server in the data
// flow: the compiled prometheus-adapter rules (package rules) decide which
// stored series become which API metrics, discovery reads the TSDB's own
// index to list them, and every request is answered by rendering a rule's
// PromQL and evaluating it on the shared engine. The server installs the
// Provider through custom-metrics-apiserver.
package custom
