package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestTokenDirSweep: a gateway removes the kubelet token directories of
// gateways that ended without removing theirs (their lock is free), and
// leaves those of running gateways (held) and those without a lock file.
func TestTokenDirSweep(t *testing.T) {
	parent := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	running, runningLock, err := makeTokenDir(parent, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer runningLock.Release()
	killed, killedLock, err := makeTokenDir(parent, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(killed, "token"), []byte("still valid"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A SIGKILL closes the process's files, which drops the lock and
	// leaves the directory.
	if err := killedLock.Release(); err != nil {
		t.Fatal(err)
	}
	unlocked := filepath.Join(parent, tokenDirPrefix+"being-made")
	if err := os.Mkdir(unlocked, 0o700); err != nil {
		t.Fatal(err)
	}

	fresh, freshLock, err := makeTokenDir(parent, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer freshLock.Release()
	got, _ := filepath.Glob(filepath.Join(parent, tokenDirPrefix+"*"))
	want := []string{running, unlocked, fresh}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("token directories after a start: %v, want %v (%s removed)", got, want, killed)
	}
	if _, err := os.Stat(filepath.Join(fresh, "lock")); err != nil {
		t.Errorf("the new directory has no lock file: %v", err)
	}
}
