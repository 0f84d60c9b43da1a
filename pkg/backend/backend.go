// Package backend is the scale-out mode's query engine: an existing
// distributed store's Prometheus HTTP API (Thanos Query, Cortex, VictoriaMetrics ...),
// asked with client_golang's API client. It answers what the embedded
// engine answers in single-process mode: storage.Querier for the custom
// and external metrics APIs, a series-only storage.Queryable for their
// discovery, and promql.QueryEngine for the Prometheus-compatible API.
//
// A backend that does not answer fails requests fast: a probe every few
// seconds keeps its state, and while it is down every request returns a
// *storage.BackendError at once instead of waiting for a timeout.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Options configure an Engine. URL is required.
type Options struct {
	// URL is the engine's Prometheus HTTP API root (the /api/v1 parent).
	URL string
	// HTTP is how it is reached: auth, TLS, headers, proxy.
	HTTP promconfig.HTTPClientConfig
	// Timeout bounds a request whose context has no deadline; default 30s.
	Timeout time.Duration
	// DialTimeout bounds connecting; default 2s, so an address that drops
	// packets fails as fast as one that refuses.
	DialTimeout time.Duration
	// ProbeInterval is how often Run asks the engine whether it answers;
	// default 5s.
	ProbeInterval time.Duration
	// Scope are matchers added to every selector sent to the engine (the
	// gateway's external labels), so that several clusters writing to one
	// engine each read their own series.
	Scope  []*labels.Matcher
	Logger *slog.Logger
}

// Engine is a remote PromQL engine. It is safe for concurrent use.
type Engine struct {
	url      string
	api      v1.API
	timeout  time.Duration
	interval time.Duration
	scope    []*labels.Matcher
	logger   *slog.Logger
	// down is the last probe's failure; nil while the engine answers.
	down atomic.Pointer[storage.BackendError]
}

var _ storage.Querier = (*Engine)(nil)

// New builds an Engine; it starts as answering until a probe or a request
// says otherwise.
func New(o Options) (*Engine, error) {
	if o.URL == "" {
		return nil, errors.New("query backend: url is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	rt, err := promconfig.NewRoundTripperFromConfig(o.HTTP, "query-backend", promconfig.WithDialContextFunc(dialer.DialContext))
	if err != nil {
		return nil, fmt.Errorf("query backend %s: %w", o.URL, err)
	}
	client, err := api.NewClient(api.Config{Address: o.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("query backend %s: %w", o.URL, err)
	}
	return &Engine{url: o.URL, api: v1.NewAPI(client), timeout: o.Timeout, interval: o.ProbeInterval, scope: o.Scope, logger: o.Logger}, nil
}

// URL names the engine in errors.
func (e *Engine) URL() string { return e.url }

// Ready is nil while the engine answers, else why it does not: /readyz
// reports it, and requests fail with it at once instead of waiting.
func (e *Engine) Ready() error {
	if d := e.down.Load(); d != nil {
		return d
	}
	return nil
}

// Run probes the engine every ProbeInterval until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		e.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks the engine for a constant: it answers only when it can
// evaluate, not merely accept connections.
func (e *Engine) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, min(e.interval, e.timeout))
	defer cancel()
	_, _, _, err := e.api.Query(ctx, "vector(1)", time.Now())
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down
	}
	e.observe(err)
}

// observe records whether the engine answered; a change is logged once.
func (e *Engine) observe(err error) {
	var be *storage.BackendError
	if err != nil && !errors.As(err, &be) {
		be = &storage.BackendError{Backend: e.url, Err: err}
	}
	if err == nil {
		if e.down.Swap(nil) != nil {
			e.logger.Info("query backend answers again", "url", e.url)
		}
		return
	}
	if e.down.Swap(be) == nil {
		e.logger.Warn("query backend does not answer; custom and external metrics fail until it does", "url", e.url, "err", be.Err)
	}
}

func (e *Engine) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.timeout)
}

// Instant evaluates expr at ts on the engine. DropStale is not applied: the
// engine decides what its range selectors hold.
func (e *Engine) Instant(ctx context.Context, expr string, ts time.Time, _ storage.QueryOptions) (parser.Value, error) {
	return e.eval(ctx, expr, func(ctx context.Context, expr string) (model.Value, error) {
		v, _, _, err := e.api.Query(ctx, expr, ts)
		return v, err
	})
}

// Range evaluates expr from start to end every step on the engine.
func (e *Engine) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration, _ storage.QueryOptions) (parser.Value, error) {
	return e.eval(ctx, expr, func(ctx context.Context, expr string) (model.Value, error) {
		v, _, _, err := e.api.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step})
		return v, err
	})
}

// eval asks the engine for expr, scoped, unless it is known to be down,
// within the request's deadline or the default timeout.
func (e *Engine) eval(ctx context.Context, expr string, ask func(context.Context, string) (model.Value, error)) (parser.Value, error) {
	if err := e.Ready(); err != nil {
		return nil, err
	}
	expr, err := e.scoped(expr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	v, err := ask(ctx, expr)
	if err != nil {
		return nil, e.classify(ctx, err)
	}
	return toValue(v)
}

// scoped adds the scope's matchers to every selector of expr that does
// not match on their labels already.
func (e *Engine) scoped(expr string) (string, error) {
	if len(e.scope) == 0 {
		return expr, nil
	}
	parsed, err := exprParser.ParseExpr(expr)
	if err != nil {
		return "", &storage.BadQueryError{Err: err}
	}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			vs.LabelMatchers = e.withScope(vs.LabelMatchers)
		}
		return nil
	})
	return parsed.String(), nil
}

// withScope is ms with the scope's matchers on labels ms does not match.
func (e *Engine) withScope(ms []*labels.Matcher) []*labels.Matcher {
	out := ms
	for _, s := range e.scope {
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m.Name == s.Name }) {
			out = append(out[:len(out):len(out)], s)
		}
	}
	return out
}

// classify gives an engine's failure the kind the local engine's would
// have: a bad expression is a BadQueryError, a deadline ErrQueryTimeout, a
// cancellation ErrQueryCanceled, an evaluation error stays an error, and
// an engine that cannot be reached or fails as a server is a
// *storage.BackendError (a 503 naming it).
func (e *Engine) classify(ctx context.Context, err error) error {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		apiErr = withBodyKind(apiErr)
		switch apiErr.Type {
		case v1.ErrBadData:
			return &storage.BadQueryError{Err: errors.New(apiErr.Msg)}
		case v1.ErrTimeout:
			return promql.ErrQueryTimeout(fmt.Sprintf("query backend %s: %s", e.url, apiErr.Msg))
		case v1.ErrCanceled:
			return promql.ErrQueryCanceled(fmt.Sprintf("query backend %s: %s", e.url, apiErr.Msg))
		case v1.ErrExec:
			return fmt.Errorf("query backend %s: %s", e.url, apiErr.Msg)
		}
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return promql.ErrQueryTimeout(fmt.Sprintf("query backend %s: %v", e.url, err))
	case errors.Is(ctx.Err(), context.Canceled):
		return promql.ErrQueryCanceled(fmt.Sprintf("query backend %s: %v", e.url, err))
	}
	// Unreachable, or failing as a server: news the probe would bring
	// seconds later, so later requests fail fast from now on.
	be := &storage.BackendError{Backend: e.url, Err: err}
	e.observe(be)
	return be
}

// withBodyKind reads the kind of an error the client only knows by its
// status (Prometheus answers a timeout with a 503, which client_golang
// reports as a server error): the body's errorType when it has one.
func withBodyKind(e *v1.Error) *v1.Error {
	if e.Type != v1.ErrServer && e.Type != v1.ErrClient {
		return e
	}
	var body struct {
		Status    string       `json:"status"`
		ErrorType v1.ErrorType `json:"errorType"`
		Error     string       `json:"error"`
	}
	if json.Unmarshal([]byte(e.Detail), &body) != nil || body.Status != "error" || body.ErrorType == "" {
		return e
	}
	return &v1.Error{Type: body.ErrorType, Msg: body.Error, Detail: e.Detail}
}

// toValue converts an API answer to the engine's types. Native histogram
// samples are left out: the metrics APIs read floats.
func toValue(v model.Value) (parser.Value, error) {
	switch v := v.(type) {
	case model.Vector:
		out := make(promql.Vector, 0, len(v))
		for _, s := range v {
			if s.Histogram != nil {
				continue
			}
			out = append(out, promql.Sample{Metric: toLabels(s.Metric), T: int64(s.Timestamp), F: float64(s.Value)})
		}
		return out, nil
	case model.Matrix:
		out := make(promql.Matrix, 0, len(v))
		for _, ss := range v {
			if len(ss.Values) == 0 {
				continue
			}
			pts := make([]promql.FPoint, len(ss.Values))
			for i, p := range ss.Values {
				pts[i] = promql.FPoint{T: int64(p.Timestamp), F: float64(p.Value)}
			}
			out = append(out, promql.Series{Metric: toLabels(ss.Metric), Floats: pts})
		}
		return out, nil
	case *model.Scalar:
		return promql.Scalar{T: int64(v.Timestamp), V: float64(v.Value)}, nil
	case *model.String:
		return promql.String{T: int64(v.Timestamp), V: v.Value}, nil
	case nil:
		return nil, errors.New("query backend returned no result")
	default:
		return nil, fmt.Errorf("query backend returned a %s", v.Type())
	}
}

func toLabels(m model.Metric) labels.Labels {
	b := labels.NewScratchBuilder(len(m))
	for k, v := range m {
		b.Add(string(k), string(v))
	}
	b.Sort()
	return b.Labels()
}

func toLabelsSet(m model.LabelSet) labels.Labels { return toLabels(model.Metric(m)) }
