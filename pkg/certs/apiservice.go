package certs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultAPIServiceNames are the gateway's APIServices, as manifests/base
// registers them.
var DefaultAPIServiceNames = []string{
	"v1.metrics.k8s.io",
	"v1beta1.metrics.k8s.io",
	"v1beta1.custom.metrics.k8s.io",
	"v1beta2.custom.metrics.k8s.io",
	"v1beta1.external.metrics.k8s.io",
}

// APIServiceResource is what Options.APIServices is asked for.
var APIServiceResource = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// patchAPIServices sets spec.caBundle of each named APIService to bundle.
// An APIService that does not exist (its overlay is not installed) or points
// at another Service (another server owns the group) is skipped: patching
// the latter would break that server.
func (m *Manager) patchAPIServices(ctx context.Context, bundle []byte) error {
	var errs []error
	for _, name := range m.o.APIServiceNames {
		if err := m.patchAPIService(ctx, name, bundle); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) patchAPIService(ctx context.Context, name string, bundle []byte) error {
	client := m.o.APIServices.Resource(APIServiceResource)
	svc, err := client.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		m.skip(name, "APIService not found; its caBundle is set once it exists")
		return nil
	}
	if err != nil {
		return fmt.Errorf("get APIService %s: %w", name, err)
	}
	ns, _, _ := unstructured.NestedString(svc.Object, "spec", "service", "namespace")
	svcName, _, _ := unstructured.NestedString(svc.Object, "spec", "service", "name")
	if ns != m.o.Namespace || svcName != m.o.ServiceName {
		m.skip(name, "APIService points at another Service; its caBundle is left alone", "service", ns+"/"+svcName)
		return nil
	}
	delete(m.skipped, name)

	want := base64.StdEncoding.EncodeToString(bundle)
	have, _, _ := unstructured.NestedString(svc.Object, "spec", "caBundle")
	insecure, _, _ := unstructured.NestedBool(svc.Object, "spec", "insecureSkipTLSVerify")
	if have == want && !insecure {
		return nil
	}
	// The API server rejects a caBundle together with
	// insecureSkipTLSVerify: true, and once the gateway can be verified
	// there is no reason to skip it: both go in one patch.
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{
		"caBundle":              want,
		"insecureSkipTLSVerify": false,
	}})
	if err != nil {
		return err
	}
	if _, err := client.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: ManagedByValue}); err != nil {
		return fmt.Errorf("patch caBundle of APIService %s: %w", name, err)
	}
	m.o.Logger.Info("Set caBundle of APIService", "apiService", name, "wasInsecureSkipTLSVerify", insecure)
	return nil
}

// skip logs why an APIService is skipped, once until that changes.
func (m *Manager) skip(name, msg string, kv ...any) {
	if m.skipped[name] == msg {
		return
	}
	m.skipped[name] = msg
	m.o.Logger.Info(msg, append([]any{"apiService", name}, kv...)...)
}
