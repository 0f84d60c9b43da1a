package server

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden/*.json from the answers of this run")

// goldenJSON holds an API's whole answer to testdata/golden/<name>.json,
// byte for byte after normalizing what differs from run to run: times (the
// replayed round's base becomes "<base>", any other "<time>"), the order
// of discovery documents' resources and of custom metrics' items (the
// custom metrics API promises none; metrics.k8s.io's order is kept). go test -run <test> -update
// rewrites the file; review the diff.
func goldenJSON(t *testing.T, name string, body []byte, base time.Time) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: not JSON: %v: %.300s", name, err, body)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(normalize(v, "", base)); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	file := filepath.Join("testdata", "golden", name+".json")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -run %s -update rewrites it):\ngot:\n%s", name, file, t.Name(), got)
	}
}

// goldenAnswers fetches each path of answers (by golden file name) and
// holds its answer with goldenJSON; a status other than 200 or one of also
// is an error.
func (g *gateway) goldenAnswers(t *testing.T, base time.Time, answers map[string]string, also ...int) {
	t.Helper()
	for name, path := range answers {
		code, body := g.get(t, path, "")
		if code != http.StatusOK && !slices.Contains(also, code) {
			t.Errorf("%s: %d %s", path, code, body)
			continue
		}
		goldenJSON(t, name, body, base)
	}
}

func normalize(v any, key string, base time.Time) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e, k, base)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e, "", base)
		}
		switch key {
		case "resources":
			sort.SliceStable(x, func(i, j int) bool { return name(x[i]) < name(x[j]) })
		case "items":
			sort.SliceStable(x, func(i, j int) bool { return described(x[i]) < described(x[j]) })
		}
	case string:
		if key == "timestamp" || key == "creationTimestamp" {
			if ts, err := time.Parse(time.RFC3339, x); err == nil && ts.Equal(base) {
				return "<base>"
			}
			return "<time>"
		}
	}
	return v
}

// described is a custom metric value's object, "" for other items.
func described(v any) string {
	m, _ := v.(map[string]any)
	o, _ := m["describedObject"].(map[string]any)
	ns, _ := o["namespace"].(string)
	n, _ := o["name"].(string)
	return ns + "/" + n
}

func name(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["name"].(string)
	return s
}
