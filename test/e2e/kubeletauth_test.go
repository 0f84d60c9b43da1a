package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// testKubeletLeastPrivilege: what the simulated kubelets received from the
// gateway (recorded as a kubelet in webhook mode reviews it) authenticates
// as the read-only kubelet ServiceAccount, which may get nodes/metrics and
// may not update the serving-certificate Secret or patch an APIService,
// while the gateway's own account may: a node that kept the token could not
// take over the HPAs.
func testKubeletLeastPrivilege(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ns, name, _ := strings.Cut(env.KubeletServiceAccount, "/")
	kubeletUser := "system:serviceaccount:" + ns + ":" + name
	gatewayUser := "system:serviceaccount:kube-system:" + env.GatewayServiceAccount
	var seen int
	eventually(t, 2*e.Resolution, "kubelets received a reviewed token", func() error {
		tokens, err := e.KubeletTokens(ctx)
		if err != nil {
			return err
		}
		if seen = len(tokens); seen == 0 {
			return fmt.Errorf("no bearer token reviewed yet")
		}
		return nil
	})
	tokens, err := e.KubeletTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []authzv1.ResourceAttributes{
		{Verb: "update", Resource: "secrets", Namespace: "kube-system", Name: "metrics-gateway-serving-cert"},
		{Verb: "get", Resource: "secrets", Namespace: "kube-system", Name: "metrics-gateway-serving-cert"},
		{Verb: "patch", Group: "apiregistration.k8s.io", Resource: "apiservices", Name: "v1beta1.metrics.k8s.io"},
		{Verb: "list", Resource: "pods"},
		{Verb: "get", Resource: "nodes", Subresource: "proxy"},
	}
	for _, tok := range tokens {
		tr, err := e.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok.Token}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u := tr.Status.User
		t.Logf("a kubelet received a token of %s (%d requests, allowed %v)", u.Username, tok.Requests, tok.Allowed)
		if !tr.Status.Authenticated || u.Username != kubeletUser {
			t.Errorf("a kubelet received a token of %q (authenticated %v), want %s only", u.Username, tr.Status.Authenticated, kubeletUser)
			continue
		}
		if !tok.Allowed {
			t.Errorf("the kubelet token was refused nodes/metrics")
		}
		for _, a := range forbidden {
			if allowed(ctx, t, u.Username, u.Groups, a) {
				t.Errorf("%s may %s %s/%s %s: a node holding its token could", u.Username, a.Verb, a.Resource, a.Subresource, a.Name)
			}
		}
	}
	// The gateway's own account may do the first and third: this is why it
	// must not be what kubelets receive, and it shows the check can fail.
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
	for _, a := range []authzv1.ResourceAttributes{forbidden[0], forbidden[2]} {
		if !allowed(ctx, t, gatewayUser, groups, a) {
			t.Errorf("%s may not %s %s %s: the comparison proves nothing", gatewayUser, a.Verb, a.Resource, a.Name)
		}
	}
}

func allowed(ctx context.Context, t *testing.T, user string, groups []string, a authzv1.ResourceAttributes) bool {
	t.Helper()
	sar, err := e.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: user, Groups: groups, ResourceAttributes: &a,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}
