// Command simkubelet simulates N Kubernetes nodes against a real kube-apiserver for
// the end-to-end tests: it registers the Nodes and keeps them Ready, runs every pod
// bound to them as a loopback HTTP server (the load target, with its own /metrics),
// and serves each node's kubelet endpoints over HTTPS on a loopback address, with
// /metrics/resource produced by the kubelet's own collector over a deterministic
// usage model. A plain-HTTP control API exposes the model's true rates and lets a
// test add CPU, set a pod's queue_depth or break a node's /metrics/resource; pod
// annotations add a metric to a pod's own /metrics or make it hostile (garbage, a
// streamed 100 MB body, 100,000 series).
//
//	cd test && go run ./cmd/simkubelet --kubeconfig admin.kubeconfig \
//	    --token-file token --cert-dir /tmp/sim-certs --control-file /tmp/sim-control
//
// It prints "control: http://ADDR" once every node is registered and the pod watch
// has synced. Package sim holds the model and servers, package sim/kubeagent the
// API-server side.
package main
