package scrape

import (
	"fmt"

	"github.com/alecthomas/units"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits bound what one target may send in one scrape. A target over any
// of them fails that scrape (Prometheus' own behaviour): nothing it sent is
// stored, its up is 0, and the recorder counts and logs the failure.
// A zero field means "the default"; a job in scrapeConfigs that sets the
// Prometheus field itself (even to 0, no limit) keeps its own value.
type Limits struct {
	SampleLimit           int    `json:"sampleLimit,omitempty"`
	LabelLimit            int    `json:"labelLimit,omitempty"`
	LabelNameLengthLimit  int    `json:"labelNameLengthLimit,omitempty"`
	LabelValueLengthLimit int    `json:"labelValueLengthLimit,omitempty"`
	BodySizeLimit         string `json:"bodySizeLimit,omitempty"`
}

// DefaultLimits are generous for an application's own metrics and stop a
// cardinality explosion or a runaway exposition at the first scrape.
func DefaultLimits() Limits {
	return Limits{
		// An application typically exposes hundreds to a few thousand series.
		SampleLimit: 10000,
		// Kubernetes objects carry a handful of labels; 64 is far beyond.
		LabelLimit: 64,
		// Label names are identifiers; long ones are generated garbage.
		LabelNameLengthLimit: 256,
		// Long enough for URLs and image references, short of request bodies.
		LabelValueLengthLimit: 1024,
		// 10000 samples of text exposition are well under 10 MiB.
		BodySizeLimit: "10MB",
	}
}

// defaulted fills zero fields from d.
func (l Limits) defaulted(d Limits) Limits {
	if l.SampleLimit == 0 {
		l.SampleLimit = d.SampleLimit
	}
	if l.LabelLimit == 0 {
		l.LabelLimit = d.LabelLimit
	}
	if l.LabelNameLengthLimit == 0 {
		l.LabelNameLengthLimit = d.LabelNameLengthLimit
	}
	if l.LabelValueLengthLimit == 0 {
		l.LabelValueLengthLimit = d.LabelValueLengthLimit
	}
	if l.BodySizeLimit == "" {
		l.BodySizeLimit = d.BodySizeLimit
	}
	return l
}

func (l Limits) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct {
		name string
		v    int
	}{
		{"sampleLimit", l.SampleLimit}, {"labelLimit", l.LabelLimit},
		{"labelNameLengthLimit", l.LabelNameLengthLimit}, {"labelValueLengthLimit", l.LabelValueLengthLimit},
	} {
		if f.v < 0 {
			errs = append(errs, field.Invalid(p.Child(f.name), f.v, "must not be negative"))
		}
	}
	if l.BodySizeLimit != "" {
		if n, err := units.ParseBase2Bytes(l.BodySizeLimit); err != nil {
			errs = append(errs, field.Invalid(p.Child("bodySizeLimit"), l.BodySizeLimit, fmt.Sprintf("not a size such as 10MB: %v", err)))
		} else if n < 0 {
			errs = append(errs, field.Invalid(p.Child("bodySizeLimit"), l.BodySizeLimit, "must not be negative"))
		}
	}
	return errs
}

// overrides keeps only the fields that differ from the inherited ones, so
// that an inherited bad value is reported once, where it was written.
func (l Limits) overrides(inherited Limits) Limits {
	if l.SampleLimit == inherited.SampleLimit {
		l.SampleLimit = 0
	}
	if l.LabelLimit == inherited.LabelLimit {
		l.LabelLimit = 0
	}
	if l.LabelNameLengthLimit == inherited.LabelNameLengthLimit {
		l.LabelNameLengthLimit = 0
	}
	if l.LabelValueLengthLimit == inherited.LabelValueLengthLimit {
		l.LabelValueLengthLimit = 0
	}
	if l.BodySizeLimit == inherited.BodySizeLimit {
		l.BodySizeLimit = ""
	}
	return l
}

// applyTo sets every limit the Prometheus job does not set itself.
func (l Limits) applyTo(job map[string]any) {
	for k, v := range map[string]any{
		"sample_limit":             l.SampleLimit,
		"label_limit":              l.LabelLimit,
		"label_name_length_limit":  l.LabelNameLengthLimit,
		"label_value_length_limit": l.LabelValueLengthLimit,
		"body_size_limit":          l.BodySizeLimit,
	} {
		if _, set := job[k]; set {
			continue
		}
		if n, ok := v.(int); ok && n == 0 {
			continue
		}
		if s, ok := v.(string); ok && s == "" {
			continue
		}
		job[k] = v
	}
}
