package manifests

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// normalize round-trips through JSON, so that objects from any source
// compare equal with reflect.DeepEqual (numbers become float64).
func normalize(o object) (object, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var out object
	return out, json.Unmarshal(b, &out)
}

// sortNamed sorts, in place, every list whose items are all maps with a
// name, by name (then by mount path, for volume mounts of one volume).
func sortNamed(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			sortNamed(x)
		}
	case []any:
		named := len(v) > 0
		for _, x := range v {
			sortNamed(x)
			if str(x, "name") == "" {
				named = false
			}
		}
		if named {
			sort.SliceStable(v, func(i, j int) bool {
				if a, b := str(v[i], "name"), str(v[j], "name"); a != b {
					return a < b
				}
				return str(v[i], "mountPath") < str(v[j], "mountPath")
			})
		}
	}
}

// key names an object within a rendering.
func key(o object) string {
	return strings.Join([]string{str(o, "kind"), str(o, "metadata", "namespace"), str(o, "metadata", "name")}, "/")
}

// diffObjects describes how two renderings differ, by object; empty when
// they hold the same objects. Lists of named items (volumes, mounts,
// containers, env, ports, subjects) compare as sets: the API keys them by
// name, and kustomize orders items added by patches differently depending
// on the order of the components that patch the same list.
func diffObjects(got, want []object) []string {
	index := func(objs []object) map[string]object {
		m := map[string]object{}
		for _, o := range objs {
			n, err := normalize(o)
			if err != nil {
				n = o
			}
			sortNamed(n)
			m[key(o)] = n
		}
		return m
	}
	g, w := index(got), index(want)
	var diffs []string
	for k, wo := range w {
		switch go_, ok := g[k]; {
		case !ok:
			diffs = append(diffs, "missing "+k)
		case !reflect.DeepEqual(go_, wo):
			gb, _ := yaml.Marshal(go_)
			wb, _ := yaml.Marshal(wo)
			diffs = append(diffs, fmt.Sprintf("%s differs:\n--- got\n%s--- want\n%s", k, gb, wb))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, "unexpected "+k)
		}
	}
	sort.Strings(diffs)
	return diffs
}
