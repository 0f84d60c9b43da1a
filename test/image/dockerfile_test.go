package image

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// stage is one FROM ... block of the Dockerfile: its instructions with
// continuation lines joined and comments dropped.
type stage struct {
	from  string
	lines []string
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages []stage
		cur    strings.Builder
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		ins := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		if strings.HasPrefix(ins, "FROM ") {
			stages = append(stages, stage{from: ins})
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", ins)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, ins)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// TestDockerfileBuildStage runs the build stage's COPY and `go build` RUN
// lines in a directory holding only what the stage copies, so a package
// outside the copied directories, cgo, or a dynamic link fails here and not
// first in a release build. The binary must be static and run as the final
// stage's USER with an empty environment, as in distroless.
func TestDockerfileBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and final", len(stages))
	}
	build, final := stages[0], stages[1]
	if !strings.HasSuffix(build.from, " AS build") || !strings.HasPrefix(final.from, "FROM gcr.io/distroless/static") || !strings.Contains(final.from, ":nonroot") {
		t.Fatalf("stages %q and %q, want a build stage and distroless static nonroot", build.from, final.from)
	}

	ctxDir := t.TempDir()
	// Not t.TempDir: its parent is private to root, and the binary must
	// run as 65532 below.
	out, err := os.MkdirTemp("", "imagecheck-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(out) })
	var goBuild string
	for _, ins := range build.lines {
		switch {
		case strings.HasPrefix(ins, "COPY "):
			args := strings.Fields(ins)[1:]
			for _, src := range args[:len(args)-1] {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(ctxDir, src)), 0o755); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command("cp", "-r", filepath.Join(root, src), filepath.Join(ctxDir, src))
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", ins, err, b)
				}
			}
		case strings.HasPrefix(ins, "RUN ") && strings.Contains(ins, "go build"):
			goBuild = strings.TrimPrefix(ins, "RUN ")
		}
	}
	if goBuild == "" {
		t.Fatal("no RUN ... go build in the build stage")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X github.com/metrics-gateway/metrics-gateway/pkg/server.Version=${VERSION}", "-o /out/metrics-gateway"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("build lacks %q: %s", want, goBuild)
		}
	}
	const version = "v9.9.9-imagecheck"
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(goBuild, "/out/", out+"/"))
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), "VERSION="+version, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build, in a context of only its COPY sources: %v\n%s", err, b)
	}
	bin := filepath.Join(out, "metrics-gateway")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): distroless static has no libc", p.Type)
		}
	}
	_ = f.Close()

	// The final stage: the binary goes to /metrics-gateway, runs as 65532.
	var user, entry, copyBin string
	for _, ins := range final.lines {
		switch {
		case strings.HasPrefix(ins, "USER "):
			user = strings.TrimPrefix(ins, "USER ")
		case strings.HasPrefix(ins, "ENTRYPOINT "):
			entry = strings.TrimPrefix(ins, "ENTRYPOINT ")
		case strings.HasPrefix(ins, "COPY --from=build "):
			copyBin = strings.TrimPrefix(ins, "COPY --from=build ")
		}
	}
	if user != "65532:65532" || entry != `["/metrics-gateway"]` || copyBin != "/out/metrics-gateway /metrics-gateway" {
		t.Fatalf("final stage: USER %q ENTRYPOINT %q COPY %q", user, entry, copyBin)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--version"}, {"doctor", "--help"}} {
		run := exec.Command(bin, args...)
		run.Env = []string{}
		if os.Geteuid() == 0 {
			run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		}
		b, err := run.CombinedOutput()
		if err != nil {
			t.Fatalf("%v as 65532: %v\n%s", args, err, b)
		}
		if args[0] == "--version" && !strings.Contains(string(b), version) {
			t.Errorf("--version says %q, want the VERSION build argument %s", b, version)
		}
	}
}
