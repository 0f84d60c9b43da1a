package sim

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestExpositionFromAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    Exposition
		wantErr string
	}{
		{name: "none", want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}},
		{name: "mode", ann: map[string]string{AnnotationMetricsMode: "huge"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsHuge}},
		{name: "bad mode", ann: map[string]string{AnnotationMetricsMode: "loud"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}, wantErr: "want ok, garbage, huge, cardinality or churn"},
		{name: "extra metric", ann: map[string]string{AnnotationExtraMetric: "jobs_waiting"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK, ExtraMetric: "jobs_waiting", ExtraValue: 1}},
		{name: "extra metric with value", ann: map[string]string{AnnotationExtraMetric: "jobs_waiting=7.5"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK, ExtraMetric: "jobs_waiting", ExtraValue: 7.5}},
		{name: "bad metric name", ann: map[string]string{AnnotationExtraMetric: "jobs-waiting"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}, wantErr: "not a metric name"},
		{name: "bad value", ann: map[string]string{AnnotationExtraMetric: "jobs=many"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}, wantErr: "value"},
		{name: "redirect", ann: map[string]string{AnnotationRedirectTo: "http://127.0.0.1:9/metrics"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK, RedirectTo: "http://127.0.0.1:9/metrics"}},
		{name: "series", ann: map[string]string{AnnotationSeries: "9998"}, want: Exposition{Series: 9998, Mode: MetricsOK}},
		{name: "bad series", ann: map[string]string{AnnotationSeries: "-1"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}, wantErr: "want a count of series"},
		{name: "relative redirect", ann: map[string]string{AnnotationRedirectTo: "/elsewhere"}, want: Exposition{Series: CardinalitySeries, Mode: MetricsOK}, wantErr: "absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ExpositionFromAnnotations(tt.ann)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Errorf("unexpected errors %v", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Errorf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestPodMetricsModes serves each mode from a real pod server and checks
// what a scraper receives: its size, whether it parses, and what it holds.
func TestPodMetricsModes(t *testing.T) {
	tests := []struct {
		mode      MetricsMode
		extra     string
		wantSize  int64 // exact body size; 0 to skip
		wantParse bool
		wantFams  map[string]int // family -> series
	}{
		{mode: MetricsOK, extra: "jobs_waiting=3", wantParse: true,
			wantFams: map[string]int{"http_requests_total": 1, "queue_depth": 1, "jobs_waiting": 1}},
		{mode: MetricsGarbage, wantSize: int64(len(garbageBody))},
		{mode: MetricsHuge, wantSize: HugeBodyBytes, wantParse: true,
			wantFams: map[string]int{"http_requests_total": 1, "queue_depth": 1}},
		{mode: MetricsCardinality, wantParse: true,
			wantFams: map[string]int{"http_requests_total": 1, CardinalityMetric: CardinalitySeries}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			s, _ := newTestSim(t)
			ann := map[string]string{AnnotationMetricsMode: string(tt.mode)}
			if tt.extra != "" {
				ann[AnnotationExtraMetric] = tt.extra
			}
			p := startWeb(t, s, ann)
			resp, err := http.Get(podURL(p, "/metrics"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tt.mode == MetricsHuge && resp.ContentLength != -1 {
				t.Errorf("Content-Length %d: the huge body should be streamed", resp.ContentLength)
			}
			var buf bytes.Buffer
			// The huge body is counted, not kept, beyond its first 16 MiB.
			n, err := io.Copy(io.MultiWriter(&limitedBuffer{b: &buf, max: 16 << 20}), resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSize > 0 && n != tt.wantSize {
				t.Errorf("body is %d bytes, want %d", n, tt.wantSize)
			}
			kept := buf.Bytes()[:bytes.LastIndexByte(buf.Bytes(), '\n')+1] // whole lines
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(bytes.NewReader(kept))
			if tt.wantParse != (err == nil) {
				t.Fatalf("parse error %v, want parsable %v", err, tt.wantParse)
			}
			for name, want := range tt.wantFams {
				if got := len(fams[name].GetMetric()); got != want {
					t.Errorf("%s: %d series, want %d", name, got, want)
				}
			}
			if tt.extra != "" {
				if got := value(fams["jobs_waiting"].GetMetric()[0]); got != 3 {
					t.Errorf("jobs_waiting = %g, want 3", got)
				}
			}
		})
	}
}

// limitedBuffer keeps the first max bytes and discards the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// TestChurnNewSeriesEachScrape: in churn mode no id value is served twice,
// so every scrape is CardinalitySeries new series, or as many as the
// series annotation says.
func TestChurnNewSeriesEachScrape(t *testing.T) {
	for _, n := range []int{CardinalitySeries, 9998} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testChurn(t, n) })
	}
}

func testChurn(t *testing.T, n int) {
	s, _ := newTestSim(t)
	p := startWeb(t, s, map[string]string{AnnotationMetricsMode: string(MetricsChurn), AnnotationSeries: fmt.Sprint(n)})
	seen := map[string]bool{}
	for scrape := range 3 {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(mustGet(t, podURL(p, "/metrics"))))
		if err != nil {
			t.Fatal(err)
		}
		ms := fams[CardinalityMetric].GetMetric()
		if len(ms) != n {
			t.Fatalf("scrape %d: %d series, want %d", scrape, len(ms), n)
		}
		for _, m := range ms {
			id := m.GetLabel()[0].GetValue()
			if seen[id] {
				t.Fatalf("scrape %d: id %s served before", scrape, id)
			}
			seen[id] = true
		}
	}
}
