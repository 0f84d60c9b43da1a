// Package autoscaling records what the cluster's HorizontalPodAutoscalers
// decide. Its Collector turns every HPA the gateway's informer holds into
// kube-state-metrics' kube_horizontalpodautoscaler_* series (the same names,
// labels and values, so dashboards written for kube-state-metrics read
// them); the gateway's self-scrape job stores them every round, so the query
// API charts each HPA's replicas and metrics against their targets over the
// whole retention.
package autoscaling
