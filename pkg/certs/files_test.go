package certs

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestFiles(t *testing.T) {
	c := newCluster()
	clk := clocktesting.NewFakeClock(t0)
	m := newManager(t, testOptions(t, c, nil, clk))
	ensure(t, m)

	entries, err := os.ReadDir(m.o.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"tls.crt", "tls.key"}; !slices.Equal(names, want) {
		t.Errorf("cert dir holds %v, want %v: temporary files left behind", names, want)
	}
	if st, err := os.Stat(m.KeyFile()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v, want 0600", err, st.Mode().Perm())
	}

	// Mark both files as old; what is rewritten gets a new inode (rename)
	// and a new mtime.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	stat := func() (crt, key os.FileInfo) {
		t.Helper()
		crt, err1 := os.Stat(m.CertFile())
		key, err2 := os.Stat(m.KeyFile())
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return crt, key
	}
	age := func() (crt, key os.FileInfo) {
		t.Helper()
		for _, f := range []string{m.CertFile(), m.KeyFile()} {
			if err := os.Chtimes(f, old, old); err != nil {
				t.Fatal(err)
			}
		}
		return stat()
	}

	for _, tc := range []struct {
		name            string
		change          func()
		wantCrt, wantKy bool // rewritten
	}{
		{name: "unchanged", change: func() {}},
		{name: "certificate edited on disk", change: func() {
			if err := os.WriteFile(m.CertFile(), []byte("edited"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantCrt: true},
		{name: "rotation", change: func() { clk.Step(6 * time.Hour) }, wantCrt: true, wantKy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crt0, key0 := age()
			tc.change()
			if tc.wantCrt && !tc.wantKy {
				crt0, _ = stat() // the edit itself is not what is measured
			}
			ensure(t, m)
			crt1, key1 := stat()
			for _, f := range []struct {
				name       string
				before, at os.FileInfo
				want       bool
			}{{"tls.crt", crt0, crt1, tc.wantCrt}, {"tls.key", key0, key1, tc.wantKy}} {
				replaced := !os.SameFile(f.before, f.at)
				touched := !f.at.ModTime().Equal(old)
				if replaced != f.want || touched != f.want {
					t.Errorf("%s: replaced by rename %v, mtime changed %v; want %v", f.name, replaced, touched, f.want)
				}
			}
			sec := c.secret(t)
			if !bytes.Equal(readFile(t, m.CertFile()), sec.Data["tls.crt"]) || !bytes.Equal(readFile(t, m.KeyFile()), sec.Data["tls.key"]) {
				t.Error("files differ from the secret")
			}
		})
	}
}

// TestApiserverReloads runs the apiserver's own file-watching serving
// certificate controller on the files and checks it picks up a rotation.
func TestApiserverReloads(t *testing.T) {
	c := newCluster()
	clk := clocktesting.NewFakeClock(t0)
	m := newManager(t, testOptions(t, c, nil, clk))
	ensure(t, m)

	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("serving-cert", m.CertFile(), m.KeyFile())
	if err != nil {
		t.Fatalf("the apiserver cannot load the files: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		content.Run(ctx, 1)
	}()
	defer func() {
		cancel()
		<-done
	}()
	first, _ := content.CurrentCertKeyContent()

	// Rotate twice: the second rename replaces files whose watch the first
	// one had to re-establish.
	for i := range 2 {
		clk.Step(6 * time.Hour)
		ensure(t, m)
		want := readFile(t, m.CertFile())
		if bytes.Equal(want, first) {
			t.Fatal("no rotation")
		}
		waitFor(t, "the apiserver to load the rotated certificate", func() bool {
			crt, key := content.CurrentCertKeyContent()
			return bytes.Equal(crt, want) && bytes.Equal(key, readFile(t, m.KeyFile()))
		})
		first = want
		t.Logf("rotation %d loaded", i+1)
	}
}
