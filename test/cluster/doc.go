// Package cluster starts a real Kubernetes control plane on loopback — etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, with every certificate
// generated at start — so end-to-end tests and `make demo` can run the gateway as an
// aggregated API server the way a cluster runs it: registered by an APIService, reached
// through the aggregator's front-proxy chain, authenticating callers by delegation and
// bound by the same RBAC as metrics-server's manifests.
//
// There are no nodes and no container runtime: pods stay Pending unless something else
// (test/cmd/simkubelet) plays the kubelet. One deliberate difference from a real
// cluster: the apiserver runs with --enable-aggregator-routing=false and the gateway's
// Service is of type ExternalName "localhost", because with routing on the aggregator
// refuses ExternalName services and EndpointSlices refuse loopback addresses. Real
// clusters keep --enable-aggregator-routing=true and a ClusterIP Service.
//
// Start returns a Cluster whose processes die with the test binary; Options.Detach
// (used by test/cmd/localcluster) leaves them running and Attach finds them again by
// directory.
package cluster
