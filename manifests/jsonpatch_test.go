package manifests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// jsonPatchOp is one operation of a JSON 6902 patch; only add, replace
// and remove are implemented.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func applyJSONPatch(sel *selector, ops []jsonPatchOp, objs []object) ([]object, error) {
	for i, o := range objs {
		ok, err := sel.matches(o)
		if err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		var node any = deepCopy(o)
		for _, op := range ops {
			if !strings.HasPrefix(op.Path, "/") {
				return nil, fmt.Errorf("JSON patch path %q", op.Path)
			}
			tokens := strings.Split(op.Path[1:], "/")
			for j, t := range tokens {
				tokens[j] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
			}
			if node, err = jsonPatchAt(node, tokens, op); err != nil {
				return nil, fmt.Errorf("%s %s: %s %s: %w", str(o, "kind"), str(o, "metadata", "name"), op.Op, op.Path, err)
			}
		}
		objs[i] = node.(map[string]any)
	}
	return objs, nil
}

// jsonPatchAt applies op at tokens below node and returns the new node
// (appending to a list makes a new slice).
func jsonPatchAt(node any, tokens []string, op jsonPatchOp) (any, error) {
	t, last := tokens[0], len(tokens) == 1
	switch n := node.(type) {
	case map[string]any:
		if !last {
			child, ok := n[t]
			if !ok {
				return nil, fmt.Errorf("no %q", t)
			}
			c, err := jsonPatchAt(child, tokens[1:], op)
			n[t] = c
			return n, err
		}
		_, exists := n[t]
		switch {
		case op.Op == "add", op.Op == "replace" && exists:
			n[t] = op.Value
		case op.Op == "remove" && exists:
			delete(n, t)
		default:
			return nil, fmt.Errorf("cannot %s %q", op.Op, t)
		}
		return n, nil
	case []any:
		i := len(n)
		if t != "-" {
			var err error
			if i, err = strconv.Atoi(t); err != nil || i < 0 || i > len(n) {
				return nil, fmt.Errorf("bad index %q", t)
			}
		}
		if !last {
			if i >= len(n) {
				return nil, fmt.Errorf("no index %q", t)
			}
			c, err := jsonPatchAt(n[i], tokens[1:], op)
			n[i] = c
			return n, err
		}
		switch {
		case op.Op == "add":
			return slices.Insert(n, i, op.Value), nil
		case op.Op == "replace" && i < len(n):
			n[i] = op.Value
			return n, nil
		case op.Op == "remove" && i < len(n):
			return slices.Delete(n, i, i+1), nil
		}
		return nil, fmt.Errorf("cannot %s index %q", op.Op, t)
	}
	return nil, fmt.Errorf("%q is not in an object or list", t)
}

// jsonMerge is RFC 7386: maps merge, null deletes, anything else replaces.
func jsonMerge(dst, patch map[string]any) map[string]any {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			d, ok := dst[k].(map[string]any)
			if !ok {
				d = map[string]any{}
			}
			dst[k] = jsonMerge(d, pv)
		default:
			dst[k] = v
		}
	}
	return dst
}
