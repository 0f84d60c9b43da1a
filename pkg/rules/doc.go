// Package rules is the prometheus-adapter rules engine behind metrics.k8s.io
// (resourceRules), custom.metrics.k8s.io and
// external.metrics.k8s.io. It reads prometheus-adapter's configuration file
// unchanged (rules, externalRules, resourceRules), validates it reporting
// every problem at once, and compiles each rule into the pieces the providers
// need: which stored series a rule considers, the API metric name of a
// series, the Kubernetes resources its labels stand for, and the PromQL a
// request renders to, exactly as prometheus-adapter v0.12 renders it. It has
// no server and evaluates nothing: the custom provider lists series from
// storage, asks this package for names and queries, and evaluates the
// returned PromQL on the shared engine. Without a config file, DefaultConfig
// gives the adapter's default naming over scraped pod series.
package rules
