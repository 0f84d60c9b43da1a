package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// The root module does not depend on kustomize (sigs.k8s.io/kustomize/api is
// not in its module graph, and a unit test cannot count on a kubectl binary),
// so render is a small kustomize: exactly the features these manifests use,
// with the kustomization files read strictly so that a feature it does not
// implement fails the tests instead of being skipped. TestRenderMatchesKubectl
// compares it with kubectl kustomize whenever test/bin/kubectl is there.

// object is one decoded manifest.
type object = map[string]any

type kustomization struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Resources  []string    `json:"resources,omitempty"`
	Components []string    `json:"components,omitempty"`
	Patches    []patchSpec `json:"patches,omitempty"`
	Images     []imageSpec `json:"images,omitempty"`
}

type patchSpec struct {
	Path   string    `json:"path,omitempty"`
	Patch  string    `json:"patch,omitempty"`
	Target *selector `json:"target,omitempty"`
}

// selector is a patch target; every field is an anchored regular expression,
// as in kustomize.
type selector struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

type imageSpec struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// render builds the kustomization in dir: its resources, then each component
// in order, then its own patches and images (kustomize's order).
func render(dir string) ([]object, error) {
	k, err := readKustomization(dir, "Kustomization")
	if err != nil {
		return nil, err
	}
	objs, err := loadResources(dir, k.Resources)
	if err != nil {
		return nil, err
	}
	for _, c := range k.Components {
		cdir := filepath.Join(dir, c)
		ck, err := readKustomization(cdir, "Component")
		if err != nil {
			return nil, err
		}
		if len(ck.Components) > 0 {
			return nil, fmt.Errorf("%s: components of a component are not implemented", cdir)
		}
		more, err := loadResources(cdir, ck.Resources)
		if err != nil {
			return nil, err
		}
		if objs, err = transform(cdir, ck, append(objs, more...)); err != nil {
			return nil, err
		}
	}
	return transform(dir, k, objs)
}

func readKustomization(dir, kind string) (*kustomization, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	if k.Kind != kind {
		return nil, fmt.Errorf("%s/kustomization.yaml: kind %q, want %q", dir, k.Kind, kind)
	}
	return &k, nil
}

func loadResources(dir string, paths []string) ([]object, error) {
	var objs []object
	for _, p := range paths {
		full := filepath.Join(dir, p)
		st, err := os.Stat(full)
		if err != nil {
			return nil, err
		}
		var more []object
		if st.IsDir() {
			more, err = render(full)
		} else {
			more, err = readObjects(full)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	return objs, nil
}

// readObjects decodes every document of a YAML file; documents holding only
// comments are skipped.
func readObjects(path string) ([]object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeObjects(b)
}

func decodeObjects(b []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
}

func transform(dir string, k *kustomization, objs []object) ([]object, error) {
	for i, p := range k.Patches {
		var err error
		if objs, err = applyPatch(dir, p, objs); err != nil {
			return nil, fmt.Errorf("%s patches[%d]: %w", dir, i, err)
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			setImages(o, img)
		}
	}
	return objs, nil
}

func applyPatch(dir string, p patchSpec, objs []object) ([]object, error) {
	body := []byte(p.Patch)
	if p.Path != "" {
		var err error
		if body, err = os.ReadFile(filepath.Join(dir, p.Path)); err != nil {
			return nil, err
		}
	}
	var list []any
	if yaml.Unmarshal(body, &list) == nil {
		// A list is a JSON 6902 patch, which needs a target.
		var ops []jsonPatchOp
		if err := yaml.UnmarshalStrict(body, &ops); err != nil {
			return nil, err
		}
		if p.Target == nil {
			return nil, errors.New("a JSON 6902 patch needs a target")
		}
		return applyJSONPatch(p.Target, ops, objs)
	}
	var patch object
	if err := yaml.Unmarshal(body, &patch); err != nil {
		return nil, err
	}
	sel := p.Target
	if sel == nil {
		// Without a target the patch names its one object.
		gv, err := schema.ParseGroupVersion(str(patch, "apiVersion"))
		if err != nil {
			return nil, err
		}
		sel = &selector{Group: regexp.QuoteMeta(gv.Group), Kind: str(patch, "kind"), Name: regexp.QuoteMeta(str(patch, "metadata", "name"))}
	}
	var out []object
	matched := 0
	for _, o := range objs {
		ok, err := sel.matches(o)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, o)
			continue
		}
		matched++
		if patch["$patch"] == "delete" {
			continue
		}
		merged, err := mergePatch(o, patch)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", str(o, "kind"), str(o, "metadata", "name"), err)
		}
		out = append(out, merged)
	}
	if p.Target == nil && matched != 1 {
		return nil, fmt.Errorf("patch for %s %s matches %d objects", str(patch, "kind"), str(patch, "metadata", "name"), matched)
	}
	return out, nil
}

func (s *selector) matches(o object) (bool, error) {
	gv, err := schema.ParseGroupVersion(str(o, "apiVersion"))
	if err != nil {
		return false, err
	}
	for _, f := range []struct{ pattern, value string }{
		{s.Group, gv.Group}, {s.Version, gv.Version}, {s.Kind, str(o, "kind")},
		{s.Name, str(o, "metadata", "name")}, {s.Namespace, str(o, "metadata", "namespace")},
	} {
		if f.pattern == "" {
			continue
		}
		re, err := regexp.Compile("^(?:" + f.pattern + ")$")
		if err != nil {
			return false, err
		}
		if !re.MatchString(f.value) {
			return false, nil
		}
	}
	return true, nil
}

// mergePatch applies a strategic merge patch to o. The patch takes o's kind
// and name (a target patch names a placeholder). Kinds client-go knows merge
// with their Go types' patch strategies; others (APIService) as JSON merge
// patches, which is what a strategic merge is for types without list keys.
func mergePatch(o, patch object) (object, error) {
	p := deepCopy(patch)
	p["apiVersion"], p["kind"] = o["apiVersion"], o["kind"]
	if meta, ok := p["metadata"].(map[string]any); ok {
		meta["name"] = str(o, "metadata", "name")
		if ns := str(o, "metadata", "namespace"); ns != "" {
			meta["namespace"] = ns
		}
	}
	gvk := schema.FromAPIVersionAndKind(str(o, "apiVersion"), str(o, "kind"))
	typed, err := scheme.Scheme.New(gvk)
	if err != nil {
		return jsonMerge(deepCopy(o), p), nil
	}
	merged, err := strategicpatch.StrategicMergeMapPatch(deepCopy(o), p, typed)
	if err != nil {
		return nil, err
	}
	return normalize(merged)
}

// setImages is kustomize's images transformer for the workloads used here.
func setImages(o object, img imageSpec) {
	spec, _ := get(o, "spec", "template", "spec").(map[string]any)
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for _, c := range list {
			c, _ := c.(map[string]any)
			ref, _ := c["image"].(string)
			name, tag, digest := splitImage(ref)
			if name != img.Name {
				continue
			}
			if img.NewName != "" {
				name = img.NewName
			}
			if img.NewTag != "" {
				tag = img.NewTag
			}
			if img.Digest != "" {
				tag, digest = "", img.Digest
			}
			ref = name
			if tag != "" {
				ref += ":" + tag
			}
			if digest != "" {
				ref += "@" + digest
			}
			c["image"] = ref
		}
	}
}

func splitImage(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

// get walks nested maps; nil when a step is missing.
func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string {
	s, _ := get(o, path...).(string)
	return s
}

func deepCopy(o object) object {
	c, err := normalize(o)
	if err != nil {
		panic(err) // decoded YAML always round-trips through JSON
	}
	return c
}

// TestRenderRefuses: what render does not implement, or a patch that would
// silently do nothing, is an error rather than a rendering that differs
// from kustomize's.
func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"unimplemented field", "namespace: monitoring\n", `unknown field "namespace"`},
		{"patch matching nothing", "patches:\n- patch: |-\n    apiVersion: v1\n    kind: Service\n    metadata: {name: nope}\n", "matches 0 objects"},
		{"JSON patch without target", "patches:\n- patch: |-\n    - {op: add, path: /metadata/labels/x, value: y}\n", "needs a target"},
		{"JSON patch on a missing path", "patches:\n- target: {kind: Service}\n  patch: |-\n    - {op: add, path: /spec/nope/x, value: y}\n", `no "nope"`},
		{"unsupported JSON patch op", "patches:\n- target: {kind: Service}\n  patch: |-\n    - {op: test, path: /spec, value: {}}\n", `cannot test "spec"`},
		{"JSON patch field not implemented", "patches:\n- target: {kind: Service}\n  patch: |-\n    - {op: move, from: /spec, path: /x}\n", `unknown field "from"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := composition(t, nil)
			k, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			k = []byte(strings.Replace(string(k), "components:\n", tc.extra, 1))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = render(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}
