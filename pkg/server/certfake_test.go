package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// certObjects serves what the self-managed serving certificate reads and
// writes: Secrets (get, create, update with resourceVersion checks) and
// APIServices (get, merge patch of caBundle and insecureSkipTLSVerify).
// It reports whether it handled r.
func (f *fakeAPIServer) certObjects(w http.ResponseWriter, r *http.Request) bool {
	const secrets, apiservices = "/api/v1/namespaces/", "/apis/apiregistration.k8s.io/v1/apiservices/"
	switch {
	case strings.HasPrefix(r.URL.Path, secrets) && strings.Contains(r.URL.Path, "/secrets"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, secrets), "/") // ns, "secrets"[, name]
		f.secret(w, r, parts)
		return true
	case strings.HasPrefix(r.URL.Path, apiservices):
		f.apiService(w, r, strings.TrimPrefix(r.URL.Path, apiservices))
		return true
	}
	return false
}

func (f *fakeAPIServer) secret(w http.ResponseWriter, r *http.Request, parts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.secrets == nil {
		f.secrets = map[string]corev1.Secret{}
	}
	status := func(code int, reason metav1.StatusReason) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Reason: reason, Code: int32(code)})
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 3:
		s, ok := f.secrets[parts[0]+"/"+parts[2]]
		if !ok {
			status(http.StatusNotFound, metav1.StatusReasonNotFound)
			return
		}
		writeJSON(w, s)
	case r.Method == http.MethodPost && len(parts) == 2, r.Method == http.MethodPut && len(parts) == 3:
		var s corev1.Secret
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key := parts[0] + "/" + s.Name
		old, exists := f.secrets[key]
		if r.Method == http.MethodPost && exists {
			status(http.StatusConflict, metav1.StatusReasonAlreadyExists)
			return
		}
		if r.Method == http.MethodPut && (!exists || old.ResourceVersion != s.ResourceVersion) {
			status(http.StatusConflict, metav1.StatusReasonConflict)
			return
		}
		f.rv++
		s.Namespace, s.ResourceVersion = parts[0], strconv.Itoa(f.rv)
		s.APIVersion, s.Kind = "v1", "Secret"
		f.secrets[key] = s
		f.secretWrites++
		writeJSON(w, s)
	default:
		http.Error(w, fmt.Sprintf("%s %s not faked", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
	}
}

func (f *fakeAPIServer) apiService(w http.ResponseWriter, r *http.Request, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, ok := f.apiServices[name]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound})
		return
	}
	if r.Method == http.MethodPatch {
		var patch struct {
			Spec map[string]any `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spec := svc["spec"].(map[string]any)
		for k, v := range patch.Spec {
			spec[k] = v
		}
	}
	writeJSON(w, svc)
}

// addAPIService registers an APIService pointing at namespace/service.
func (f *fakeAPIServer) addAPIService(name, namespace, service string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.apiServices == nil {
		f.apiServices = map[string]map[string]any{}
	}
	f.apiServices[name] = map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": name, "resourceVersion": "1"},
		"spec": map[string]any{
			"service":               map[string]any{"namespace": namespace, "name": service, "port": 443},
			"insecureSkipTLSVerify": true,
			"groupPriorityMinimum":  100, "versionPriority": 100,
		},
	}
}

func (f *fakeAPIServer) apiServiceSpec(name string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apiServices[name]["spec"].(map[string]any)
}
