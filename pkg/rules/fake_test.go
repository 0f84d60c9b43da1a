package rules

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeMapper knows a handful of resources, enough to exercise singular and
// plural names, an empty group matching any group (as a discovery-backed
// RESTMapper does) and unknown labels.
type fakeMapper struct{}

var _ ResourceMapper = fakeMapper{}

type fakeResource struct{ group, plural, singular string }

var fakeResources = []fakeResource{
	{"", "pods", "pod"},
	{"", "namespaces", "namespace"},
	{"", "nodes", "node"},
	{"", "services", "service"},
	{"apps", "deployments", "deployment"},
	{"networking.k8s.io", "ingresses", "ingress"},
	{"cheese.io", "brands", "brand"},
}

func (fakeMapper) ResourceFor(in schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	for _, r := range fakeResources {
		if (in.Group == "" || in.Group == r.group) && (in.Resource == r.plural || in.Resource == r.singular) {
			return schema.GroupVersionResource{Group: r.group, Version: "v1", Resource: r.plural}, nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("no matches for %v", in)
}

func (fakeMapper) ResourceSingularizer(resource string) (string, error) {
	for _, r := range fakeResources {
		if resource == r.plural || resource == r.singular {
			return r.singular, nil
		}
	}
	return "", fmt.Errorf("no singular of resource %q", resource)
}
