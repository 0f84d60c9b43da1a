// Package manifests holds the deployment of metrics-gateway: a kustomize base
// (base/), components that change it (components/) and one overlay per
// component (overlays/), plus the Grafana dashboards (grafana/). It sits
// outside the data flow: it is what runs the binary in a cluster, with the
// RBAC the scrape and server packages need and the APIServices that route
// metrics.k8s.io, custom.metrics.k8s.io and external.metrics.k8s.io to it.
// The package has no code; its tests render every overlay and check the
// result against the gateway's real flags, configuration loader and
// security rules, and keep the Dockerfile and docs/configuration.md from
// drifting.
package manifests
