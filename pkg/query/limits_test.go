package query

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestLimitRequest: expressions over the length or nesting bound, and forms
// over the size bound, are refused before the API parses them; series-like
// answers are capped unless the request asks for fewer.
func TestLimitRequest(t *testing.T) {
	l := Limits{MaxExpressionBytes: 1 << 10, MaxNesting: 8, MaxResults: 100}
	nested := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	for _, tc := range []struct {
		name, endpoint, method string
		form                   url.Values
		body                   string // raw POST body instead of form
		wantCode               int
		wantLimit              string // the limit next sees; "" when not called
	}{
		{name: "plain query", endpoint: "/query", form: url.Values{"query": {"up"}}, wantCode: 200},
		{name: "query at the nesting bound", endpoint: "/query", form: url.Values{"query": {nested(8)}}, wantCode: 200},
		{name: "query over the nesting bound", endpoint: "/query", form: url.Values{"query": {nested(9)}}, wantCode: 400},
		{name: "brackets and braces count", endpoint: "/query_range", form: url.Values{"query": {"sum(rate(" + strings.Repeat("(", 6) + "x{a=\"b\"}[5m]" + strings.Repeat(")", 8) + " + 1"}}, wantCode: 400},
		{name: "parentheses in a string do not count", endpoint: "/query", form: url.Values{"query": {`x{a="` + strings.Repeat("(", 50) + `"}`}}, wantCode: 200},
		{name: "escaped quote in a string", endpoint: "/query", form: url.Values{"query": {`x{a="\"(((((((((("}`}}, wantCode: 200},
		{name: "parentheses in a comment do not count", endpoint: "/query", form: url.Values{"query": {"x # " + strings.Repeat("(", 50) + "\n+ 1"}}, wantCode: 200},
		{name: "long query", endpoint: "/query", form: url.Values{"query": {strings.Repeat("x+", 600) + "x"}}, wantCode: 400},
		{name: "long match[]", endpoint: "/series", form: url.Values{"match[]": {"up", "x{a=\"" + strings.Repeat("a", 2<<10) + "\"}"}}, wantCode: 400},
		{name: "deep parse_query", endpoint: "/parse_query", form: url.Values{"query": {nested(20)}}, wantCode: 400},
		{name: "10 MB POST", endpoint: "/query", method: http.MethodPost, body: "query=" + strings.Repeat("(", 10<<20), wantCode: 413},
		{name: "huge query string", endpoint: "/query", form: url.Values{"query": {strings.Repeat("x", 200<<10)}}, wantCode: 413},
		{name: "series without limit is capped", endpoint: "/series", form: url.Values{"match[]": {"up"}}, wantCode: 200, wantLimit: "100"},
		{name: "series with limit 0 is capped", endpoint: "/series", form: url.Values{"match[]": {"up"}, "limit": {"0"}}, wantCode: 200, wantLimit: "100"},
		{name: "lower limit kept", endpoint: "/labels", form: url.Values{"limit": {"5"}}, wantCode: 200, wantLimit: "5"},
		{name: "higher limit capped", endpoint: "/label/:name/values", form: url.Values{"limit": {"5000"}}, wantCode: 200, wantLimit: "100"},
		{name: "metadata capped", endpoint: "/metadata", wantCode: 200, wantLimit: "100"},
		{name: "bad limit", endpoint: "/series", form: url.Values{"limit": {"many"}}, wantCode: 400},
		{name: "query is not capped", endpoint: "/query", form: url.Values{"query": {"up"}, "limit": {"5000"}}, wantCode: 200, wantLimit: "5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sawLimit string
			called := false
			h := limitRequest(l, tc.endpoint, func(w http.ResponseWriter, r *http.Request) {
				called = true
				sawLimit = r.FormValue("limit")
				w.WriteHeader(http.StatusOK)
			})
			var req *http.Request
			switch {
			case tc.method == http.MethodPost:
				req = httptest.NewRequest(http.MethodPost, "/api/v1"+tc.endpoint, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			default:
				req = httptest.NewRequest(http.MethodGet, "/api/v1"+tc.endpoint+"?"+tc.form.Encode(), nil)
			}
			rec := httptest.NewRecorder()
			h(rec, req)
			if rec.Code != tc.wantCode {
				t.Fatalf("code %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if rec.Code != http.StatusOK {
				var body struct{ Status, ErrorType string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Status != "error" || body.ErrorType != "bad_data" {
					t.Errorf("error body %s, want the API's bad_data shape", rec.Body)
				}
				if called {
					t.Error("the API was called for a refused request")
				}
				return
			}
			if sawLimit != tc.wantLimit {
				t.Errorf("limit %q, want %q", sawLimit, tc.wantLimit)
			}
		})
	}
}
