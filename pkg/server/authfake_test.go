package server

import (
	"encoding/json"
	"net/http"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
)

// Users of the fake TokenReview: the token is the user name. "reader" may
// get and post /prometheus/api/v1/* and get /ui/* (the role
// metrics-gateway:query-api-reader; and, as Kubernetes' system:discovery
// role lets every authenticated user, get /api/*); "nobody" is authenticated and may do nothing;
// any other token is invalid.
const (
	readerToken = "reader"
	nobodyToken = "nobody"
)

// review answers TokenReview and SubjectAccessReview as a kube-apiserver
// does for delegated authn/authz, and reports whether it handled r.
func (f *fakeAPIServer) review(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/apis/authentication.k8s.io/v1/tokenreviews":
		var tr authnv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return true
		}
		switch tr.Spec.Token {
		case readerToken, nobodyToken:
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: tr.Spec.Token}}
		default:
			tr.Status = authnv1.TokenReviewStatus{Authenticated: false, Error: "invalid token"}
		}
		writeJSON(w, tr)
		return true
	case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		var sar authzv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return true
		}
		f.mu.Lock()
		f.reviews = append(f.reviews, sar.Spec)
		f.mu.Unlock()
		// As RBAC with the default system:discovery role (get /api/* for
		// every authenticated user), which is why the query API is not at
		// /api/v1, and for reader nonResourceURLs ["/prometheus/api/v1/*"]
		// with get and post.
		nr := sar.Spec.NonResourceAttributes
		discovery := nr != nil && strings.HasPrefix(nr.Path, "/api/") && nr.Verb == "get"
		query := sar.Spec.User == readerToken && nr != nil && strings.HasPrefix(nr.Path, "/prometheus/api/v1/") && (nr.Verb == "get" || nr.Verb == "post")
		pages := sar.Spec.User == readerToken && nr != nil && strings.HasPrefix(nr.Path, "/ui/") && nr.Verb == "get"
		allowed := discovery || query || pages
		sar.Status = authzv1.SubjectAccessReviewStatus{Allowed: allowed}
		writeJSON(w, sar)
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
