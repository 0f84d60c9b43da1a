package custom

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Store is what the provider reads: PromQL evaluation for requests and the
// raw index for discovery. *storage.Storage implements it.
type Store interface {
	storage.Querier
	Queryable() promstorage.Queryable
}

var _ Store = (*storage.Storage)(nil)

// ObjectLister resolves a label selector to object names, because the
// TSDB knows series labels, not Kubernetes object labels. The server backs
// it with an informer cache. Implementations must be safe for concurrent
// use; the returned slice is owned by the caller. namespace is empty for
// cluster-scoped resources. An error that is an *apierrors.StatusError is
// passed to the client unchanged; any other becomes a 500.
type ObjectLister interface {
	ListNames(gr schema.GroupResource, namespace string, selector labels.Selector) ([]string, error)
}

// Options configure a Provider. Storage, Rules and Lister are required.
type Options struct {
	Storage Store
	Rules   *rules.Rules
	Lister  ObjectLister
	// Mapper normalizes the group-resources of requests, as the rules were
	// compiled with; nil leaves them as asked. When it also implements
	// KindMapper (a meta.RESTMapper does), it names the kinds of objects.
	Mapper rules.ResourceMapper
	// Lookback is how far back discovery looks for series; default 5m, the
	// engine's lookback delta, so every listed metric can be evaluated.
	Lookback time.Duration
	// CacheTTL bounds the age of the discovered list; default 1s. A request
	// for a metric the list lacks rebuilds it once it is a second old
	// whatever CacheTTL is, so a new metric is served within a scrape.
	CacheTTL time.Duration
	// Timeout bounds an evaluation when the request's context has no
	// deadline; default 30s.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Provider answers custom.metrics.k8s.io and external.metrics.k8s.io
// requests with PromQL on the shared engine. It is safe for concurrent use.
type Provider struct {
	store   Store
	lister  ObjectLister
	mapper  rules.ResourceMapper
	timeout time.Duration
	now     func() time.Time
	parser  parser.Parser // for reading rate windows back out of queries
	disc    *discoverer
}

var (
	_ provider.CustomMetricsProvider   = (*Provider)(nil)
	_ provider.ExternalMetricsProvider = (*Provider)(nil)
)

// NewProvider checks o, applies defaults and returns a Provider.
func NewProvider(o Options) (*Provider, error) {
	var errs []error
	if o.Storage == nil {
		errs = append(errs, errors.New("storage is required"))
	}
	if o.Rules == nil {
		errs = append(errs, errors.New("rules are required"))
	}
	if o.Lister == nil {
		errs = append(errs, errors.New("object lister is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Lookback <= 0 {
		o.Lookback = 5 * time.Minute
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Provider{
		store:   o.Storage,
		lister:  o.Lister,
		mapper:  o.Mapper,
		timeout: o.Timeout,
		now:     o.Now,
		parser:  parser.NewParser(storage.ParserOptions()),
		disc: &discoverer{
			queryable: o.Storage.Queryable(),
			rules:     o.Rules,
			lookback:  o.Lookback,
			ttl:       o.CacheTTL,
			missTTL:   min(time.Second, o.CacheTTL),
			timeout:   o.Timeout,
			now:       o.Now,
		},
	}, nil
}

// ListAllMetrics lists the custom metrics the stored series currently
// provide. The slice is shared between callers and must not be modified.
func (p *Provider) ListAllMetrics() []provider.CustomMetricInfo {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	return p.disc.get(ctx).custom
}

// ListAllExternalMetrics lists the external metrics the stored series
// currently provide. The slice is shared and must not be modified.
func (p *Provider) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	return p.disc.get(ctx).external
}

// GetMetricByName returns the metric of one object; NotFound when the
// object has no value.
func (p *Provider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	return p.ObjectAt(ctx, p.now(), name, info, metricSelector)
}

// GetMetricBySelector returns the metric of every object the lister finds
// for selector that has a value; objects without one are left out.
func (p *Provider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	// Only metrics that exist reach the lister, so a request cannot make
	// the server watch a resource no rule serves.
	gr, src, err := p.resolve(ctx, info)
	if err != nil {
		return nil, err
	}
	names, err := p.lister.ListNames(gr, namespace, selector)
	if err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			return nil, err
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("list %s: %w", gr, err))
	}
	if len(names) == 0 {
		return &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{}}, nil
	}
	return p.query(ctx, p.now(), gr, src, namespace, info, metricSelector, names)
}

// GetExternalMetric evaluates the external rule serving info.Metric; one
// item per resulting sample, labelled with the sample's labels.
func (p *Provider) GetExternalMetric(ctx context.Context, namespace string, metricSelector labels.Selector, info provider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	return p.ExternalAt(ctx, p.now(), namespace, metricSelector, info.Metric)
}

// ExternalAt is GetExternalMetric evaluated at ts, as the API served it then.
func (p *Provider) ExternalAt(ctx context.Context, ts time.Time, namespace string, metricSelector labels.Selector, metric string) (*external_metrics.ExternalMetricValueList, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	src, ok := p.disc.lookupExternal(ctx, metric)
	if !ok {
		if err := p.unavailable(); err != nil {
			return nil, err
		}
		return nil, provider.NewMetricNotFoundError(schema.GroupResource{Group: external_metrics.GroupName}, metric)
	}
	q, err := src.rule.QueryForExternalSeries(src.series, namespace, metricSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("metric selector %q for %s: %v", metricSelector, metric, err))
	}
	samples, err := p.eval(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	return externalValues(metric, ts, windowSeconds(p.parser, q), samples), nil
}

// resolve finds the normalized group-resource and the source of a custom
// metric; NotFound when no rule serves it.
func (p *Provider) resolve(ctx context.Context, info provider.CustomMetricInfo) (schema.GroupResource, source, error) {
	gr := p.normalize(info.GroupResource)
	src, ok := p.disc.lookupCustom(ctx, customKey{gr: gr, metric: info.Metric})
	if !ok {
		if err := p.unavailable(); err != nil {
			return gr, source{}, err
		}
		return gr, source{}, provider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	return gr, src, nil
}

// unavailable is a 503 when the store cannot be asked at all (a remote
// engine that does not answer): a metric missing from the catalog then
// says nothing about whether it exists.
func (p *Provider) unavailable() error {
	r, ok := p.store.(interface{ Ready() error })
	if !ok {
		return nil
	}
	if err := r.Ready(); err != nil {
		return apierrors.NewServiceUnavailable(err.Error())
	}
	return nil
}

// ObjectsAt is the metric of the named objects at ts, as
// GetMetricBySelector served it then: names are given, not selected, so
// objects deleted since are still asked for. Objects without a value are
// left out.
func (p *Provider) ObjectsAt(ctx context.Context, ts time.Time, namespace string, names []string, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	gr, src, err := p.resolve(ctx, info)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{}}, nil
	}
	return p.query(ctx, ts, gr, src, namespace, info, metricSelector, names)
}

// ObjectAt is GetMetricByName evaluated at ts.
func (p *Provider) ObjectAt(ctx context.Context, ts time.Time, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	gr, src, err := p.resolve(ctx, info)
	if err != nil {
		return nil, err
	}
	list, err := p.query(ctx, ts, gr, src, name.Namespace, info, metricSelector, []string{name.Name})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].DescribedObject.Name == name.Name {
			return &list.Items[i], nil
		}
	}
	return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
}

// query evaluates the rule of src for names at ts.
func (p *Provider) query(ctx context.Context, ts time.Time, gr schema.GroupResource, src source, namespace string, info provider.CustomMetricInfo, metricSelector labels.Selector, names []string) (*custom_metrics.MetricValueList, error) {
	if !info.Namespaced {
		namespace = ""
	}
	q, err := src.rule.QueryForSeries(src.series, gr, namespace, metricSelector, names...)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("metric selector %q for %s: %v", metricSelector, info.Metric, err))
	}
	resLabel, err := src.rule.LabelForResource(gr)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("label for %s: %w", gr, err))
	}
	samples, err := p.eval(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	kind, apiVersion := describedKind(p.mapper, gr)
	return customValues(valueArgs{
		metric: info.Metric, sel: metricSelector, namespace: namespace,
		kind: kind, apiVersion: apiVersion, resLabel: resLabel, names: names, ts: ts,
		window: windowSeconds(p.parser, q),
	}, samples), nil
}

// normalize maps the request's group-resource to the form the rules were
// compiled with (plural, full group); unknown resources stay as asked and
// are then reported as metrics not found.
func (p *Provider) normalize(gr schema.GroupResource) schema.GroupResource {
	if p.mapper == nil {
		return gr
	}
	gvr, err := p.mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return gr
	}
	return gvr.GroupResource()
}

// withTimeout bounds requests whose context has no deadline, so a heavy
// rule cannot hold an engine slot forever.
func (p *Provider) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeout)
}
