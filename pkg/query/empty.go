package query

import (
	"net/url"

	"github.com/prometheus/prometheus/rules"
)

// The gateway evaluates no rules and sends no alerts; these answer the
// corresponding endpoints with empty lists, as a Prometheus without rules
// does.
type (
	noRules         struct{}
	noAlertmanagers struct{}
)

func (noRules) RuleGroups() []*rules.Group               { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule     { return nil }
func (noAlertmanagers) Alertmanagers() []*url.URL        { return nil }
func (noAlertmanagers) DroppedAlertmanagers() []*url.URL { return nil }
