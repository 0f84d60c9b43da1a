package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
)

const checkOwner = "api-group-owner"

// apiService is the part of an APIService the checks read.
type apiService struct {
	name, group        string
	local              bool // no spec.service: kube-apiserver serves it itself
	svcNS, svcName     string
	available          bool
	reason             string
	availableMsg       string // the Available condition's message when not True
	hasAvailableStatus bool
}

func parseAPIService(u *unstructured.Unstructured) apiService {
	s := apiService{name: u.GetName()}
	s.group, _, _ = unstructured.NestedString(u.Object, "spec", "group")
	svc, found, _ := unstructured.NestedMap(u.Object, "spec", "service")
	if !found || svc == nil {
		s.local = true
	} else {
		s.svcNS, _, _ = unstructured.NestedString(svc, "namespace")
		s.svcName, _, _ = unstructured.NestedString(svc, "name")
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]interface{})
		if !ok || m["type"] != "Available" {
			continue
		}
		s.hasAvailableStatus = true
		s.available = m["status"] == "True"
		s.reason, _ = m["reason"].(string)
		if !s.available {
			s.availableMsg, _ = m["message"].(string)
		}
	}
	return s
}

func (s apiService) ours(o Options) bool {
	return !s.local && s.svcNS == o.Namespace && s.svcName == o.Service
}

// checkAPIServices gets each of the gateway's APIServices: it must exist,
// point at the gateway's Service and be Available. One pointing at another
// Service is left to checkOwners. It returns the APIServices it found for
// the checks that read their conditions.
func checkAPIServices(ctx context.Context, dyn dynamic.Interface, o Options) ([]apiService, []Result) {
	var (
		found []apiService
		rs    []Result
	)
	self := o.Namespace + "/" + o.Service
	for _, name := range o.APIServiceNames {
		check := "apiservice " + name
		u, err := dyn.Resource(certs.APIServiceResource).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			rs = append(rs, fail(check, "it does not exist",
				"apply it (kubectl apply -k manifests/base, or the overlay you installed), or leave it out of --apiservice-names"))
			continue
		}
		if err != nil {
			rs = append(rs, fail(check, fmt.Sprintf("cannot read it: %v", err),
				"run doctor as an identity that may get apiservices (the gateway's ServiceAccount may get its own, by name)"))
			continue
		}
		s := parseAPIService(u)
		found = append(found, s)
		switch {
		case s.local:
			rs = append(rs, fail(check, "it has no spec.service, so kube-apiserver answers it itself instead of the gateway",
				fmt.Sprintf("set spec.service to %s (kubectl apply -k manifests/base)", self)))
		case !s.ours(o):
			// checkOwners names the other server.
		case s.available:
			rs = append(rs, pass(check, ""))
		default:
			problem, fix := explainUnavailable(s, self)
			rs = append(rs, fail(check, problem, fix))
		}
	}
	return found, rs
}

// explainUnavailable turns an Available condition's reason and message into
// plain words. The reasons are kube-aggregator's availability controller's.
func explainUnavailable(s apiService, self string) (problem, fix string) {
	msg := s.availableMsg
	lower := strings.ToLower(msg)
	if !s.hasAvailableStatus {
		return "it has no Available condition yet: kube-aggregator has not checked it",
			"wait a few seconds and run doctor again; if it stays, read kube-apiserver's log for this APIService"
	}
	switch {
	case s.reason == "ServiceNotFound":
		return fmt.Sprintf("the Service %s does not exist", self),
			"apply manifests/base (kubectl apply -k manifests/base), or correct spec.service and --service"
	case s.reason == "ServicePortError":
		return "spec.service.port is not a port of the Service (" + msg + ")",
			"make spec.service.port (443 in manifests/base) match a port of the Service"
	case s.reason == "MissingEndpoints" || s.reason == "EndpointsNotFound":
		return fmt.Sprintf("the Service %s has no ready endpoints: no gateway pod is running and Ready", self),
			fmt.Sprintf("kubectl -n %s get pods -l app.kubernetes.io/name=metrics-gateway; read the pod's events, its log and /readyz", strings.SplitN(self, "/", 2)[0])
	case strings.Contains(lower, "x509"):
		return "kube-apiserver does not trust the gateway's serving certificate: spec.caBundle does not match it (" + msg + ")",
			"with --manage-serving-cert (the default) restart the gateway so it patches caBundle again and read its log; with your own certificates set spec.caBundle to the CA that signed --tls-cert-file"
	case containsAny(lower, "connection refused", "no route to host", "i/o timeout", "deadline exceeded", "connection reset", "dial tcp"):
		return "kube-apiserver cannot reach the gateway (" + msg + ")",
			"check that the gateway pod is Ready, that the Service's targetPort is the gateway's --secure-port, and that NetworkPolicies and firewalls let the control plane reach that pod port"
	case containsAny(lower, "401", "unauthorized"):
		return "the gateway rejected kube-apiserver's proxied request as unauthenticated: it does not accept kube-apiserver's proxy client certificate (" + msg + ")",
			"kube-apiserver's --proxy-client-cert-file must be signed by its --requestheader-client-ca-file and have a CN listed in --requestheader-allowed-names (see requestheader-allowed-names); the gateway reads both from kube-system/extension-apiserver-authentication (RoleBinding metrics-gateway-auth-reader in manifests/base/rbac.yaml)"
	case containsAny(lower, "403", "forbidden"):
		return "the gateway rejected kube-apiserver's proxied request: aggregation authentication or authorization failed (" + msg + ")",
			"bind the gateway's ServiceAccount to system:auth-delegator and, in kube-system, to extension-apiserver-authentication-reader (manifests/base/rbac.yaml), and see requestheader-allowed-names"
	case s.reason == "FailedDiscoveryCheck":
		return "kube-apiserver's discovery request to the gateway failed (" + msg + ")",
			"read the gateway's log and kube-apiserver's log around this APIService"
	default:
		return fmt.Sprintf("it is not Available: %s: %s", s.reason, msg),
			"read the gateway's log and kube-apiserver's log around this APIService"
	}
}

// checkOwners finds APIServices in the gateway's API groups served by
// another Service: the gateway's own (already fetched) and, when the caller
// may list APIServices, other versions of those groups.
func checkOwners(ctx context.Context, dyn dynamic.Interface, o Options, own []apiService) []Result {
	groups := map[string]bool{}
	named := map[string]bool{}
	for _, n := range o.APIServiceNames {
		named[n] = true
		if _, g, ok := strings.Cut(n, "."); ok {
			groups[g] = true
		}
	}
	candidates := append([]apiService(nil), own...)
	note := ""
	list, err := dyn.Resource(certs.APIServiceResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		note = fmt.Sprintf("only --apiservice-names checked, cannot list APIServices: %v", err)
	} else {
		for i := range list.Items {
			s := parseAPIService(&list.Items[i])
			if !named[s.name] && groups[s.group] {
				candidates = append(candidates, s)
			}
		}
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].name < candidates[j].name })
	var rs []Result
	self := o.Namespace + "/" + o.Service
	for _, s := range candidates {
		if s.local || s.ours(o) {
			continue
		}
		if s.reason == "ServiceNotFound" {
			rs = append(rs, fail(checkOwner+" "+s.name,
				fmt.Sprintf("APIService %s points at Service %s/%s, which does not exist, so every %s request fails", s.name, s.svcNS, s.svcName, s.group),
				fmt.Sprintf("point it at %s (kubectl apply -k manifests/base replaces it), or delete it if nothing should serve that version", self)))
			continue
		}
		rs = append(rs, fail(checkOwner+" "+s.name,
			fmt.Sprintf("APIService %s is served by %s/%s (%s), not by the gateway at %s", s.name, s.svcNS, s.svcName, guessOwner(s.svcName), self),
			fmt.Sprintf("delete it or point it at %s (kubectl apply -k manifests/base replaces it), or install the gateway with the custom-only or resource-metrics-only overlay so each server keeps its own groups", self)))
	}
	if len(rs) == 0 {
		return []Result{pass(checkOwner, note)}
	}
	return rs
}

func guessOwner(service string) string {
	s := strings.ToLower(service)
	switch {
	case strings.Contains(s, "metrics-server"):
		return "looks like metrics-server"
	case strings.Contains(s, "prometheus-adapter") || strings.Contains(s, "custom-metrics-apiserver"):
		return "looks like prometheus-adapter"
	case strings.Contains(s, "keda"):
		return "looks like KEDA's keda-operator-metrics-apiserver"
	default:
		return "unknown server"
	}
}
