package server

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// slim is the transform of every informer the gateway runs: it drops what
// no reader of the caches uses before the object is stored. Managed fields
// are most of a small object's metadata (at 7,000 pods they held more of
// the pods' cache than the rest of the metadata); a node's image list can
// be tens of kilobytes. Objects it does not know, tombstones included, pass
// through unchanged.
func slim(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil && a.GetManagedFields() != nil {
		a.SetManagedFields(nil)
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	return obj, nil
}
