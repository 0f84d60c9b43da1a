package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/component-base/metrics"
	"k8s.io/kubernetes/pkg/kubelet/metrics/collectors"
)

// Accept headers to record the kubelet's answer to. The Prometheus ones are what
// prometheus/scrape's acceptHeader builds in Prometheus v3 (module v0.316.0) with the
// default UTF-8 name validation; they are spelled out rather than imported because
// pulling Prometheus into this module would raise client_golang and prometheus/common
// above the versions the kubelet is built with, and change the bytes.
var acceptHeaders = []struct{ name, value string }{
	{"text/plain (Prometheus' fallback; the fixture files)", "text/plain"},
	{"Prometheus v3 default scrape_protocols", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7," +
		"application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5," +
		"text/plain;version=0.0.4;q=0.4,*/*;q=0.3"},
	{"Prometheus v3 protobuf-first (native histograms)", "application/vnd.google.protobuf;" +
		"proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7," +
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6," +
		"application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4," +
		"text/plain;version=0.0.4;q=0.3,*/*;q=0.2"},
	{"no Accept header", ""},
}

// negotiation is the kubelet's answer to one Accept header for round 1.
type negotiation struct {
	name, accept, contentType string
	sameBody                  bool // body identical to the text/plain one
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-fixtures:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("kubelet-fixtures", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write round*.txt and README.md into (created if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errors.New("usage: kubelet-fixtures -out DIR")
	}
	deps, err := moduleVersions()
	if err != nil {
		return err
	}
	pinKubeVersion(deps["k8s.io/kubernetes"])
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}

	rounds := scenario()
	bodies := make([][]byte, len(rounds))
	var negotiations []negotiation
	for i, r := range rounds {
		h := kubeletResourceHandler(&fakeSummaryProvider{summary: r.summary()})
		body, _, err := get(h, acceptHeaders[0].value)
		if err != nil {
			return fmt.Errorf("%s: %w", r.file, err)
		}
		bodies[i] = body
		if err := os.WriteFile(filepath.Join(*out, r.file), body, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", r.file, err)
		}
		if i == 0 {
			if negotiations, err = negotiate(h, body); err != nil {
				return err
			}
		}
	}

	readme, err := renderReadme(rounds, bodies, negotiations, deps)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "README.md"), readme, 0o644); err != nil {
		return fmt.Errorf("write README.md: %w", err)
	}
	return nil
}

// kubeletResourceHandler wires the collector the way the kubelet's
// server.InstallAuthNotRequiredHandlers does for /metrics/resource.
func kubeletResourceHandler(p *fakeSummaryProvider) http.Handler {
	reg := metrics.NewKubeRegistry()
	reg.CustomMustRegister(collectors.NewResourceMetricsCollector(p))
	return metrics.HandlerFor(reg, metrics.HandlerOpts{ErrorHandling: metrics.ContinueOnError})
}

// get serves one request without Accept-Encoding, so the body is never gzipped.
func get(h http.Handler, accept string) (body []byte, contentType string, err error) {
	req := httptest.NewRequest(http.MethodGet, "/metrics/resource", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, "", fmt.Errorf("GET /metrics/resource: status %d: %s", rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes(), rec.Header().Get("Content-Type"), nil
}

func negotiate(h http.Handler, textBody []byte) ([]negotiation, error) {
	var ns []negotiation
	for _, a := range acceptHeaders {
		body, ct, err := get(h, a.value)
		if err != nil {
			return nil, fmt.Errorf("accept %q: %w", a.value, err)
		}
		ns = append(ns, negotiation{name: a.name, accept: a.value, contentType: ct, sameBody: bytes.Equal(body, textBody)})
	}
	return ns, nil
}

// moduleVersions returns the versions this binary was built with, for the README and
// to know which kubelet release the output stands for.
func moduleVersions() (map[string]string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, errors.New("no build info; build with module support")
	}
	v := make(map[string]string, len(bi.Deps))
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		v[d.Path] = d.Version
	}
	if v["k8s.io/kubernetes"] == "" {
		return nil, errors.New("k8s.io/kubernetes missing from build info")
	}
	return v, nil
}

// pinKubeVersion makes component-base see the kubelet release instead of the
// "v0.0.0-master" that a build without -ldflags reports. The version decides which
// deprecated metrics are hidden (scrape_error, deprecated in 1.29, is hidden in 1.37),
// so without this the files would hold a family a real kubelet does not send.
// metrics.BuildVersion is component-base's own hook for exactly this.
func pinKubeVersion(gitVersion string) {
	major, minor, _ := strings.Cut(strings.TrimPrefix(gitVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	metrics.BuildVersion = func() apimachineryversion.Info {
		return apimachineryversion.Info{Major: major, Minor: minor, GitVersion: gitVersion}
	}
}
