package rules

import "github.com/metrics-gateway/metrics-gateway/pkg/rules/rulestest"

// fakeMapper knows a handful of resources, enough to exercise singular and
// plural names, an empty group matching any group (as a discovery-backed
// RESTMapper does) and unknown labels.
type fakeMapper = rulestest.Mapper

var _ ResourceMapper = fakeMapper{}
