package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// fakeAPI answers the Prometheus HTTP API with canned bodies per path and
// counts the requests.
type fakeAPI struct {
	status atomic.Int32 // HTTP status of every answer; 0 is 200
	body   atomic.Pointer[string]
	asked  atomic.Int32
	last   atomic.Pointer[http.Request]
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.asked.Add(1)
	_ = r.ParseForm()
	f.last.Store(r)
	w.Header().Set("Content-Type", "application/json")
	if s := f.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
	_, _ = w.Write([]byte(*f.body.Load()))
}

func (f *fakeAPI) answer(status int, body string) {
	f.status.Store(int32(status))
	f.body.Store(&body)
}

func newEngine(t *testing.T, f *fakeAPI) *Engine {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	e, err := New(Options{URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestInstantAndRangeConvertAnswers(t *testing.T) {
	f := &fakeAPI{}
	e := newEngine(t, f)
	f.answer(200, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"pod":"a","namespace":"ns"},"value":[1700000000.5,"2.25"]},
		{"metric":{"pod":"b","namespace":"ns"},"value":[1700000000.5,"NaN"]}]}}`)
	v, err := e.Instant(context.Background(), `sum(x) by (pod)`, time.Unix(1700000000, 0), storage.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vec, ok := v.(promql.Vector)
	if !ok || len(vec) != 2 {
		t.Fatalf("got %T %v, want a vector of 2", v, v)
	}
	if want := labels.FromStrings("namespace", "ns", "pod", "a"); !labels.Equal(vec[0].Metric, want) || vec[0].T != 1700000000500 || vec[0].F != 2.25 {
		t.Errorf("first sample %v, want %v at 1700000000500 = 2.25", vec[0], want)
	}
	if got := f.last.Load().Form.Get("query"); got != `sum(x) by (pod)` {
		t.Errorf("asked %q", got)
	}

	f.answer(200, `{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"pod":"a"},"values":[[10,"1"],[25,"2"]]}]}}`)
	v, err = e.Range(context.Background(), `x`, time.Unix(10, 0), time.Unix(25, 0), 15*time.Second, storage.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(promql.Matrix)
	if !ok || len(m) != 1 || len(m[0].Floats) != 2 || m[0].Floats[1] != (promql.FPoint{T: 25000, F: 2}) {
		t.Fatalf("got %v, want one series [1@10 2@25]", v)
	}
	if got := f.last.Load().Form.Get("step"); got != "15" {
		t.Errorf("step %q, want 15", got)
	}

	f.answer(200, `{"status":"success","data":{"resultType":"scalar","result":[5,"3"]}}`)
	if v, err = e.Instant(context.Background(), `3`, time.Unix(5, 0), storage.QueryOptions{}); err != nil || v.(promql.Scalar) != (promql.Scalar{T: 5000, V: 3}) {
		t.Fatalf("scalar: %v %v", v, err)
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	f := &fakeAPI{}
	e := newEngine(t, f)
	ask := func() error {
		_, err := e.Instant(context.Background(), "x", time.Now(), storage.QueryOptions{})
		return err
	}
	f.answer(400, `{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`)
	var bad *storage.BadQueryError
	if err := ask(); !errors.As(err, &bad) {
		t.Errorf("bad_data: %v (%T), want a BadQueryError", err, err)
	}
	f.answer(503, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`)
	var timeout promql.ErrQueryTimeout
	if err := ask(); !errors.As(err, &timeout) {
		t.Errorf("timeout: %v (%T), want promql.ErrQueryTimeout", err, err)
	}
	f.answer(422, `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`)
	var be *storage.BackendError
	if err := ask(); err == nil || errors.As(err, &be) || !strings.Contains(err.Error(), "many-to-many") {
		t.Errorf("execution: %v, want the engine's message, not a BackendError", err)
	}
	if e.Ready() != nil {
		t.Errorf("an engine that evaluates is ready, got %v", e.Ready())
	}
}

// An engine failing as a server makes the next requests fail at once,
// without asking it, until a probe finds it answering again.
func TestUnavailableFailsFastUntilProbed(t *testing.T) {
	f := &fakeAPI{}
	e := newEngine(t, f)
	f.answer(503, `no healthy stores`)
	_, err := e.Instant(context.Background(), "x", time.Now(), storage.QueryOptions{})
	var be *storage.BackendError
	if !errors.As(err, &be) || be.Backend != e.URL() {
		t.Fatalf("got %v (%T), want a BackendError naming %s", err, err, e.URL())
	}
	asked := f.asked.Load()
	_, err = e.Instant(context.Background(), "x", time.Now(), storage.QueryOptions{})
	if !errors.As(err, &be) || f.asked.Load() != asked {
		t.Fatalf("second request: %v, asked the engine %d more times; want a BackendError without asking", err, f.asked.Load()-asked)
	}
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), e.URL()) {
		t.Errorf("Ready() = %v, want why, naming the engine", err)
	}
	set := e.Queryable().(indexQueryable)
	q, _ := set.Querier(0, 1)
	if ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")); ss.Next() || !errors.As(ss.Err(), &be) {
		t.Errorf("Select while down: err %v, want a BackendError", ss.Err())
	}

	f.answer(200, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	e.probe(context.Background())
	if err := e.Ready(); err != nil {
		t.Fatalf("after a good probe: %v", err)
	}
	if _, err := e.Instant(context.Background(), "x", time.Now(), storage.QueryOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableIsABackendError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	e, err := New(Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Instant(context.Background(), "x", time.Now(), storage.QueryOptions{})
	var be *storage.BackendError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), url) {
		t.Fatalf("got %v, want a BackendError naming %s", err, url)
	}
	t.Logf("refused in %v: %v", time.Since(start), err)
	// The query API sees it as a storage error (Prometheus answers 500).
	qry, err := e.QueryEngine().NewInstantQuery(context.Background(), nil, nil, "up", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var es promql.ErrStorage
	if res := qry.Exec(context.Background()); !errors.As(res.Err, &es) {
		t.Errorf("query API: %v (%T), want promql.ErrStorage", res.Err, res.Err)
	}
}

func TestSeriesAndLabelsFromTheIndexAPIs(t *testing.T) {
	f := &fakeAPI{}
	e := newEngine(t, f)
	f.answer(200, `{"status":"success","data":[
		{"__name__":"http_requests_total","pod":"b","namespace":"ns"},
		{"__name__":"http_requests_total","pod":"a","namespace":"ns"}]}`)
	q, err := e.Queryable().Querier(1000, 2000)
	if err != nil {
		t.Fatal(err)
	}
	set := q.Select(context.Background(), true, nil,
		labels.MustNewMatcher(labels.MatchEqual, "namespace", "ns"),
		labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+_total"))
	var got []string
	for set.Next() {
		got = append(got, set.At().Labels().Get("pod"))
	}
	if set.Err() != nil || fmt.Sprint(got) != "[a b]" {
		t.Fatalf("series %v, err %v; want [a b] sorted", got, set.Err())
	}
	r := f.last.Load()
	if m := r.Form["match[]"]; len(m) != 1 || m[0] != `{namespace="ns",__name__=~".+_total"}` {
		t.Errorf("match[] = %q", m)
	}
	if r.Form.Get("start") != "1" || r.Form.Get("end") != "2" {
		t.Errorf("start/end = %s/%s, want 1/2", r.Form.Get("start"), r.Form.Get("end"))
	}

	f.answer(200, `{"status":"success","data":["a","b"]}`)
	vals, _, err := q.LabelValues(context.Background(), "pod", nil)
	if err != nil || fmt.Sprint(vals) != "[a b]" {
		t.Fatalf("label values %v %v", vals, err)
	}
	if !strings.HasSuffix(f.last.Load().URL.Path, "/api/v1/label/pod/values") {
		t.Errorf("asked %s", f.last.Load().URL.Path)
	}
}

// The gateway's external labels scope every selector sent to the engine,
// unless the selector matches on that label itself.
func TestScopeAddsExternalLabels(t *testing.T) {
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	e, err := New(Options{URL: srv.URL, Scope: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "cluster", "eu-1")}})
	if err != nil {
		t.Fatal(err)
	}
	f.answer(200, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	for expr, want := range map[string]string{
		`sum by (pod) (rate(http_requests_total{namespace="ns"}[1m]))`: `sum by (pod) (rate(http_requests_total{cluster="eu-1",namespace="ns"}[1m]))`,
		`up{cluster="other"} / on (pod) queue_depth`:                   `up{cluster="other"} / on (pod) queue_depth{cluster="eu-1"}`,
		`vector(1)`: `vector(1)`,
	} {
		if _, err := e.Instant(context.Background(), expr, time.Now(), storage.QueryOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := f.last.Load().Form.Get("query"); got != want {
			t.Errorf("%s was sent as %s, want %s", expr, got, want)
		}
	}
	f.answer(200, `{"status":"success","data":[]}`)
	q, _ := e.Queryable().Querier(0, 1000)
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	for set.Next() {
	}
	if m := f.last.Load().Form["match[]"]; len(m) != 1 || m[0] != `{__name__="up",cluster="eu-1"}` {
		t.Errorf("series match[] %q", m)
	}
	var bad *storage.BadQueryError
	if _, err := e.Instant(context.Background(), "sum(", time.Now(), storage.QueryOptions{}); !errors.As(err, &bad) {
		t.Errorf("a bad expression: %v, want a BadQueryError before asking the engine", err)
	}
}
