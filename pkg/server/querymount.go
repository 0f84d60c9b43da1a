package server

import (
	"context"
	"net/http"
	"strings"

	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/metrics-gateway/metrics-gateway/pkg/query"
)

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
			if strings.HasPrefix(r.URL.Path, query.Prefix+"/") {
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
