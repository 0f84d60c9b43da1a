package server

import (
	"context"
	"net/http"
	"strings"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/mux"

	"github.com/metrics-gateway/metrics-gateway/pkg/query"
	"github.com/metrics-gateway/metrics-gateway/pkg/web"
)

// PrometheusPrefix is where the secure port serves the Prometheus API:
// PrometheusPrefix + "/api/v1/query", and so on. A Grafana datasource or a
// client_golang Address is https://<gateway>/prometheus.
//
// Not /api/v1 itself: on a Kubernetes-authorized server that path is a
// non-resource URL that the default RBAC role system:discovery grants
// (get /api/*) to every authenticated user, so any ServiceAccount could
// read all stored metrics. Under its own prefix it needs its own rule,
// nonResourceURLs ["/prometheus/api/v1/*"] with get and post.
const PrometheusPrefix = "/prometheus"

// mountQueryAPI serves the query API under PrometheusPrefix behind the
// server's delegated authn/authz, and answers the bare /api/v1/ with a
// pointer to it.
func mountQueryAPI(mux *mux.PathRecorderMux, h http.Handler) {
	mux.HandlePrefix(PrometheusPrefix+query.Prefix+"/", http.StripPrefix(PrometheusPrefix, h))
	mux.HandlePrefix(query.Prefix+"/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		query.WriteError(w, http.StatusNotFound, "not_found", "the Prometheus API is served under "+PrometheusPrefix+query.Prefix+"/ on this port")
	}))
}

// mountPages serves the autoscaling page and the explain endpoint (pkg/web)
// behind the server's delegated authn/authz.
func mountPages(mux *mux.PathRecorderMux, h http.Handler) {
	mux.Handle(web.UIPrefix, h)
	mux.HandlePrefix(web.UIPrefix+"/", h)
	mux.HandlePrefix(web.ExplainPrefix, h)
}

// insecureQueryMux is the plain-HTTP loopback listener's handler: no
// authorization applies there, so the API is also at the root, as a
// port-forwarded Prometheus would be; pages, when not nil, are the
// autoscaling page and explain endpoint.
func insecureQueryMux(h, pages http.Handler) http.Handler {
	m := http.NewServeMux()
	m.Handle(PrometheusPrefix+query.Prefix+"/", http.StripPrefix(PrometheusPrefix, h))
	m.Handle(query.Prefix+"/", h)
	if pages != nil {
		m.Handle(web.UIPrefix, pages)
		m.Handle(web.UIPrefix+"/", pages)
		m.Handle(web.ExplainPrefix, pages)
	}
	return loopbackHostOnly(m)
}

type promTimeoutKey struct{}

// withPrometheusTimeout keeps the Prometheus API's own timeout parameter
// away from the apiserver's handler chain. Both use ?timeout=: the chain
// would set it as the request deadline and race the engine, answering a
// Kubernetes 504 Status instead of Prometheus' 503 "timeout". The value is
// carried past the chain in the context and put back for the API.
func withPrometheusTimeout(build func(http.Handler, *genericapiserver.Config) http.Handler) func(http.Handler, *genericapiserver.Config) http.Handler {
	if build == nil {
		build = genericapiserver.DefaultBuildHandlerChain
	}
	return func(api http.Handler, c *genericapiserver.Config) http.Handler {
		restore := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if v, ok := r.Context().Value(promTimeoutKey{}).(string); ok {
				r = r.Clone(r.Context())
				q := r.URL.Query()
				q.Set("timeout", v)
				r.URL.RawQuery = q.Encode()
			}
			api.ServeHTTP(w, r)
		})
		chain := build(restore, c)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, PrometheusPrefix+query.Prefix+"/") {
				if q := r.URL.Query(); q.Has("timeout") {
					v := q.Get("timeout")
					q.Del("timeout")
					r = r.Clone(context.WithValue(r.Context(), promTimeoutKey{}, v))
					r.URL.RawQuery = q.Encode()
				}
			}
			chain.ServeHTTP(w, r)
		})
	}
}
