package manifests

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

var update = flag.Bool("update", false, "rewrite the generated flag tables of docs/configuration.md")

const (
	configurationDoc = "../docs/configuration.md"
	migrationDoc     = "../docs/migration.md"
	flagsBegin       = "<!-- BEGIN FLAG TABLES: go test ./manifests -run TestConfigurationDoc -update -->"
	flagsEnd         = "<!-- END FLAG TABLES -->"
)

// flagTables renders every flag of the gateway, grouped as --help groups
// them, as Markdown tables.
func flagTables(named cliflag.NamedFlagSets) string {
	var b strings.Builder
	for i, group := range named.Order {
		if i > 0 {
			b.WriteString("\n")
		}
		title := strings.ToUpper(group[:1]) + group[1:]
		fmt.Fprintf(&b, "### %s flags\n\n| flag | type | default | description |\n|---|---|---|---|\n", title)
		named.FlagSet(group).VisitAll(func(f *pflag.Flag) {
			typ, usage := pflag.UnquoteUsage(f)
			name := "`--" + f.Name + "`"
			if f.Shorthand != "" {
				name = "`-" + f.Shorthand + "`, " + name
			}
			def := f.DefValue
			switch def {
			case "", "0", "0s", "false", "[]":
				def = ""
			default:
				def = "`" + def + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, typ, def, cell(usage))
		})
	}
	return b.String()
}

// cell makes text fit one Markdown table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// TestConfigurationDoc keeps docs/configuration.md whole: its flag tables
// are generated from the real flag set, and its GatewayConfig table names
// every key of scrape.GatewayConfig with the default SetDefaults gives.
func TestConfigurationDoc(t *testing.T) {
	b, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	before, rest, ok1 := strings.Cut(doc, flagsBegin+"\n")
	current, after, ok2 := strings.Cut(rest, flagsEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s: want the lines %q and %q", configurationDoc, flagsBegin, flagsEnd)
	}
	want := flagTables(server.NewOptions().Flags())
	if current != want {
		if *update {
			if err := os.WriteFile(configurationDoc, []byte(before+flagsBegin+"\n"+want+flagsEnd+after), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote the flag tables of %s", configurationDoc)
		} else {
			t.Errorf("%s: the flag tables are stale; run go test ./manifests -run TestConfigurationDoc -update", configurationDoc)
		}
	}

	// The example file loads.
	_, example, _ := strings.Cut(doc, "## The configuration file")
	_, example, _ = strings.Cut(example, "```yaml\n")
	example, _, _ = strings.Cut(example, "```")
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs := scrape.LoadConfigFile(f); len(errs) > 0 || !strings.Contains(example, "kind: GatewayConfig") {
		t.Errorf("the example configuration does not load: %v", errs)
	}

	rows := tableRows(doc, "| key |")
	documented := sets.New[string]()
	for _, r := range rows {
		documented.Insert(strings.Trim(r[0], "` "))
	}
	keys := configKeys(reflect.TypeFor[scrape.GatewayConfig](), "")
	if missing := sets.New(keys...).Difference(documented); missing.Len() > 0 {
		t.Errorf("GatewayConfig keys missing from the table: %v", sets.List(missing))
	}
	if extra := documented.Difference(sets.New(keys...)); extra.Len() > 0 {
		t.Errorf("the table documents keys GatewayConfig does not have: %v", sets.List(extra))
	}
	defaults := defaultedConfig(t)
	for _, r := range rows {
		k := strings.Trim(r[0], "` ")
		v, ok := defaults[k]
		if !ok {
			continue
		}
		if len(r) < 3 || !strings.Contains(r[2], "`"+v+"`") {
			t.Errorf("key %s: the default column %q does not say `%s`", k, r, v)
		}
	}
}

// configKeys lists the dotted JSON paths of every field of t.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		k := prefix + name
		keys = append(keys, k)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(f.Type, k+".")...)
		}
	}
	return keys
}

// defaultedConfig is SetDefaults of an empty file, as dotted path → JSON
// value (strings unquoted).
func defaultedConfig(t *testing.T) map[string]string {
	t.Helper()
	c := &scrape.GatewayConfig{}
	scrape.SetDefaults(c)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(prefix+k+".", x)
			}
		case string:
			if v != "" {
				out[strings.TrimSuffix(prefix, ".")] = v
			}
		default:
			j, _ := json.Marshal(v)
			out[strings.TrimSuffix(prefix, ".")] = string(j)
		}
	}
	walk("", m)
	return out
}

// tableRows returns the cells of the rows of every Markdown table whose
// header line starts with header.
func tableRows(doc, header string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, header):
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			rows = append(rows, splitRow(line))
		default:
			in = false
		}
	}
	return rows
}

// splitRow splits a table row on its unescaped pipes.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

var flagName = regexp.MustCompile("`(--[a-z0-9-]+)")

// TestMigrationDoc holds the migration tables to the gateway's flags: a
// flag given as the gateway's equivalent exists, flags said to be the "same"
// exist under their own names, and a flag said to have none ("—") is indeed
// refused.
func TestMigrationDoc(t *testing.T) {
	b, err := os.ReadFile(migrationDoc)
	if err != nil {
		t.Fatal(err)
	}
	names := sets.New[string]()
	for _, fs := range server.NewOptions().Flags().FlagSets {
		fs.VisitAll(func(f *pflag.Flag) { names.Insert("--" + f.Name) })
	}
	rows := 0
	for _, header := range []string{"| metrics-server v0.9.0 | metrics-gateway |", "| prometheus-adapter | metrics-gateway |"} {
		for _, r := range tableRows(string(b), header) {
			rows++
			if len(r) < 2 {
				t.Errorf("row %q: want at least two cells", r)
				continue
			}
			theirs := flagName.FindAllStringSubmatch(r[0], -1)
			ours := flagName.FindAllStringSubmatch(r[1], -1)
			if len(theirs) == 0 {
				t.Errorf("row %q names no flag", r)
			}
			switch strings.TrimSpace(r[1]) {
			case "—":
				for _, m := range theirs {
					if names.Has(m[1]) {
						t.Errorf("%s: the table says the gateway has no equivalent, but it has the flag", m[1])
					}
				}
				continue
			case "same":
				for _, m := range theirs {
					if !names.Has(m[1]) {
						t.Errorf("%s: the table says the gateway has the same flag, but it does not", m[1])
					}
				}
				continue
			}
			if len(ours) == 0 {
				t.Errorf("row %q: the gateway column names no flag and is not —", r)
			}
			for _, m := range ours {
				if !names.Has(m[1]) {
					t.Errorf("%s (for %s): the gateway has no such flag", m[1], strings.TrimSpace(r[0]))
				}
			}
		}
	}
	if rows < 20 {
		t.Errorf("only %d rows in the migration tables", rows)
	}
}

// checkDockerfile holds the image to what the manifests assume: a static
// binary (CGO_ENABLED=0, -trimpath, version stamped) on distroless static
// nonroot, running as 65532, built with the go.mod's Go release.
func checkDockerfile(text, goVersion string) []error {
	var errs []error
	lines := strings.Split(text, "\n")
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "FROM ") {
			last = i
		}
	}
	if last < 0 {
		return []error{fmt.Errorf("no FROM")}
	}
	final := strings.Join(lines[last:], "\n")
	build := strings.Join(lines[:last], "\n")
	release := strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	for _, c := range []struct {
		in, want, why string
	}{
		{final, "FROM gcr.io/distroless/static-debian12:nonroot\n", "final stage is not distroless static nonroot"},
		{final, fmt.Sprintf("\nUSER %d:%d\n", nonrootID, nonrootID), fmt.Sprintf("final stage does not run as %d:%d", nonrootID, nonrootID)},
		{final, `ENTRYPOINT ["/metrics-gateway"]`, "entrypoint is not /metrics-gateway"},
		{build, "golang:" + release + " ", "builder is not golang:" + release + " (go.mod's release)"},
		{build, "RUN go mod download\n", "no go mod download layer"},
		{build, "CGO_ENABLED=0 ", "not built with CGO_ENABLED=0"},
		{build, "go build -trimpath", "not built with -trimpath"},
		{build, "-X " + reflect.TypeFor[server.Options]().PkgPath() + ".Version=${VERSION}", "version not stamped into server.Version"},
		{build, " ./cmd/metrics-gateway\n", "does not build ./cmd/metrics-gateway"},
	} {
		if !strings.Contains(c.in, c.want) {
			errs = append(errs, fmt.Errorf("Dockerfile: %s (want %q)", c.why, c.want))
		}
	}
	if strings.Contains(final, "\nUSER root") || strings.Contains(final, "\nUSER 0") {
		errs = append(errs, fmt.Errorf("Dockerfile: final stage switches to root"))
	}
	return errs
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	goVersion := string(m[1])
	real := string(b)
	for _, tc := range []struct {
		name string
		text string
		want string // "" for no errors
	}{
		{"the Dockerfile", real, ""},
		{"alpine final stage", strings.Replace(real, "gcr.io/distroless/static-debian12:nonroot", "alpine:3", 1), "not distroless"},
		{"runs as root", strings.Replace(real, "USER 65532:65532", "USER root", 1), "does not run as 65532:65532"},
		{"cgo", strings.Replace(real, "CGO_ENABLED=0", "CGO_ENABLED=1", 1), "CGO_ENABLED=0"},
		{"older Go", strings.Replace(real, "golang:1.", "golang:0.", 1), "builder is not golang"},
		{"no version", strings.Replace(real, ".Version=${VERSION}", ".version=${VERSION}", 1), "version not stamped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkDockerfile(tc.text, goVersion)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			if tc.want == "" && len(errs) > 0 {
				t.Errorf("unexpected:\n%s", all)
			}
			if tc.want != "" && !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("want an error containing %q, got:\n%s", tc.want, all)
			}
		})
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".git", "bin", "test"} {
		if !slices.Contains(strings.Split(string(ignore), "\n"), p) {
			t.Errorf(".dockerignore: %s not excluded", p)
		}
	}
}
