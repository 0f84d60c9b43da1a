// Command kubelet-fixtures writes the golden kubelet /metrics/resource bodies that
// pkg/scrape tests parse. Rather than hand-typing what a kubelet might send, it runs the
// kubelet's own resource-metrics collector (k8s.io/kubernetes/pkg/kubelet/metrics/collectors)
// over a hand-written summary provider and serves it through component-base's HandlerFor,
// the same path a v1.37 kubelet takes, so the files change only when the kubelet's
// exposition does. It also writes the README that tabulates every expected value.
//
// Run it from the test module:
//
//	cd test && go run ./cmd/kubelet-fixtures -out ../pkg/scrape/testdata/kubelet
package main
