package rules

import (
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestLabelForResource(t *testing.T) {
	conv, err := NewResourceConverter(ResourceMapping{
		Template: "kube_<<.Group>>_<<.Resource>>",
		Overrides: map[string]GroupResource{
			"microservice":   {Group: "apps", Resource: "deployment"},
			"kube_namespace": {Resource: "namespaces"},
		},
	}, fakeMapper{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		gr   schema.GroupResource
		want string
		err  string
	}{
		{gr: schema.GroupResource{Group: "apps", Resource: "deployments"}, want: "microservice"},
		{gr: namespaceResource, want: "kube_namespace"},
		// Dots and dashes of the group become underscores, the resource
		// is singular; the core group renders empty, as in the adapter.
		{gr: schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}, want: "kube_networking_k8s_io_ingress"},
		{gr: schema.GroupResource{Resource: "pods"}, want: "kube__pod"},
		{gr: schema.GroupResource{Resource: "widgets"}, err: `convert resource widgets into label: singularize: no singular of resource "widgets"`},
	}
	for _, tt := range tests {
		t.Run(tt.gr.String(), func(t *testing.T) {
			got, err := conv.LabelForResource(tt.gr)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LabelForResource = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLabelForResourceWithoutTemplate(t *testing.T) {
	conv, err := NewResourceConverter(ResourceMapping{Overrides: map[string]GroupResource{"pod": {Resource: "pod"}}}, fakeMapper{})
	if err != nil {
		t.Fatal(err)
	}
	if lbl, err := conv.LabelForResource(schema.GroupResource{Resource: "pods"}); err != nil || lbl != "pod" {
		t.Fatalf("override: %q, %v", lbl, err)
	}
	_, err = conv.LabelForResource(namespaceResource)
	if err == nil || !strings.Contains(err.Error(), "no generic resource label form specified") {
		t.Fatalf("error = %v, want no generic form", err)
	}
}

func TestResourcesForSeries(t *testing.T) {
	dep := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		name       string
		mapping    ResourceMapping
		series     labels.Labels
		want       []schema.GroupResource
		namespaced bool
	}{
		{
			name:    "adapter default template",
			mapping: ResourceMapping{Template: "<<.Resource>>"},
			series: labels.FromStrings("__name__", "http_requests_total", "instance", "10.0.0.1:80",
				"job", "app", "namespace", "default", "pod", "a", "service", "web"),
			want:       []schema.GroupResource{namespaceResource, {Resource: "pods"}, {Resource: "services"}},
			namespaced: true,
		},
		{
			name: "template with group and overrides",
			mapping: ResourceMapping{
				Template: "kube_<<.Group>>_<<.Resource>>",
				Overrides: map[string]GroupResource{
					"microservice":   {Group: "apps", Resource: "deployment"},
					"kube_namespace": {Resource: "namespaces"},
				},
			},
			// The template is inverted with lazy captures, so a dotted
			// group does not come back (group "networking", resource
			// "k8s_io_ingress") and the label is skipped, as in the adapter.
			series: labels.FromStrings("__name__", "app_x", "instance", "i", "kube_apps_deployment", "d",
				"kube_namespace", "a", "kube_networking_k8s_io_ingress", "in", "microservice", "m"),
			want:       []schema.GroupResource{dep, namespaceResource, dep},
			namespaced: true,
		},
		{
			name:    "overrides only, not namespaced",
			mapping: ResourceMapping{Overrides: map[string]GroupResource{"node": {Resource: "node"}}},
			series:  labels.FromStrings("__name__", "node_load1", "node", "n1", "namespace", "x"),
			want:    []schema.GroupResource{{Resource: "nodes"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conv, err := NewResourceConverter(tt.mapping, fakeMapper{})
			if err != nil {
				t.Fatal(err)
			}
			got, ns := conv.ResourcesForSeries(tt.series)
			if !reflect.DeepEqual(got, tt.want) || ns != tt.namespaced {
				t.Errorf("ResourcesForSeries = %v, %v; want %v, %v", got, ns, tt.want, tt.namespaced)
			}
		})
	}
}

func TestNewResourceConverterErrors(t *testing.T) {
	tests := []struct {
		name    string
		mapping ResourceMapping
		mapper  ResourceMapper
		err     string
	}{
		{"unknown override", ResourceMapping{Overrides: map[string]GroupResource{"x": {Resource: "widget"}}}, fakeMapper{}, `normalize group-resource widget of label "x"`},
		{"no mapper", ResourceMapping{Overrides: map[string]GroupResource{"pod": {Resource: "pod"}}}, nil, "no resource mapper"},
		{"template without resource", ResourceMapping{Template: "k_<<.Group>>"}, fakeMapper{}, "must include <<.Resource>>"},
		{"template not a regexp", ResourceMapping{Template: "(<<.Resource>>"}, fakeMapper{}, "convert label template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewResourceConverter(tt.mapping, tt.mapper)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}
