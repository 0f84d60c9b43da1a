package custom

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// KindMapper resolves a resource to its kind; a meta.RESTMapper is one.
// When the provider's mapper is not, describedKind falls back to
// builtinKinds, which covers the resources custom metrics usually describe.
type KindMapper interface {
	KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error)
}

var builtinKinds = map[schema.GroupResource]schema.GroupVersionKind{
	{Resource: "pods"}:                                  {Version: "v1", Kind: "Pod"},
	{Resource: "namespaces"}:                            {Version: "v1", Kind: "Namespace"},
	{Resource: "nodes"}:                                 {Version: "v1", Kind: "Node"},
	{Resource: "services"}:                              {Version: "v1", Kind: "Service"},
	{Resource: "persistentvolumeclaims"}:                {Version: "v1", Kind: "PersistentVolumeClaim"},
	{Resource: "persistentvolumes"}:                     {Version: "v1", Kind: "PersistentVolume"},
	{Group: "apps", Resource: "deployments"}:            {Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Resource: "statefulsets"}:           {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Resource: "daemonsets"}:             {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	{Group: "apps", Resource: "replicasets"}:            {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	{Group: "batch", Resource: "jobs"}:                  {Group: "batch", Version: "v1", Kind: "Job"},
	{Group: "networking.k8s.io", Resource: "ingresses"}: {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
}

// describedKind returns the kind and apiVersion of a group-resource, empty
// when neither the mapper nor the table knows it: the object reference is
// still useful to clients by name.
func describedKind(m any, gr schema.GroupResource) (kind, apiVersion string) {
	if km, ok := m.(KindMapper); ok {
		if gvk, err := km.KindFor(gr.WithVersion("")); err == nil {
			return gvk.Kind, gvk.GroupVersion().String()
		}
	}
	if gvk, ok := builtinKinds[gr]; ok {
		return gvk.Kind, gvk.GroupVersion().String()
	}
	return "", ""
}
