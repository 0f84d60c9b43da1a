// Package env brings up everything an end-to-end test or the demo needs on
// one machine: the local control plane (test/cluster), simulated nodes and
// kubelets (test/cmd/simkubelet) and the gateway binary itself, registered
// as the metrics.k8s.io APIService behind the aggregator. All traffic stays
// on 127.0.0.0/8.
package env
