// Command dashcheck runs every PromQL expression of the shipped Grafana
// dashboards against a live gateway's query API, as Grafana would, and
// fails when one returns no data: an empty panel. The end-to-end suite runs
// it against its cluster's gateway with a ServiceAccount token bound only to
// the query API's RBAC rule.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/metrics-gateway/metrics-gateway/manifests/grafana"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dashcheck:", err)
		os.Exit(1)
	}
}

type varsFlag map[string]string

func (v varsFlag) String() string { return fmt.Sprint(map[string]string(v)) }
func (v varsFlag) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	v[k] = val
	return nil
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dashcheck", flag.ContinueOnError)
	url := fs.String("url", "", "Base URL of the gateway's query API, as a Grafana datasource URL (https://host:port/prometheus).")
	tokenFile := fs.String("token-file", "", "File holding a bearer token.")
	caFile := fs.String("ca-file", "", "CA that signed the gateway's serving certificate.")
	serverName := fs.String("server-name", "", "Name to verify the serving certificate against, when the URL's host is not in it.")
	skipTags := fs.String("skip-tags", "", "Comma-separated dashboard tags to skip (e.g. cadvisor when it is off).")
	wait := fs.Duration("wait", time.Minute, "Retry expressions without data until this long has passed.")
	vars := varsFlag{}
	fs.Var(vars, "var", "Dashboard variable as name=value; repeatable.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("-url is required")
	}
	api, err := client(*url, *tokenFile, *caFile, *serverName)
	if err != nil {
		return err
	}
	exprs, err := grafana.Expressions(vars)
	if err != nil {
		return err
	}
	skip := strings.Split(*skipTags, ",")
	var todo []grafana.Expr
	for _, e := range exprs {
		if !slices.ContainsFunc(e.Tags, func(t string) bool { return t != "" && slices.Contains(skip, t) }) {
			todo = append(todo, e)
		}
	}
	total := len(todo)
	if total == 0 {
		return errors.New("no expressions to check: every dashboard was skipped")
	}
	deadline := time.Now().Add(*wait)
	for {
		var empty []grafana.Expr
		var reasons []string
		for _, e := range todo {
			n, err := series(api, e.Expr)
			if err != nil || n == 0 {
				empty = append(empty, e)
				reasons = append(reasons, fmt.Sprint(err))
				continue
			}
			fmt.Fprintf(out, "ok     %4d series  %s\n", n, name(e))
		}
		if len(empty) == 0 {
			fmt.Fprintf(out, "all %d expressions returned data\n", total)
			return nil
		}
		if time.Now().After(deadline) {
			for i, e := range empty {
				fmt.Fprintf(out, "EMPTY  %s: %s (%s)\n", name(e), e.Expr, reasons[i])
			}
			return fmt.Errorf("%d of %d expressions returned no data", len(empty), total)
		}
		todo = empty
		time.Sleep(5 * time.Second)
	}
}

func name(e grafana.Expr) string {
	if e.Variable != "" {
		return fmt.Sprintf("%s / variable %s", e.Dashboard, e.Variable)
	}
	return fmt.Sprintf("%s / %s [%s]", e.Dashboard, e.Panel, e.RefID)
}

// series counts the series of an instant query that have a number.
func series(api promv1.API, expr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, _, _, err := api.Query(ctx, expr, time.Now())
	if err != nil {
		return 0, err
	}
	n := 0
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			if !math.IsNaN(float64(s.Value)) {
				n++
			}
		}
	case *model.Scalar:
		if !math.IsNaN(float64(v.Value)) {
			n = 1
		}
	case model.Matrix:
		n = len(v)
	}
	return n, nil
}

func client(url, tokenFile, caFile, serverName string) (promv1.API, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
	}
	var rt http.RoundTripper = &http.Transport{TLSClientConfig: tlsConfig}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		rt = bearer{token: strings.TrimSpace(string(b)), next: rt}
	}
	c, err := promapi.NewClient(promapi.Config{Address: url, RoundTripper: rt})
	if err != nil {
		return nil, err
	}
	return promv1.NewAPI(c), nil
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
