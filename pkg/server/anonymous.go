package server

import (
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// anonymousOnlyFor makes a request without credentials unauthenticated (a
// 401) everywhere but paths, instead of system:anonymous (a 403 after an
// authorization round trip). paths are --authorization-always-allow-paths
// (by default /healthz, /readyz, /livez, for the kubelet's probes), with
// their trailing-* prefix form. DelegatingAuthenticationOptions has an
// Anonymous field with path conditions, but its ApplyTo (k8s.io/apiserver
// v0.37) always enables anonymous for every path, so the restriction is
// applied to the authenticator it builds.
func anonymousOnlyFor(a authenticator.Request, paths ...string) authenticator.Request {
	if a == nil {
		return nil
	}
	exact := map[string]bool{}
	var prefixes []string
	for _, p := range paths {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			prefixes = append(prefixes, pre)
		} else {
			exact[p] = true
		}
	}
	allowed := func(path string) bool {
		if exact[path] {
			return true
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(path, pre) {
				return true
			}
		}
		return false
	}
	return authenticator.RequestFunc(func(r *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := a.AuthenticateRequest(r)
		if ok && resp != nil && resp.User.GetName() == user.Anonymous && !allowed(r.URL.Path) {
			return nil, false, nil
		}
		return resp, ok, err
	})
}
