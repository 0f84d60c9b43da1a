package doctor

import (
	"context"
	"fmt"
	"strings"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	authuser "k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
)

const (
	fixGatewayRole  = "apply the ClusterRole system:metrics-gateway and its ClusterRoleBinding to the gateway's ServiceAccount (manifests/base/rbac.yaml)"
	fixAuthDelegate = "bind the gateway's ServiceAccount to the ClusterRole system:auth-delegator (ClusterRoleBinding metrics-gateway:system:auth-delegator in manifests/base/rbac.yaml)"
	fixAuthReader   = "bind the gateway's ServiceAccount to the Role extension-apiserver-authentication-reader in kube-system (RoleBinding metrics-gateway-auth-reader in manifests/base/rbac.yaml)"
)

// permission is one thing the gateway does with the API server.
type permission struct {
	attrs authzv1.ResourceAttributes
	fix   string
}

func (p permission) check() string {
	a := p.attrs
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Name != "" {
		r += " " + a.Namespace + "/" + a.Name
	}
	return "rbac " + a.Verb + " " + r
}

// gatewayPermissions are the calls the gateway makes: discovery of nodes and
// pods and their kubelets, and delegated authentication and authorization.
// nodes/proxy is deliberately absent: the gateway must never need it.
var gatewayPermissions = []permission{
	{authzv1.ResourceAttributes{Verb: "list", Resource: "nodes"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "watch", Resource: "nodes"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "list", Resource: "pods"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "list", Resource: "namespaces"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "watch", Resource: "namespaces"}, fixGatewayRole},
	{authzv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, fixAuthDelegate},
	{authzv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, fixAuthDelegate},
	{authzv1.ResourceAttributes{Verb: "get", Resource: "configmaps", Namespace: authNamespace, Name: authConfigMap}, fixAuthReader},
}

// checkRBAC asks the API server whether the gateway may make each call: as
// the caller (SelfSubjectAccessReview, for doctor run in the gateway's pod)
// or as o.AsServiceAccount (SubjectAccessReview).
func checkRBAC(ctx context.Context, kube kubernetes.Interface, o Options) []Result {
	review, who, err := reviewer(kube, o.AsServiceAccount)
	if err != nil {
		return []Result{fail("rbac", err.Error(), "pass --as-serviceaccount as namespace/name")}
	}
	perms := gatewayPermissions
	var rs []Result
	if o.Kubelet != nil && o.Kubelet.Options.ServiceAccount != "" {
		// Kubelets get the read-only ServiceAccount's tokens: the gateway
		// requests them, and that account reads node metrics.
		perms, rs = kubeletAccountPermissions(ctx, kube, o.Kubelet.Options.ServiceAccount)
	}
	for _, p := range perms {
		attrs := p.attrs
		st, err := review(ctx, &attrs)
		switch {
		case err != nil:
			rs = append(rs, fail(p.check(), fmt.Sprintf("cannot ask the API server: %v", err),
				"run doctor as an identity that may create (self)subjectaccessreviews"))
		case !st.Allowed:
			problem := who + " may not " + strings.TrimPrefix(p.check(), "rbac ")
			if st.Reason != "" {
				problem += " (" + st.Reason + ")"
			}
			rs = append(rs, fail(p.check(), problem, p.fix))
		default:
			rs = append(rs, pass(p.check(), ""))
		}
	}
	return rs
}

// kubeletAccountPermissions are gatewayPermissions with nodes/metrics
// replaced by creating tokens of account, and the results of checking that
// account itself: it may get nodes/metrics, and may not update the serving
// Secret or patch an APIService (a node that records its token gains
// nothing else).
func kubeletAccountPermissions(ctx context.Context, kube kubernetes.Interface, account string) ([]permission, []Result) {
	ns, name, _ := strings.Cut(account, "/")
	const fixToken = "let the gateway's ServiceAccount create serviceaccounts/token of the kubelet ServiceAccount (Role system:metrics-gateway:kubelet-token in manifests/base/rbac-kubelet.yaml)"
	const fixReader = "bind the kubelet ServiceAccount to the ClusterRole system:metrics-gateway:kubelet-reader (manifests/base/rbac-kubelet.yaml)"
	var perms []permission
	for _, p := range gatewayPermissions {
		if p.attrs.Subresource == "metrics" {
			p = permission{authzv1.ResourceAttributes{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: ns, Name: name}, fixToken}
		}
		perms = append(perms, p)
	}
	review, who, err := reviewer(kube, account)
	if err != nil {
		return perms, []Result{fail("rbac kubelet-service-account", err.Error(), "pass --kubelet-service-account as namespace/name")}
	}
	var rs []Result
	for _, c := range []struct {
		attrs authzv1.ResourceAttributes
		want  bool
	}{
		{authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics"}, true},
		{authzv1.ResourceAttributes{Verb: "update", Resource: "secrets", Namespace: ns}, false},
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apiregistration.k8s.io", Resource: "apiservices"}, false},
	} {
		attrs := c.attrs
		check := "rbac kubelet-service-account " + strings.TrimPrefix(permission{attrs: attrs}.check(), "rbac ")
		st, err := review(ctx, &attrs)
		switch {
		case err != nil:
			rs = append(rs, fail(check, fmt.Sprintf("cannot ask the API server: %v", err), "run doctor as an identity that may create subjectaccessreviews"))
		case st.Allowed && !c.want:
			rs = append(rs, fail(check, who+" may "+attrs.Verb+" "+attrs.Resource+": kubelets receive its tokens, so a node could", "give the kubelet ServiceAccount get on nodes/metrics and nothing else"))
		case !st.Allowed && c.want:
			rs = append(rs, fail(check, who+" may not get nodes/metrics: kubelets will answer 403", fixReader))
		default:
			rs = append(rs, pass(check, ""))
		}
	}
	return perms, rs
}

type reviewFunc func(context.Context, *authzv1.ResourceAttributes) (authzv1.SubjectAccessReviewStatus, error)

func reviewer(kube kubernetes.Interface, asSA string) (reviewFunc, string, error) {
	if asSA == "" {
		return func(ctx context.Context, a *authzv1.ResourceAttributes) (authzv1.SubjectAccessReviewStatus, error) {
			r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
				&authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: a}}, metav1.CreateOptions{})
			if err != nil {
				return authzv1.SubjectAccessReviewStatus{}, err
			}
			return r.Status, nil
		}, "the caller", nil
	}
	ns, name, ok := strings.Cut(asSA, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, "", fmt.Errorf("--as-serviceaccount %q is not namespace/name", asSA)
	}
	user := serviceaccount.MakeUsername(ns, name)
	groups := append(serviceaccount.MakeGroupNames(ns), authuser.AllAuthenticated)
	return func(ctx context.Context, a *authzv1.ResourceAttributes) (authzv1.SubjectAccessReviewStatus, error) {
		r, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx,
			&authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: a}}, metav1.CreateOptions{})
		if err != nil {
			return authzv1.SubjectAccessReviewStatus{}, err
		}
		return r.Status, nil
	}, user, nil
}
