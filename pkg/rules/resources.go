package rules

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/prometheus/prometheus/model/labels"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ResourceMapper normalizes group-resources as the API server knows them.
// It is the subset of meta.RESTMapper the adapter uses, so the server passes
// a discovery-backed RESTMapper (restmapper.NewDeferredDiscoveryRESTMapper);
// tests pass a hand-written fake. Implementations must be safe for
// concurrent use, since compiled rules call them on every request. An
// unknown resource is reported as an error (a RESTMapper returns
// *meta.NoResourceMatchError); callers treat any error as "not a resource"
// when reading labels and as fatal when compiling overrides.
type ResourceMapper interface {
	// ResourceFor returns the canonical (plural, lower-case) resource for a
	// possibly singular or partially specified one; Version may be empty.
	ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error)
	// ResourceSingularizer returns the singular name of a plural resource.
	ResourceSingularizer(resource string) (singular string, err error)
}

var _ ResourceMapper = meta.RESTMapper(nil)

// namespaceResource is the group-resource whose label restricts a query to
// one namespace.
var namespaceResource = schema.GroupResource{Resource: "namespaces"}

// groupSanitizer makes an API group usable inside a label name.
var groupSanitizer = strings.NewReplacer(".", "_", "-", "_")

// ResourceConverter maps label names to group-resources and back for one
// rule: Overrides first, then the template. It is immutable and safe for
// concurrent use; unlike the adapter it keeps no cache, because the server's
// mapper caches discovery already.
type ResourceConverter struct {
	mapper          ResourceMapper
	labelToResource map[string]schema.GroupResource
	resourceToLabel map[schema.GroupResource]string
	template        *template.Template
	extractor       *regexp.Regexp // the template turned into a regexp
	resourceIdx     int
	groupIdx        int // -1 when the template has no .Group
}

// NewResourceConverter compiles a ResourceMapping. Overrides are normalized
// through the mapper at once, so an unknown resource is an error here, as in
// the adapter.
func NewResourceConverter(m ResourceMapping, mapper ResourceMapper) (*ResourceConverter, error) {
	c := &ResourceConverter{
		mapper:          mapper,
		labelToResource: make(map[string]schema.GroupResource, len(m.Overrides)),
		resourceToLabel: make(map[schema.GroupResource]string, len(m.Overrides)),
		groupIdx:        -1,
	}
	if m.Template != "" {
		if err := c.compileTemplate(m.Template); err != nil {
			return nil, err
		}
	}
	for lbl, gr := range m.Overrides {
		norm, err := normalize(mapper, schema.GroupResource{Group: gr.Group, Resource: gr.Resource})
		if err != nil {
			return nil, fmt.Errorf("normalize group-resource %s of label %q: %w", gr.Resource, lbl, err)
		}
		c.labelToResource[lbl] = norm
		c.resourceToLabel[norm] = lbl
	}
	return c, nil
}

// resourceTemplateArgs has the field names the adapter's templates use.
type resourceTemplateArgs struct {
	Group    string
	Resource string
}

// compileTemplate parses the label template and derives the regexp that
// reads a group-resource back out of a label, by rendering the template
// with capture groups in place of the fields (the adapter's approach, with
// its limit: a template that constrains lengths breaks the inversion).
func (c *ResourceConverter) compileTemplate(text string) error {
	t, err := template.New("resource-label").Delims("<<", ">>").Parse(text)
	if err != nil {
		return fmt.Errorf("parse label template %q: %w", text, err)
	}
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, n: maxRender}
	if err := t.Execute(w, resourceTemplateArgs{Group: "(?P<group>.+?)", Resource: "(?P<resource>.+?)"}); err != nil {
		return fmt.Errorf("convert label template %q to matcher: %w", text, err)
	}
	if buf.Len() == 0 {
		return fmt.Errorf("convert label template %q to matcher: empty template", text)
	}
	re, err := regexp.Compile("^" + buf.String() + "$")
	if err != nil {
		return fmt.Errorf("convert label template %q to matcher: %w", text, err)
	}
	c.resourceIdx = re.SubexpIndex("resource")
	c.groupIdx = re.SubexpIndex("group")
	if c.resourceIdx < 0 {
		return fmt.Errorf("label template %q must include <<.Resource>>", text)
	}
	c.template, c.extractor = t, re
	return nil
}

// normalize asks the mapper for the canonical group-resource and checks it
// can be singularized, which is what the adapter's Normalized requires.
func normalize(mapper ResourceMapper, gr schema.GroupResource) (schema.GroupResource, error) {
	if mapper == nil {
		return schema.GroupResource{}, errors.New("no resource mapper")
	}
	gvr, err := mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return schema.GroupResource{}, err
	}
	norm := gvr.GroupResource()
	if _, err := mapper.ResourceSingularizer(norm.Resource); err != nil {
		return schema.GroupResource{}, err
	}
	return norm, nil
}

// LabelForResource returns the label naming the given normalized
// group-resource: its override, else the rendered template.
func (c *ResourceConverter) LabelForResource(gr schema.GroupResource) (string, error) {
	if lbl, ok := c.resourceToLabel[gr]; ok {
		return lbl, nil
	}
	if c.template == nil {
		return "", fmt.Errorf("convert resource %s into label: no generic resource label form specified for this metric", gr)
	}
	singular, err := c.mapper.ResourceSingularizer(gr.Resource)
	if err != nil {
		return "", fmt.Errorf("convert resource %s into label: singularize: %w", gr, err)
	}
	var buf bytes.Buffer
	args := resourceTemplateArgs{Group: groupSanitizer.Replace(gr.Group), Resource: singular}
	if err := c.template.Execute(&limitWriter{w: &buf, n: maxRender}, args); err != nil {
		return "", fmt.Errorf("convert resource %s into label: %w", gr, err)
	}
	if buf.Len() == 0 {
		return "", fmt.Errorf("convert resource %s into label: empty label produced by label template", gr)
	}
	return buf.String(), nil
}

// ResourcesForSeries returns the group-resources the series' labels stand
// for, in label order, and whether one of them is the namespace. Labels the
// mapper does not know are skipped, as in the adapter; __name__ is never a
// resource.
func (c *ResourceConverter) ResourcesForSeries(series labels.Labels) (res []schema.GroupResource, namespaced bool) {
	series.Range(func(l labels.Label) {
		if l.Name == labels.MetricName {
			return
		}
		gr, ok := c.resourceForLabel(l.Name)
		if !ok {
			return
		}
		res = append(res, gr)
		if gr == namespaceResource {
			namespaced = true
		}
	})
	return res, namespaced
}

func (c *ResourceConverter) resourceForLabel(lbl string) (schema.GroupResource, bool) {
	if gr, ok := c.labelToResource[lbl]; ok {
		return gr, true
	}
	if c.extractor == nil {
		return schema.GroupResource{}, false
	}
	m := c.extractor.FindStringSubmatch(lbl)
	if m == nil {
		return schema.GroupResource{}, false
	}
	gr := schema.GroupResource{Resource: m[c.resourceIdx]}
	if c.groupIdx >= 0 {
		gr.Group = m[c.groupIdx]
	}
	norm, err := normalize(c.mapper, gr)
	if err != nil {
		return schema.GroupResource{}, false
	}
	return norm, true
}

// maxRender bounds what one template may write, so a hostile or mistaken
// template cannot exhaust memory during validation or a request.
const maxRender = 64 << 10

var errRenderTooLarge = errors.New("template output exceeds 64KiB")

type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errRenderTooLarge
	}
	l.n -= len(p)
	return l.w.Write(p)
}
