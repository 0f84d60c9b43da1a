// Package bench runs metrics-gateway side by side with metrics-server v0.9.0 and
// Prometheus 3 on one local control plane (test/cluster) and one set of simulated
// kubelets (test/cmd/simkubelet), and measures each as its own process: resident
// memory and CPU per scrape round from /proc, and request latency of the
// metrics.k8s.io and custom.metrics.k8s.io queries that kubectl top and the HPA
// make, directly and through the aggregator. test/cmd/sidebyside drives it and
// writes docs/benchmarks.md; `make bench` runs that.
//
// Pods are bare Pods bound to their node by spec.nodeName and reported Running by
// the harness itself before the simulators start, which then adopt them without a
// status write each: at 30,000 pods the simulators' own status reports (50 QPS per
// process) would take longer than the whole benchmark.
package bench
