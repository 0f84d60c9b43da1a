// Package kubeagent is the API-server side of simkubelet: it does for the simulated
// nodes what a kubelet does for a real one, and nothing else. It registers the Node
// objects (and lifts the not-ready taint, since no node lifecycle controller runs in
// the test clusters), keeps their Leases and Ready condition fresh, watches the pods
// bound to them, starts each in package sim and reports it Running with its pod IP,
// and finishes deletions with grace period 0 once the pod's servers have stopped.
// The usage model and every server live in package sim, so they are testable
// without an API server.
package kubeagent
