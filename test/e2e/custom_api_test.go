package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The API versions of the custom and external metrics APIs the tests read.
const (
	customV1beta1   = "/apis/custom.metrics.k8s.io/v1beta1"
	customV1beta2   = "/apis/custom.metrics.k8s.io/v1beta2"
	externalV1beta1 = "/apis/external.metrics.k8s.io/v1beta1"
)

// metricValue is one item of a custom.metrics.k8s.io MetricValueList or an
// external.metrics.k8s.io ExternalMetricValueList: the tests decode the
// wire format themselves rather than trust the gateway's own types.
// v1beta1 names the metric in metricName and its window in window, v1beta2
// in metric.name and windowSeconds.
type metricValue struct {
	DescribedObject struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"describedObject"`
	MetricName string `json:"metricName"`
	Metric     struct {
		Name string `json:"name"`
	} `json:"metric"`
	MetricLabels  map[string]string `json:"metricLabels"`
	Timestamp     time.Time         `json:"timestamp"`
	Window        *int64            `json:"window"`
	WindowSeconds *int64            `json:"windowSeconds"`
	Value         resource.Quantity `json:"value"`
}

func (v metricValue) float() float64 { return v.Value.AsApproximateFloat64() }

// window is the span a rate was computed over, 0 for a gauge.
func (v metricValue) window() time.Duration {
	for _, w := range []*int64{v.WindowSeconds, v.Window} {
		if w != nil {
			return time.Duration(*w) * time.Second
		}
	}
	return 0
}

// getRaw reads path through kube-apiserver and its aggregator, as kubectl
// get --raw does, without a kubectl process per poll.
func getRaw(ctx context.Context, path string, query url.Values) ([]byte, error) {
	req := e.Client.Discovery().RESTClient().Get().AbsPath(path)
	for k, vs := range query {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	b, err := req.DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w: %s", path, err, b)
	}
	return b, nil
}

// metricValues reads a custom or external metrics list.
func metricValues(ctx context.Context, path string, query url.Values) ([]metricValue, error) {
	b, err := getRaw(ctx, path, query)
	if err != nil {
		return nil, err
	}
	var list struct {
		Kind  string        `json:"kind"`
		Items []metricValue `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("GET %s: %w: %s", path, err, b)
	}
	if !strings.HasSuffix(list.Kind, "MetricValueList") {
		return nil, fmt.Errorf("GET %s: kind %q: %s", path, list.Kind, b)
	}
	return list.Items, nil
}

// listedMetrics is the resource list of a custom or external metrics API
// version: "pods/http_requests", "namespaces/http_requests", or for the
// external API the bare metric name.
func listedMetrics(ctx context.Context, groupVersion string) ([]string, error) {
	b, err := getRaw(ctx, groupVersion, nil)
	if err != nil {
		return nil, err
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("GET %s: %w", groupVersion, err)
	}
	names := make([]string, 0, len(list.APIResources))
	for _, r := range list.APIResources {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names, nil
}

// requireListed fails unless every one of want is listed.
func requireListed(ctx context.Context, groupVersion string, want ...string) error {
	got, err := listedMetrics(ctx, groupVersion)
	if err != nil {
		return err
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return fmt.Errorf("%s lists %d metrics, not %s", groupVersion, len(got), w)
		}
	}
	return nil
}

// podValues reads metric for the pods of d through version (customV1beta1
// or customV1beta2) and checks that there is exactly one value per Running
// pod. It returns the values by pod name.
func podValues(ctx context.Context, version string, d deployment, metric string) (map[string]metricValue, error) {
	vals, err := metricValues(ctx, version+"/namespaces/"+d.ns+"/pods/*/"+metric, url.Values{"labelSelector": {"app=" + d.name}})
	if err != nil {
		return nil, err
	}
	pods, err := running(ctx, d.ns, "app="+d.name)
	if err != nil {
		return nil, err
	}
	byPod := map[string]metricValue{}
	for _, v := range vals {
		byPod[v.DescribedObject.Name] = v
	}
	if len(vals) != len(pods) || len(byPod) != len(pods) {
		return nil, fmt.Errorf("%s: %d values for %d running pods: %+v", metric, len(vals), len(pods), vals)
	}
	for _, p := range pods {
		if _, ok := byPod[p.Name]; !ok {
			return nil, fmt.Errorf("%s: no value for running pod %s", metric, p.Name)
		}
	}
	return byPod, nil
}

// rawURL is the path and query kubectl get --raw takes, for logs a reader
// can paste.
func rawURL(path string, query url.Values) string {
	if len(query) == 0 {
		return path
	}
	return path + "?" + query.Encode()
}
