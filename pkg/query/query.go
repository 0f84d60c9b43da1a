package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// Prefix is where the API is mounted.
const Prefix = "/api/v1"

// Targets is what the targets, scrape pools and metadata endpoints read; the
// gateway's Prometheus scrape manager implements it.
type Targets interface {
	v1.TargetRetriever
	v1.ScrapePoolsRetriever
}

var _ Targets = (*promscrape.Manager)(nil)

// Options configure the handler. Every field but Version is required.
type Options struct {
	Engine    promql.QueryEngine
	Queryable storage.SampleAndChunkQueryable
	// Exemplars answers /query_exemplars (empty while exemplar storage is off).
	Exemplars storage.ExemplarQueryable
	// Stats answers /status/tsdb; its mutating methods are never called.
	Stats   v1.TSDBAdminStats
	Targets Targets
	// Config is the loaded scrape configuration, for /status/config.
	Config func() config.Config
	// Ready returns nil once storage answers queries.
	Ready func() error
	// StoragePath and Retention are reported by /status endpoints.
	StoragePath string
	Retention   time.Duration
	// LookbackDelta must be the engine's.
	LookbackDelta time.Duration
	// QueryTimeout caps the timeout parameter of a query, and (up to 10s)
	// how long a query waits for a free slot.
	QueryTimeout time.Duration
	// MaxConcurrent bounds the evaluating endpoints (query, query_range,
	// query_exemplars, series, labels, label values) running at once;
	// further requests wait up to QueryTimeout or 10s, whichever is less. The metrics APIs have their
	// own bound in storage, so dashboards cannot starve autoscalers.
	MaxConcurrent int
	// Limits bound each request's expressions and answers.
	Limits Limits
	// Version is the gateway's version, reported as buildinfo's revision.
	Version    string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// denied are the endpoints Prometheus registers that the gateway does not
// serve: writes, admin, remote read (unbounded reads outside the engine's
// limits), the live notification stream (long-running), the feature list
// and search (not configured: they would answer 500) and the OpenAPI
// document (it describes the write and admin routes too).
var denied = []string{"/write", "/otlp/", "/admin/", "/read", "/notifications/live", "/features", "/search/", "/openapi.yaml"}

// limited are the endpoints that parse, evaluate or walk the index or the
// scrape caches: they run inside MaxConcurrent and Limits.
var limited = map[string]bool{
	"/query": true, "/query_range": true, "/query_exemplars": true,
	"/format_query": true, "/parse_query": true, "/query_cost": true, "/query_range_cost": true,
	"/series": true, "/labels": true, "/label/:name/values": true,
	"/metadata": true, "/targets/metadata": true,
	"/status/tsdb": true,
}

// maxSlotWait bounds the wait for a query slot, so that a wait plus an
// evaluation stays inside the apiserver's request deadline (60s).
const maxSlotWait = 10 * time.Second

// NewHandler returns the API's handler, serving paths under Prefix. Requests
// outside the served endpoints get a 404 in the API's JSON error shape.
func NewHandler(o Options) (http.Handler, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "metrics_gateway_query_api_requests_total",
		Help: "Requests to the Prometheus-compatible query API, by endpoint and HTTP code.",
	}, []string{"handler", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "metrics_gateway_query_api_request_duration_seconds",
		Help:    "Latency of the Prometheus-compatible query API, by endpoint.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"handler"})
	for _, c := range []prometheus.Collector{requests, duration} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register query API metrics: %w", err)
		}
	}
	start := time.Now()
	api := v1.NewAPI(
		o.Engine, o.Queryable, nil, o.Exemplars,
		func(context.Context) v1.ScrapePoolsRetriever { return o.Targets },
		func(context.Context) v1.TargetRetriever { return o.Targets },
		func(context.Context) v1.AlertmanagerRetriever { return noAlertmanagers{} },
		o.Config,
		map[string]string{},
		v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return ready(o.Ready, f) },
		o.Stats, o.StoragePath,
		false,    // admin
		false, 0, // search
		o.Logger.With("component", "query-api"),
		func(context.Context) v1.RulesRetriever { return noRules{} },
		0, 0, 0, // remote read: not served
		false,                    // agent
		regexp.MustCompile("^$"), // CORS: no browser origin is allowed
		func() (v1.RuntimeInfo, error) { return runtimeInfo(start, o.StoragePath, o.Retention), nil },
		buildInfo(o.Version),
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		o.Gatherer, o.Registerer,
		nil,
		false, nil, // remote write
		false, false, false, // OTLP
		o.LookbackDelta,
		false, false,
		nil, nil,
		v1.OpenAPIOptions{},
		nil,
		false,
		o.QueryTimeout,
	)
	sem := make(chan struct{}, o.MaxConcurrent)
	instrument := func(name string, next http.HandlerFunc) http.HandlerFunc {
		for _, d := range denied {
			if strings.HasPrefix(name, d) {
				next = func(w http.ResponseWriter, _ *http.Request) {
					WriteError(w, http.StatusNotFound, "not_found", "endpoint not served by metrics-gateway")
				}
			}
		}
		if limited[name] {
			next = limitRequest(o.Limits, name, bounded(sem, min(o.QueryTimeout, maxSlotWait), next))
		}
		return promhttp.InstrumentHandlerDuration(duration.MustCurryWith(prometheus.Labels{"handler": name}),
			promhttp.InstrumentHandlerCounter(requests.MustCurryWith(prometheus.Labels{"handler": name}), next))
	}
	r := route.New().WithInstrumentation(instrument)
	api.Register(r.WithPrefix(Prefix))
	return r, nil
}

func (o Options) validate() error {
	var errs []error
	if o.Engine == nil || o.Queryable == nil || o.Exemplars == nil || o.Stats == nil || o.Targets == nil || o.Config == nil || o.Ready == nil {
		errs = append(errs, errors.New("engine, queryable, exemplars, stats, targets, config and ready are required"))
	}
	if o.Logger == nil || o.Registerer == nil || o.Gatherer == nil {
		errs = append(errs, errors.New("logger, registerer and gatherer are required"))
	}
	if err := o.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MaxConcurrent <= 0 || o.QueryTimeout <= 0 || o.LookbackDelta <= 0 {
		errs = append(errs, fmt.Errorf("max concurrency (%d), query timeout (%v) and lookback delta (%v) must be positive", o.MaxConcurrent, o.QueryTimeout, o.LookbackDelta))
	}
	return errors.Join(errs...)
}

// bounded runs next once a slot is free, or answers 503 "timeout", as the
// API answers an evaluation that ran out of time.
func bounded(sem chan struct{}, wait time.Duration, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			next(w, r)
		case <-t.C:
			WriteError(w, http.StatusServiceUnavailable, "timeout", fmt.Sprintf("no query slot free within %v: too many concurrent queries", wait))
		case <-r.Context().Done():
			// 499, as Prometheus answers a canceled query.
			WriteError(w, 499, "canceled", "request canceled while waiting for a query slot")
		}
	}
}

func ready(check func() error, f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := check(); err != nil {
			WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		f(w, r)
	}
}

// writeError answers in the API's error shape.
func WriteError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}

// buildInfo reports the Prometheus release whose API the gateway serves
// (from the module version compiled in), because clients such as Grafana
// pick features by it; the gateway's own version is the revision.
func buildInfo(version string) *v1.PrometheusVersion {
	return &v1.PrometheusVersion{
		Version:   prometheusRelease(),
		Revision:  version,
		Branch:    "metrics-gateway",
		BuildUser: "metrics-gateway",
		GoVersion: runtime.Version(),
	}
}

// PrometheusModule is the version of github.com/prometheus/prometheus in
// go.mod, whose handlers serve the API; a test fails when the two differ.
const PrometheusModule = "v0.316.0"

// prometheusRelease maps the Go module version of Prometheus (v0.MMM.P,
// where MMM is major*100+minor) to its release (3.16.P).
func prometheusRelease() string {
	if r, ok := releaseOf(PrometheusModule); ok {
		return r
	}
	return "3.0.0"
}

func releaseOf(module string) (string, bool) {
	parts := strings.SplitN(strings.TrimPrefix(module, "v"), ".", 3)
	if len(parts) != 3 || parts[0] != "0" {
		return "", false
	}
	mm, err := strconv.Atoi(parts[1])
	if err != nil || mm < 100 {
		return "", false
	}
	patch, _, _ := strings.Cut(parts[2], "-")
	return fmt.Sprintf("%d.%d.%s", mm/100, mm%100, patch), true
}

func runtimeInfo(start time.Time, path string, retention time.Duration) v1.RuntimeInfo {
	host, _ := os.Hostname()
	cwd, _ := os.Getwd()
	return v1.RuntimeInfo{
		StartTime:           start,
		CWD:                 cwd,
		Hostname:            host,
		ServerTime:          time.Now(),
		ReloadConfigSuccess: true,
		LastConfigTime:      start,
		GoroutineCount:      runtime.NumGoroutine(),
		GOMAXPROCS:          runtime.GOMAXPROCS(0),
		GOMEMLIMIT:          debug.SetMemoryLimit(-1),
		GOGC:                os.Getenv("GOGC"),
		GODEBUG:             os.Getenv("GODEBUG"),
		StorageRetention:    retention.String() + " (" + path + ")",
	}
}
