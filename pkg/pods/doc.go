// Package pods is the gateway's one Pod informer. It watches running pods,
// indexes them by namespace and by label within a namespace (LabelIndex,
// which NewLister reads for selector lists), and keeps of each only what
// its readers use: the metadata that metrics.k8s.io and
// custom.metrics.k8s.io answer with and select on, and the few spec and
// status fields from which pod discovery (pkg/scrape) builds the
// annotated-pod job's targets. Prometheus' own pod discovery would keep
// every full Pod of the cluster a second time.
package pods
