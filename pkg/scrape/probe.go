package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	promkube "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Probe stages: where a kubelet probe stopped.
const (
	ProbeStageConfig  = "config"  // the kubelet job's TLS or credentials cannot be loaded
	ProbeStageAddress = "address" // the node has no address of a preferred type
	ProbeStageConnect = "connect" // TCP, TLS or the HTTP exchange failed
	ProbeStageStatus  = "status"  // the kubelet answered with a non-200 status
	ProbeStageParse   = "parse"   // the body is not the kubelet's resource metrics
)

// ProbeError says where and why a kubelet probe failed.
type ProbeError struct {
	Stage string
	// URL is the scrape URL, once the address is known.
	URL string
	// StatusCode is the kubelet's answer in the status stage.
	StatusCode int
	Err        error
}

func (e *ProbeError) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("kubelet probe (%s): %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("kubelet probe %s (%s): %v", e.URL, e.Stage, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// KubeletProbe is the outcome of one successful probe.
type KubeletProbe struct {
	URL      string
	Duration time.Duration
	// Samples is how many resource-metric samples the kubelet sent.
	Samples int
}

// ProbeKubelet scrapes node's /metrics/resource once, as the kubelet job
// would: the job is rendered from o and c and loaded through config.Load,
// Prometheus' node discovery turns node into the target, the job's
// relabeling picks the address and port, and the job's HTTP client config
// supplies TLS and credentials. It never goes through the API server's
// nodes/proxy. Every failure is a *ProbeError.
func ProbeKubelet(ctx context.Context, node *corev1.Node, o KubeletOptions, c Credentials) (KubeletProbe, error) {
	doc, err := KubeletJobYAML(o, c)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConfig, Err: err}
	}
	cfg, err := LoadConfig(slog.New(slog.DiscardHandler), doc)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConfig, Err: err}
	}
	sc := cfg.ScrapeConfigs[0]
	tg, err := discoverNode(ctx, node)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageAddress, Err: err}
	}
	targets, errs := promscrape.TargetsFromGroup(tg, sc, nil, labels.NewBuilder(labels.EmptyLabels()))
	if err := errors.Join(errs...); err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageAddress, Err: err}
	}
	// Relabeling that drops the node leaves a target without labels.
	if len(targets) == 0 || targets[0].Labels(labels.NewBuilder(labels.EmptyLabels())).IsEmpty() {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageAddress, Err: fmt.Errorf("node %s has no address of the preferred types %v: %v", node.Name, o.PreferredAddressTypes, node.Status.Addresses)}
	}
	url := targets[0].URL().String()
	client, err := config_util.NewClientFromConfig(sc.HTTPClientConfig, sc.JobName)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConfig, URL: url, Err: err}
	}
	defer client.CloseIdleConnections()
	return get(ctx, client, url, time.Duration(sc.ScrapeTimeout))
}

// get does the one scrape and checks the body is the kubelet's resource
// metrics in the text format the job asks for.
func get(ctx context.Context, client *http.Client, url string, timeout time.Duration) (KubeletProbe, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConfig, URL: url, Err: err}
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConnect, URL: url, Err: err}
	}
	defer resp.Body.Close()
	// Enough for a kubelet with a few hundred pods; the rest is not read.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageConnect, URL: url, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return KubeletProbe{}, &ProbeError{Stage: ProbeStageStatus, URL: url, StatusCode: resp.StatusCode,
			Err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, firstLine(body))}
	}
	p := KubeletProbe{URL: url, Duration: time.Since(start)}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return p, &ProbeError{Stage: ProbeStageParse, URL: url, Err: err}
	}
	if _, ok := fams[NodeCPUMetric]; !ok {
		return p, &ProbeError{Stage: ProbeStageParse, URL: url, Err: fmt.Errorf("no %s in the answer: this is not a kubelet's /metrics/resource", NodeCPUMetric)}
	}
	for _, name := range []string{ContainerCPUMetric, ContainerMemoryMetric, ContainerStartTimeMetric, NodeCPUMetric, NodeMemoryMetric} {
		if f, ok := fams[name]; ok {
			p.Samples += len(f.GetMetric())
		}
	}
	return p, nil
}

func firstLine(b []byte) string {
	const limit = 200
	for i, c := range b {
		if c == '\n' || i == limit {
			return string(b[:i])
		}
	}
	return string(b)
}

// discoverNode runs Prometheus' node discovery over node alone, so the
// probe sees the labels (addresses, kubelet port) the kubelet job sees.
func discoverNode(ctx context.Context, node *corev1.Node) (*targetgroup.Group, error) {
	// Prometheus' discovery sends nothing for such a node.
	if len(node.Status.Addresses) == 0 {
		return nil, fmt.Errorf("node %s has no addresses in its status", node.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &corev1.NodeList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []corev1.Node{*node}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return watch.NewFake(), nil
		},
	}
	inf := cache.NewSharedInformer(staticListWatch{lw}, &corev1.Node{}, 0)
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "probe_sd_events_total"}, []string{"role", "event"})
	d := promkube.NewNode(nil, inf, events)
	go inf.RunWithContext(ctx)
	ch := make(chan []*targetgroup.Group, 1)
	go d.Run(ctx, ch)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node discovery of %s: %w", node.Name, ctx.Err())
		case tgs := <-ch:
			for _, tg := range tgs {
				if tg != nil && len(tg.Targets) > 0 {
					return tg, nil
				}
			}
			return nil, fmt.Errorf("node %s has no address Prometheus' node discovery can use: %v", node.Name, node.Status.Addresses)
		}
	}
}

// staticListWatch lists the one node and never sends a watch event, so the
// reflector must not wait for watch-list's initial-events bookmark.
type staticListWatch struct{ *cache.ListWatch }

func (staticListWatch) IsWatchListSemanticsUnSupported() bool { return true }
