// Package env brings up everything an end-to-end test or the demo needs on
// one machine: the local control plane (test/cluster), simulated nodes and
// kubelets (test/cmd/simkubelet) and the gateway binary itself, registered
// behind the aggregator as the APIServices of metrics.k8s.io,
// custom.metrics.k8s.io (v1beta1 and v1beta2) and external.metrics.k8s.io.
// All traffic stays on 127.0.0.0/8.
package env
