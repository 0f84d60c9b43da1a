// Package server wires the gateway together: flags and their validation,
// the Kubernetes clients and informers, storage, scraping and the aggregated
// API server that serves metrics.k8s.io with delegated authentication and
// authorization. It follows metrics-server's chain (options → Validate →
// Config → Complete → RunUntil) so its flags and manifests carry over.
package server
