package server

import (
	"net/http"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// anonymousPaths are the only paths served to requests without
// credentials: the kubelet's probes.
var anonymousPaths = []string{"/livez", "/readyz", "/healthz"}

// anonymousOnlyFor makes a request without credentials unauthenticated (a
// 401) everywhere but paths, instead of system:anonymous (a 403 after an
// authorization round trip). DelegatingAuthenticationOptions has an
// Anonymous field with path conditions, but its ApplyTo (k8s.io/apiserver
// v0.37) always enables anonymous for every path, so the restriction is
// applied to the authenticator it builds.
func anonymousOnlyFor(a authenticator.Request, paths ...string) authenticator.Request {
	if a == nil {
		return nil
	}
	allowed := map[string]bool{}
	for _, p := range paths {
		allowed[p] = true
	}
	return authenticator.RequestFunc(func(r *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := a.AuthenticateRequest(r)
		if ok && resp != nil && resp.User.GetName() == user.Anonymous && !allowed[r.URL.Path] {
			return nil, false, nil
		}
		return resp, ok, err
	})
}
