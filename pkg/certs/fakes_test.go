package certs

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/cert"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	testNamespace = "kube-system"
	testService   = "metrics-gateway"
	testDNSName   = testService + "." + testNamespace + ".svc"
)

// t0 is the fake clock's start, well inside the UTCTime range certificates
// encode.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

// cluster stands in for the API server: Secrets honour resourceVersion
// (Update with a stale one is a Conflict, as on a real server; the fake
// tracker alone accepts it), and APIServices live in a dynamic fake.
type cluster struct {
	kube *fake.Clientset
	dyn  *dynamicfake.FakeDynamicClient

	rv     int // last resourceVersion handed out; guarded by kube's lock
	writes int // successful Secret creates and updates; guarded by kube's lock
}

func newCluster(apiServices ...*unstructured.Unstructured) *cluster {
	objs := make([]runtime.Object, len(apiServices))
	for i, a := range apiServices {
		objs[i] = a
	}
	c := &cluster{
		kube: fake.NewSimpleClientset(),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{APIServiceResource: "APIServiceList"}, objs...),
	}
	c.kube.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret).DeepCopy()
		c.rv++
		s.ResourceVersion = strconv.Itoa(c.rv)
		if err := c.kube.Tracker().Create(secretsResource, s, s.Namespace); err != nil {
			return true, nil, err
		}
		c.writes++
		return true, s, nil
	})
	c.kube.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret).DeepCopy()
		cur, err := c.kube.Tracker().Get(secretsResource, s.Namespace, s.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*corev1.Secret).ResourceVersion != s.ResourceVersion {
			return true, nil, apierrors.NewConflict(secretsResource.GroupResource(), s.Name, errors.New("the object has been modified"))
		}
		c.rv++
		s.ResourceVersion = strconv.Itoa(c.rv)
		if err := c.kube.Tracker().Update(secretsResource, s, s.Namespace); err != nil {
			return true, nil, err
		}
		c.writes++
		return true, s, nil
	})
	return c
}

// replica is a client to the same cluster whose hook runs before each of
// its requests, outside the cluster's lock, so a hook may let another
// replica act first.
func (c *cluster) replica(hook func(k8stesting.Action)) kubernetes.Interface {
	r := fake.NewSimpleClientset()
	r.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if hook != nil {
			hook(a)
		}
		obj, err := c.kube.Invokes(a, nil)
		return true, obj, err
	})
	return r
}

func (c *cluster) secretWrites() int {
	c.kube.Lock()
	defer c.kube.Unlock()
	return c.writes
}

func (c *cluster) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := c.kube.CoreV1().Secrets(testNamespace).Get(context.Background(), DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret: %v", err)
	}
	return s
}

func (c *cluster) apiService(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	a, err := c.dyn.Resource(APIServiceResource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get APIService %s: %v", name, err)
	}
	return a
}

// caBundle decodes an APIService's spec.caBundle.
func (c *cluster) caBundle(t *testing.T, name string) []byte {
	t.Helper()
	s, _, _ := unstructured.NestedString(c.apiService(t, name).Object, "spec", "caBundle")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("APIService %s caBundle: %v", name, err)
	}
	return b
}

// newAPIService is an APIService for group version gv pointing at ns/svc.
func newAPIService(name, ns, svc string, insecure bool) *unstructured.Unstructured {
	spec := map[string]any{
		"groupPriorityMinimum": int64(100),
		"versionPriority":      int64(100),
		"service":              map[string]any{"namespace": ns, "name": svc, "port": int64(443)},
	}
	if insecure {
		spec["insecureSkipTLSVerify"] = true
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
}

// testOptions are short-lived certificates for the rotation tests: the
// serving certificate is due after 6h, the CA after 20h.
func testOptions(t *testing.T, c *cluster, client kubernetes.Interface, clk *clocktesting.FakeClock) Options {
	if client == nil {
		client = c.kube
	}
	return Options{
		Client:          client,
		APIServices:     c.dyn,
		Namespace:       testNamespace,
		ServiceName:     testService,
		APIServiceNames: []string{"v1beta1.metrics.k8s.io"},
		CertDir:         t.TempDir(),
		Validity:        9 * time.Hour,
		RenewBefore:     3 * time.Hour,
		CAValidity:      30 * time.Hour,
		CARenewBefore:   10 * time.Hour,
		TrustDelay:      30 * time.Minute,
		Clock:           clk,
		Logger:          ktesting.NewLogger(t, ktesting.NewConfig()),
	}
}

func newManager(t *testing.T, o Options) *Manager {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ensure(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
}

// servingCert reads the serving certificate a manager wrote.
func servingCert(t *testing.T, m *Manager) *x509.Certificate {
	t.Helper()
	certs, err := cert.CertsFromFile(m.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// verifies reports whether leaf verifies for the aggregator's dial name
// against the PEM bundle at now.
func verifies(leaf *x509.Certificate, bundle []byte, now time.Time) error {
	pool, err := cert.NewPoolFromBytes(bundle)
	if err != nil {
		return err
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		DNSName:     testDNSName,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
