// Package rulestest holds the fakes the rules engine's tests and its users'
// tests share.
package rulestest

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Mapper is a rules.ResourceMapper that knows a fixed set of resources,
// singular and plural: pods, namespaces, nodes, services, deployments,
// ingresses, and cheese.io's brands (a group no cluster has).
type Mapper struct{}

var resources = []struct{ group, plural, singular string }{
	{"", "pods", "pod"},
	{"", "namespaces", "namespace"},
	{"", "nodes", "node"},
	{"", "services", "service"},
	{"apps", "deployments", "deployment"},
	{"networking.k8s.io", "ingresses", "ingress"},
	{"cheese.io", "brands", "brand"},
}

// ResourceFor resolves a known resource, by either name, to its v1 plural.
func (Mapper) ResourceFor(in schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	for _, r := range resources {
		if (in.Group == "" || in.Group == r.group) && (in.Resource == r.plural || in.Resource == r.singular) {
			return schema.GroupVersionResource{Group: r.group, Version: "v1", Resource: r.plural}, nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("no matches for %v", in)
}

// ResourceSingularizer names a known resource in the singular.
func (Mapper) ResourceSingularizer(resource string) (string, error) {
	for _, r := range resources {
		if resource == r.plural || resource == r.singular {
			return r.singular, nil
		}
	}
	return "", fmt.Errorf("no singular of resource %q", resource)
}
