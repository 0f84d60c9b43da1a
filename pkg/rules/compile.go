package rules

import (
	"errors"
	"fmt"
	"time"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Rules is a compiled Config.
type Rules struct {
	// Custom serve custom.metrics.k8s.io, External external.metrics.k8s.io,
	// in config order.
	Custom   []*Rule
	External []*Rule
	// CPU and Memory are nil when the config has no resourceRules.
	CPU, Memory *ResourceQuery
	Window      time.Duration
}

// Compile validates cfg (unless its Validate already passed) and compiles
// every rule, normalizing resources through mapper. Validation problems are all reported, joined.
func Compile(cfg *Config, mapper ResourceMapper) (*Rules, error) {
	if !cfg.validated {
		if errs := cfg.Validate(); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	out := &Rules{}
	for i, rc := range cfg.Rules {
		r, err := NewRule(rc, mapper)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
		out.Custom = append(out.Custom, r)
	}
	for i, rc := range cfg.ExternalRules {
		r, err := NewRule(rc, mapper)
		if err != nil {
			return nil, fmt.Errorf("externalRules[%d]: %w", i, err)
		}
		out.External = append(out.External, r)
	}
	if rr := cfg.ResourceRules; rr != nil {
		var err error
		if out.CPU, err = NewResourceQuery(rr.CPU, mapper); err != nil {
			return nil, fmt.Errorf("resourceRules.cpu: %w", err)
		}
		if out.Memory, err = NewResourceQuery(rr.Memory, mapper); err != nil {
			return nil, fmt.Errorf("resourceRules.memory: %w", err)
		}
		out.Window = time.Duration(rr.Window)
	}
	return out, nil
}

// ResourceQuery is a compiled ResourceRule.
type ResourceQuery struct {
	container, node *queryBuilder
	containerLabel  string
}

// NewResourceQuery compiles one resource rule.
func NewResourceQuery(rr ResourceRule, mapper ResourceMapper) (*ResourceQuery, error) {
	conv, err := NewResourceConverter(rr.Resources, mapper)
	if err != nil {
		return nil, err
	}
	ct, err := NewQueryTemplate(rr.ContainerQuery)
	if err != nil {
		return nil, fmt.Errorf("containerQuery: %w", err)
	}
	nt, err := NewQueryTemplate(rr.NodeQuery)
	if err != nil {
		return nil, fmt.Errorf("nodeQuery: %w", err)
	}
	return &ResourceQuery{
		container:      &queryBuilder{tmpl: ct, conv: conv},
		node:           &queryBuilder{tmpl: nt, conv: conv},
		containerLabel: rr.ContainerLabel,
	}, nil
}

var (
	podResource  = schema.GroupResource{Resource: "pods"}
	nodeResource = schema.GroupResource{Resource: "nodes"}
)

// ContainerQuery renders the per-container query for pods of a namespace,
// grouped by pod label and containerLabel, as the adapter's resource
// provider asks for it.
func (q *ResourceQuery) ContainerQuery(namespace string, pods ...string) (string, error) {
	return q.container.build("", podResource, namespace, []string{q.containerLabel}, k8slabels.Everything(), pods...)
}

// NodeQuery renders the per-node query for the given nodes.
func (q *ResourceQuery) NodeQuery(nodes ...string) (string, error) {
	return q.node.build("", nodeResource, "", nil, k8slabels.Everything(), nodes...)
}

// PodLabel returns the label naming the pod in ContainerQuery's results,
// by which a caller matches answers back to the pods it asked for.
func (q *ResourceQuery) PodLabel() (string, error) {
	return q.container.conv.LabelForResource(podResource)
}

// NodeLabel returns the label naming the node in NodeQuery's results.
func (q *ResourceQuery) NodeLabel() (string, error) {
	return q.node.conv.LabelForResource(nodeResource)
}

// ContainerLabel returns the label naming the container in ContainerQuery's
// results.
func (q *ResourceQuery) ContainerLabel() string { return q.containerLabel }
