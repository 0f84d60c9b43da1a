package certs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestNewValidates(t *testing.T) {
	c := newCluster()
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want []string // substrings of the error, all reported at once; none: valid
	}{
		{name: "test options", mod: func(*Options) {}},
		{name: "defaults", mod: func(o *Options) {
			o.Validity, o.RenewBefore, o.CAValidity, o.CARenewBefore, o.TrustDelay = 0, 0, 0, 0, 0
		}},
		{name: "short validity gets a short trust delay", mod: func(o *Options) {
			o.Validity, o.RenewBefore, o.TrustDelay = time.Minute, 0, 0
		}},
		{name: "missing fields", mod: func(o *Options) {
			o.Client, o.APIServices, o.Namespace, o.CertDir = nil, nil, "", ""
			o.APIServiceNames = []string{"a", ""}
		}, want: []string{"Kubernetes client", "dynamic client", "namespace", "cert directory", "APIService names"}},
		{name: "renew before validity", mod: func(o *Options) { o.RenewBefore = o.Validity }, want: []string{"renew-before must be positive and less than"}},
		{name: "CA renews before serving", mod: func(o *Options) { o.CARenewBefore = o.RenewBefore }, want: []string{"CA renew-before must be between"}},
		{name: "trust delay", mod: func(o *Options) { o.TrustDelay = o.RenewBefore }, want: []string{"trust delay"}},
		{name: "negative", mod: func(o *Options) { o.Validity, o.CAValidity = -time.Hour, -time.Hour }, want: []string{"validity must be positive", "CA validity must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, c, nil, clocktesting.NewFakeClock(t0))
			tc.mod(&o)
			_, err := New(o)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted %+v", o)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestEnsureFirstRun(t *testing.T) {
	c := newCluster(
		newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, true),
		newAPIService("v1beta1.custom.metrics.k8s.io", testNamespace, testService, false),
		newAPIService("v1beta1.external.metrics.k8s.io", testNamespace, testService, true),
		newAPIService("v1beta1.foreign.example.com", testNamespace, "metrics-server", false),
	)
	before := map[string]*unstructured.Unstructured{}
	for _, n := range []string{"v1beta1.external.metrics.k8s.io", "v1beta1.foreign.example.com"} {
		before[n] = c.apiService(t, n)
	}
	clk := clocktesting.NewFakeClock(t0)
	o := testOptions(t, c, nil, clk)
	o.APIServiceNames = []string{
		"v1beta1.metrics.k8s.io",
		"v1beta1.custom.metrics.k8s.io",
		"v1beta2.custom.metrics.k8s.io", // not installed
		"v1beta1.foreign.example.com",   // another server's
	}
	m := newManager(t, o)
	ensure(t, m)

	s := c.secret(t)
	if s.Type != corev1.SecretTypeTLS || s.Labels[OwnerLabel] != OwnerValue || s.Labels[ManagedByLabel] != ManagedByValue {
		t.Errorf("secret type %s labels %v, want %s, %s=%s and %s=%s", s.Type, s.Labels, corev1.SecretTypeTLS, OwnerLabel, OwnerValue, ManagedByLabel, ManagedByValue)
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, caCertKey, caKeyKey} {
		if len(s.Data[k]) == 0 {
			t.Errorf("secret has no %s", k)
		}
	}
	if !bytes.Equal(readFile(t, m.CertFile()), s.Data[corev1.TLSCertKey]) || !bytes.Equal(readFile(t, m.KeyFile()), s.Data[corev1.TLSPrivateKeyKey]) {
		t.Error("files differ from the secret")
	}
	leaf := servingCert(t, m)
	if err := verifies(leaf, s.Data[caCertKey], clk.Now()); err != nil {
		t.Errorf("serving certificate does not verify against ca.crt: %v", err)
	}
	want := []string{testDNSName, testDNSName + ".cluster.local", testService + "." + testNamespace}
	if !equality.Semantic.DeepEqual(leaf.DNSNames, want) {
		t.Errorf("DNS names %v, want %v", leaf.DNSNames, want)
	}
	if got := leaf.NotAfter.Sub(clk.Now()); got != o.Validity {
		t.Errorf("validity %v, want %v", got, o.Validity)
	}

	for _, n := range []string{"v1beta1.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"} {
		if !bytes.Equal(c.caBundle(t, n), s.Data[caCertKey]) {
			t.Errorf("%s: caBundle is not the secret's ca.crt", n)
		}
		if insecure, _, _ := unstructured.NestedBool(c.apiService(t, n).Object, "spec", "insecureSkipTLSVerify"); insecure {
			t.Errorf("%s: insecureSkipTLSVerify still true", n)
		}
	}
	for n, b := range before {
		if after := c.apiService(t, n); !equality.Semantic.DeepEqual(after, b) {
			t.Errorf("%s changed:\n%v\n%v", n, b, after)
		}
	}
}

func TestEnsureReusesSecret(t *testing.T) {
	c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
	clk := clocktesting.NewFakeClock(t0)
	a := newManager(t, testOptions(t, c, nil, clk))
	ensure(t, a)
	clk.Step(time.Hour)
	b := newManager(t, testOptions(t, c, nil, clk))
	ensure(t, b)
	ensure(t, a)
	restarted := a.o
	restarted.Logger = b.o.Logger
	ensure(t, newManager(t, restarted))

	if got := c.secretWrites(); got != 1 {
		t.Errorf("%d secret writes, want 1", got)
	}
	patches := 0
	for _, act := range c.dyn.Actions() {
		if act.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 1 {
		t.Errorf("%d APIService patches, want 1", patches)
	}
	for _, f := range []func(*Manager) string{(*Manager).CertFile, (*Manager).KeyFile} {
		if !bytes.Equal(readFile(t, f(a)), readFile(t, f(b))) {
			t.Errorf("replicas serve different %s", f(a))
		}
	}
}

// TestReplicaRaces lets replica a act between replica b's read of the
// Secret and b's write: b must end up with a's result and nothing is
// rotated twice.
func TestReplicaRaces(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verb    string        // b's request before which a reconciles
		advance time.Duration // clock step after both converged once; 0: race on the first run
		writes  int
	}{
		{name: "create", verb: "create", writes: 1},
		{name: "rotate", verb: "update", advance: 6 * time.Hour, writes: 2},
		{name: "rotate CA", verb: "update", advance: 20 * time.Hour, writes: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
			clk := clocktesting.NewFakeClock(t0)
			a := newManager(t, testOptions(t, c, nil, clk))
			armed, raced := false, false
			b := newManager(t, testOptions(t, c, c.replica(func(act k8stesting.Action) {
				if armed && !raced && act.GetVerb() == tc.verb {
					raced = true
					ensure(t, a)
				}
			}), clk))
			if tc.advance > 0 {
				ensure(t, a)
				ensure(t, b)
				clk.Step(tc.advance)
			}
			armed = true
			ensure(t, b)
			if !raced {
				t.Fatalf("b never sent %s", tc.verb)
			}
			if got := c.secretWrites(); got != tc.writes {
				t.Errorf("%d secret writes, want %d", got, tc.writes)
			}
			s := c.secret(t)
			for _, m := range []*Manager{a, b} {
				if !bytes.Equal(readFile(t, m.CertFile()), s.Data[corev1.TLSCertKey]) {
					t.Error("a replica serves a certificate other than the secret's")
				}
			}
			if err := verifies(servingCert(t, b), c.caBundle(t, "v1beta1.metrics.k8s.io"), clk.Now()); err != nil {
				t.Errorf("serving certificate does not verify against the caBundle: %v", err)
			}
		})
	}
}

func TestConcurrentReplicas(t *testing.T) {
	c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
	clk := clocktesting.NewFakeClock(t0)
	ms := make([]*Manager, 8)
	for i := range ms {
		ms[i] = newManager(t, testOptions(t, c, c.replica(nil), clk))
	}
	for round, step := range []time.Duration{0, 6 * time.Hour} {
		clk.Step(step)
		ensureConcurrently(t, ms)
		if got := c.secretWrites(); got != round+1 {
			t.Errorf("round %d: %d secret writes, want %d", round, got, round+1)
		}
		want := c.secret(t).Data[corev1.TLSCertKey]
		for i, m := range ms {
			if !bytes.Equal(readFile(t, m.CertFile()), want) {
				t.Errorf("round %d: replica %d serves another certificate", round, i)
			}
		}
	}
}

// TestShippedEmptySecret is the install manifests/base makes: the Secret
// exists, empty and labeled, and the gateway may not create Secrets. Eight
// replicas fill it with exactly one write and all serve what it holds.
func TestShippedEmptySecret(t *testing.T) {
	c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
	shipped := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: DefaultSecretName, ResourceVersion: "shipped",
			Labels: map[string]string{ManagedByLabel: ManagedByValue, "app.kubernetes.io/name": "metrics-gateway"}},
		Type: corev1.SecretTypeOpaque,
	}
	if err := c.kube.Tracker().Add(shipped); err != nil {
		t.Fatal(err)
	}
	c.kube.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(secretsResource.GroupResource(), "", errors.New("no create on secrets"))
	})
	clk := clocktesting.NewFakeClock(t0)
	ms := make([]*Manager, 8)
	for i := range ms {
		ms[i] = newManager(t, testOptions(t, c, c.replica(nil), clk))
	}
	ensureConcurrently(t, ms)
	if got := c.secretWrites(); got != 1 {
		t.Errorf("%d secret writes, want 1", got)
	}
	s := c.secret(t)
	if s.Type != corev1.SecretTypeOpaque || len(s.Data[corev1.TLSCertKey]) == 0 {
		t.Fatalf("Secret type %s, keys %d", s.Type, len(s.Data))
	}
	for i, m := range ms {
		if !bytes.Equal(readFile(t, m.CertFile()), s.Data[corev1.TLSCertKey]) {
			t.Errorf("replica %d serves another certificate", i)
		}
	}
}

// ensureConcurrently runs Ensure on every replica at once.
func ensureConcurrently(t *testing.T, ms []*Manager) {
	t.Helper()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			if err := m.Ensure(context.Background()); err != nil {
				t.Errorf("Ensure: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestSecretOwnership(t *testing.T) {
	managed := map[string]string{ManagedByLabel: ManagedByValue}
	for _, tc := range []struct {
		name     string
		labels   map[string]string
		secret   corev1.Secret
		wantErr  string
		wantType corev1.SecretType
	}{
		{name: "not ours", secret: corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x")}}, wantErr: "not labeled"},
		{name: "wrong type", labels: managed, secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, wantErr: "has type"},
		{name: "pre-created empty", labels: managed, secret: corev1.Secret{Type: corev1.SecretTypeOpaque}, wantType: corev1.SecretTypeOpaque},
		{name: "garbage", labels: managed, secret: corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{
			"tls.crt": []byte("x"), "tls.key": []byte("y"), "ca.crt": []byte("z"), "ca.key": []byte("w"), "extra": nil,
		}}, wantType: corev1.SecretTypeTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			s := tc.secret.DeepCopy()
			s.ObjectMeta = metav1.ObjectMeta{Name: DefaultSecretName, Namespace: testNamespace, Labels: tc.labels}
			if err := c.kube.Tracker().Add(s); err != nil {
				t.Fatal(err)
			}
			clk := clocktesting.NewFakeClock(t0)
			m := newManager(t, testOptions(t, c, nil, clk))
			err := m.Ensure(context.Background())
			got := c.secret(t)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ensure: %v, want an error with %q", err, tc.wantErr)
				}
				if !equality.Semantic.DeepEqual(got, s) {
					t.Errorf("secret changed: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if got.Type != tc.wantType || len(got.Data) != 4 {
				t.Errorf("secret type %s with %d keys, want %s with 4", got.Type, len(got.Data), tc.wantType)
			}
			if err := verifies(servingCert(t, m), got.Data[caCertKey], clk.Now()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRun(t *testing.T) {
	c := newCluster(newAPIService("v1beta1.metrics.k8s.io", testNamespace, testService, false))
	failures := 1
	c.kube.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures > 0 {
			failures--
			return true, nil, errors.New("apiserver unavailable")
		}
		return false, nil, nil
	})
	clk := clocktesting.NewFakeClock(t0)
	m := newManager(t, testOptions(t, c, nil, clk))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, 24*time.Hour)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// The first attempt fails and is retried after a second, not a day.
	waitFor(t, "Run to wait for its retry", clk.HasWaiters)
	if _, err := os.Stat(m.CertFile()); err == nil {
		t.Fatal("files written despite the failure")
	}
	clk.Step(time.Second)
	waitFor(t, "the first certificate", func() bool { _, err := os.Stat(m.CertFile()); return err == nil })
	first := readFile(t, m.CertFile())

	// The serving certificate is due after 6h; Run wakes for it although
	// its interval is a day.
	waitFor(t, "Run to wait", clk.HasWaiters)
	clk.Step(6*time.Hour + time.Second)
	waitFor(t, "the rotated certificate", func() bool {
		b, err := os.ReadFile(m.CertFile())
		return err == nil && !bytes.Equal(b, first)
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// waitFor polls cond in real time: the goroutine under test runs freely.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
