// Package sim is the data side of simkubelet: a deterministic usage model for pods
// and nodes, the servers a node and its pods expose, and the control API tests drive.
//
// Requests to a pod's HTTP server feed a 10 s request-rate window; each container's
// CPU rate follows from that rate and the pod's annotations, and is integrated into a
// cumulative core-seconds counter. A node turns its pods' counters into a
// stats/v1alpha1 Summary, which the kubelet's own resource-metrics collector
// (k8s.io/kubernetes/pkg/kubelet/metrics/collectors) serves on /metrics/resource over
// HTTPS, exactly as a v1.37 kubelet would. /metrics/cadvisor is served by cAdvisor's
// own collectors over the node's cgroups (cadvisor.go): CPU and memory equal
// /metrics/resource, network follows the pod's requests, CFS throttling its CPU
// limit. /truth on the control API reports the model's current rates so end-to-end
// tests can check what the gateway derives from those counters. A pod's own /metrics (http_requests_total, queue_depth) can be
// given an extra gauge or made hostile by annotation (garbage, a streamed 100 MB
// body, 100,000 series; see exposition.go), to test the gateway's pod scraping.
// Nothing here talks to an API server; package kubeagent does that.
package sim
