package certs

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// TestRotation walks the clock through the lives of serving certificates
// and CAs. After every step the served certificate must verify against the
// APIService's caBundle; when it changed, it must (except where noted) also
// verify against the caBundle published before the step, the one a
// kube-apiserver may still hold.
func TestRotation(t *testing.T) {
	type step struct {
		at         time.Duration // since t0
		newCA      bool
		newLeaf    bool
		bundle     int  // CAs in the caBundle
		signer     int  // index in the caBundle of the CA that signed the served certificate
		untrusted  bool // the new certificate need not verify against the previous caBundle
		leafExpiry time.Duration
	}
	for _, tc := range []struct {
		name  string
		mod   func(*Options)
		steps []step
	}{
		{
			// Serving: 9h, due at 6h. CA: 30h, due at 20h. Trust delay 30m.
			name: "on schedule",
			steps: []step{
				{at: 0, newCA: true, newLeaf: true, bundle: 1, untrusted: true, leafExpiry: 9 * time.Hour},
				{at: 6*time.Hour - time.Second, bundle: 1},
				{at: 6 * time.Hour, newLeaf: true, bundle: 1, leafExpiry: 15 * time.Hour},
				{at: 12 * time.Hour, newLeaf: true, bundle: 1, leafExpiry: 21 * time.Hour},
				{at: 18 * time.Hour, newLeaf: true, bundle: 1, leafExpiry: 27 * time.Hour},
				// The new CA is bundled; the served certificate stays.
				{at: 20 * time.Hour, newCA: true, bundle: 2, signer: 1},
				{at: 24 * time.Hour, newLeaf: true, bundle: 2, leafExpiry: 33 * time.Hour},
				// The old CA expires and leaves the bundle, as the serving
				// certificate comes due.
				{at: 30 * time.Hour, newLeaf: true, bundle: 1, leafExpiry: 39 * time.Hour},
				{at: 36*time.Hour - time.Second, bundle: 1},
			},
		},
		{
			// The CA (18h) and the serving certificate come due together at
			// 6h: the new CA signs only after the trust delay.
			name: "CA and serving certificate due together",
			mod:  func(o *Options) { o.CAValidity, o.CARenewBefore = 18*time.Hour, 12*time.Hour },
			steps: []step{
				{at: 0, newCA: true, newLeaf: true, bundle: 1, untrusted: true},
				{at: 6 * time.Hour, newCA: true, bundle: 2, signer: 1},
				{at: 6*time.Hour + 29*time.Minute, bundle: 2, signer: 1},
				{at: 6*time.Hour + 30*time.Minute, newLeaf: true, bundle: 2, leafExpiry: 15*time.Hour + 30*time.Minute},
			},
		},
		{
			// Down until the serving certificate almost expired: waiting
			// out the trust delay would let it expire, so it is replaced
			// at once.
			name: "serving certificate expires within the trust delay",
			mod:  func(o *Options) { o.CAValidity, o.CARenewBefore = 18*time.Hour, 12*time.Hour },
			steps: []step{
				{at: 0, newCA: true, newLeaf: true, bundle: 1, untrusted: true},
				{at: 8*time.Hour + 45*time.Minute, newCA: true, newLeaf: true, bundle: 2, untrusted: true},
			},
		},
		{
			name: "down past every expiry",
			steps: []step{
				{at: 0, newCA: true, newLeaf: true, bundle: 1, untrusted: true},
				{at: 100 * time.Hour, newCA: true, newLeaf: true, bundle: 1, untrusted: true, leafExpiry: 109 * time.Hour},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
			clk := clocktesting.NewFakeClock(t0)
			o := testOptions(t, c, nil, clk)
			if tc.mod != nil {
				tc.mod(&o)
			}
			m := newManager(t, o)
			var prevBundle []byte
			var prevCA, prevLeaf *x509.Certificate
			for i, s := range tc.steps {
				clk.SetTime(t0.Add(s.at))
				ensure(t, m)
				bundle := c.caBundle(t, "v1beta1.metrics.k8s.io")
				cas := parseBundle(t, bundle)
				leaf := servingCert(t, m)
				if got := prevCA == nil || !cas[0].Equal(prevCA); got != s.newCA {
					t.Errorf("step %d (%v): new CA %v, want %v", i, s.at, got, s.newCA)
				}
				if got := prevLeaf == nil || !leaf.Equal(prevLeaf); got != s.newLeaf {
					t.Errorf("step %d (%v): new serving certificate %v, want %v", i, s.at, got, s.newLeaf)
				}
				if len(cas) != s.bundle {
					t.Errorf("step %d (%v): %d CAs in the caBundle, want %d", i, s.at, len(cas), s.bundle)
				}
				if err := leaf.CheckSignatureFrom(cas[min(s.signer, len(cas)-1)]); err != nil {
					t.Errorf("step %d (%v): served certificate not signed by bundled CA %d: %v", i, s.at, s.signer, err)
				}
				if err := verifies(leaf, bundle, clk.Now()); err != nil {
					t.Errorf("step %d (%v): served certificate does not verify against the caBundle: %v", i, s.at, err)
				}
				if s.newLeaf && !s.untrusted {
					if err := verifies(leaf, prevBundle, clk.Now()); err != nil {
						t.Errorf("step %d (%v): new certificate does not verify against the previous caBundle: %v", i, s.at, err)
					}
				}
				if s.leafExpiry != 0 && !leaf.NotAfter.Equal(t0.Add(s.leafExpiry)) {
					t.Errorf("step %d (%v): serving certificate expires at %v, want t0+%v", i, s.at, leaf.NotAfter, s.leafExpiry)
				}
				if sec := c.secret(t); !bytes.Equal(sec.Data[caCertKey], bundle) {
					t.Errorf("step %d (%v): caBundle differs from the secret's ca.crt", i, s.at)
				}
				prevBundle, prevCA, prevLeaf = bundle, cas[0], leaf
			}
		})
	}
}

func parseBundle(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	m := parseMaterial(map[string][]byte{caCertKey: b})
	if len(m.cas) == 0 {
		t.Fatal("empty caBundle")
	}
	return m.cas
}

// TestNextDelay checks Run wakes for the next planned event, not later (a
// rotation would be missed by up to the interval) and not in a loop.
func TestNextDelay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mod      func(*Options)
		ensureAt []time.Duration
		interval time.Duration
		want     time.Duration
	}{
		{name: "serving certificate due", ensureAt: []time.Duration{0}, interval: 24 * time.Hour, want: 6*time.Hour + time.Second},
		{name: "interval sooner", ensureAt: []time.Duration{0}, interval: time.Hour, want: time.Hour},
		{name: "after a rotation", ensureAt: []time.Duration{0, 6 * time.Hour}, interval: 24 * time.Hour, want: 6*time.Hour + time.Second},
		{
			name:     "waiting out the trust delay",
			mod:      func(o *Options) { o.CAValidity, o.CARenewBefore = 18*time.Hour, 12*time.Hour },
			ensureAt: []time.Duration{0, 6 * time.Hour},
			interval: 24 * time.Hour,
			want:     30*time.Minute + time.Second,
		},
		{name: "renewal after a CA rotation", ensureAt: []time.Duration{0, 20 * time.Hour, 24 * time.Hour}, interval: 24 * time.Hour, want: 2*time.Hour + time.Second},
		{name: "old CA expires", ensureAt: []time.Duration{0, 20 * time.Hour, 26 * time.Hour}, interval: 24 * time.Hour, want: 4*time.Hour + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			clk := clocktesting.NewFakeClock(t0)
			o := testOptions(t, c, nil, clk)
			if tc.mod != nil {
				tc.mod(&o)
			}
			m := newManager(t, o)
			for _, at := range tc.ensureAt {
				clk.SetTime(t0.Add(at))
				ensure(t, m)
			}
			if got := m.nextDelay(tc.interval); got != tc.want {
				t.Errorf("next delay %v, want %v", got, tc.want)
			}
		})
	}
}
