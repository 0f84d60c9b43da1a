// Package soak runs the gateway for a long time against hostile churn under
// the memory limit manifests/base ships, on a real control plane with
// simulated kubelets: 100 pods that expose 10,000 fresh series on every
// scrape beside a normal workload with two HPAs, then a SIGKILL and a
// restart that replays the WAL. `make soak` runs it (SOAK_DURATION, 30
// minutes by default; .ci/run runs 5). It needs root, for the memory cgroup.
package soak
