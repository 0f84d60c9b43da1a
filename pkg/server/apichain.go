package server

import (
	"fmt"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
)

// What the gateway adds to the generic API server around the custom and
// external metrics APIs: their aggregated discovery and selector checks.

// addAggregatedDiscovery lists the custom and external groups in the
// aggregated /apis document. custom-metrics-apiserver registers them only
// in legacy discovery; once metrics.k8s.io makes the server answer /apis
// in aggregated form, kube-aggregator and client-go (the HPA controller
// included) read that form alone and would not see these groups. Their
// resources are the discovered metrics, which change every scrape, so the
// versions are listed without resources: clients read the metric list from
// the legacy per-version document, which stays dynamic.
func addAggregatedDiscovery(gs *genericapiserver.GenericAPIServer) {
	for _, gv := range []schema.GroupVersion{
		{Group: custom_metrics.GroupName, Version: "v1beta2"},
		{Group: custom_metrics.GroupName, Version: "v1beta1"},
		{Group: external_metrics.GroupName, Version: "v1beta1"},
	} {
		gs.AggregatedDiscoveryGroupManager.AddGroupVersion(gv.Group, apidiscoveryv2.APIVersionDiscovery{
			Version:   gv.Version,
			Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
			Resources: []apidiscoveryv2.APIResourceDiscovery{},
		})
	}
}

// the request was wrong. The check runs inside the handler chain, after
// authentication and authorization, so it reveals nothing to strangers.
func withSelectorValidation(build func(http.Handler, *genericapiserver.Config) http.Handler) func(http.Handler, *genericapiserver.Config) http.Handler {
	if build == nil {
		build = genericapiserver.DefaultBuildHandlerChain
	}
	return func(api http.Handler, c *genericapiserver.Config) http.Handler {
		checked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/apis/"+custom_metrics.GroupName+"/") || strings.HasPrefix(r.URL.Path, "/apis/"+external_metrics.GroupName+"/") {
				q := r.URL.Query()
				for _, param := range []string{"labelSelector", "metricLabelSelector"} {
					if _, err := labels.Parse(q.Get(param)); err != nil {
						status := apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q: %v", param, q.Get(param), err))
						responsewriters.ErrorNegotiated(status, c.Serializer, schema.GroupVersion{}, w, r)
						return
					}
				}
			}
			api.ServeHTTP(w, r)
		})
		return build(checked, c)
	}
}
