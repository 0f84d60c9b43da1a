package query

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Limits bound what one request to the query API may make the gateway
// hold, before the engine's own bounds (samples, timeout) apply. Prometheus
// has none of these by default: a 10 MB expression is parsed whole, and a
// series or labels request without a limit answers with everything.
type Limits struct {
	// MaxExpressionBytes bounds a query or match[] expression, and the
	// form carrying them.
	MaxExpressionBytes int
	// MaxNesting bounds how deeply parentheses, brackets and braces nest in
	// an expression: the parser's stack and the AST grow with it.
	MaxNesting int
	// MaxResults caps the answers of series, labels, label values and
	// metadata: a request's own limit applies when it is lower, and a
	// capped answer carries Prometheus' "results truncated" warning.
	MaxResults int
}

// DefaultLimits: a hundred times the longest dashboard expression we have
// seen, Prometheus' own maximum nesting of generated rules, and ten
// thousand series (about 2 MB of JSON) per answer.
func DefaultLimits() Limits {
	return Limits{MaxExpressionBytes: 64 << 10, MaxNesting: 64, MaxResults: 10_000}
}

func (l Limits) validate() error {
	if l.MaxExpressionBytes <= 0 || l.MaxNesting <= 0 || l.MaxResults <= 0 {
		return fmt.Errorf("query limits must be positive: %+v", l)
	}
	return nil
}

// capped are the endpoints whose answers MaxResults caps.
var capped = map[string]bool{
	"/series": true, "/labels": true, "/label/:name/values": true,
	"/metadata": true, "/targets/metadata": true,
}

// expressionParams are the form fields holding PromQL.
var expressionParams = []string{"query", "match[]"}

// limitRequest checks the request's expressions against l and caps its
// limit parameter, then calls next. The form is parsed here, under
// MaxBytesReader, so that the API's own ParseForm sees it already parsed.
func limitRequest(l Limits, name string, next http.HandlerFunc) http.HandlerFunc {
	maxForm := int64(l.MaxExpressionBytes) + 64<<10 // room for the other fields
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		if len(r.URL.RawQuery) > int(maxForm) {
			WriteError(w, http.StatusRequestEntityTooLarge, "bad_data", fmt.Sprintf("query string of %d bytes is over the limit of %d", len(r.URL.RawQuery), maxForm))
			return
		}
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				WriteError(w, http.StatusRequestEntityTooLarge, "bad_data", fmt.Sprintf("request body over the limit of %d bytes", maxForm))
				return
			}
			WriteError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("parse form: %v", err))
			return
		}
		for _, p := range expressionParams {
			for _, e := range r.Form[p] {
				if err := l.checkExpression(e); err != nil {
					WriteError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("%s: %v", p, err))
					return
				}
			}
		}
		if capped[name] {
			if err := l.capResults(r); err != nil {
				WriteError(w, http.StatusBadRequest, "bad_data", err.Error())
				return
			}
		}
		next(w, r)
	}
}

// checkExpression refuses an expression over the length or nesting bound.
// Nesting is counted outside string literals, without parsing: the point is
// not to parse what is too deep.
func (l Limits) checkExpression(e string) error {
	if len(e) > l.MaxExpressionBytes {
		return fmt.Errorf("expression of %d bytes is over the limit of %d (--query-max-expression-bytes)", len(e), l.MaxExpressionBytes)
	}
	depth := 0
	var quote byte
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '#':
			// A comment runs to the end of the line.
			for i < len(e) && e[i] != '\n' {
				i++
			}
		case c == '(' || c == '[' || c == '{':
			if depth++; depth > l.MaxNesting {
				return fmt.Errorf("expression nests deeper than %d", l.MaxNesting)
			}
		case c == ')' || c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// capResults sets the limit parameter to MaxResults unless the request asks
// for fewer. Prometheus reads 0 (or no limit) as "everything".
func (l Limits) capResults(r *http.Request) error {
	limit := l.MaxResults
	if v := r.Form.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("limit %q: want a non-negative integer", v)
		}
		if n > 0 && n < limit {
			limit = n
		}
	}
	r.Form.Set("limit", strconv.Itoa(limit))
	return nil
}
