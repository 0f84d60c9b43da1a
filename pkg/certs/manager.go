package certs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Defaults of Options.
const (
	DefaultSecretName  = "metrics-gateway-serving-cert"
	DefaultServiceName = "metrics-gateway"
	DefaultValidity    = 365 * 24 * time.Hour
	DefaultCAValidity  = 10 * 365 * 24 * time.Hour
	DefaultTrustDelay  = time.Minute
	// DefaultInterval is Run's interval when given none: how soon a
	// Secret or APIService changed by hand is put right.
	DefaultInterval = 5 * time.Minute
)

// The Secret's labels say the gateway owns it; a Secret without them is
// never written. OwnerLabel is the mark: Helm sets
// app.kubernetes.io/managed-by=Helm on every object it installs, the
// shipped Secret included, so that label cannot be it. ManagedByLabel =
// ManagedByValue, the mark of earlier manifests, is still accepted, and a
// Secret the gateway creates carries both.
const (
	OwnerLabel     = "metrics-gateway.io/serving-cert"
	OwnerValue     = "owned"
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "metrics-gateway"
)

// Owns says whether a Secret with these labels is the gateway's to write.
func Owns(labels map[string]string) bool {
	return labels[OwnerLabel] == OwnerValue || labels[ManagedByLabel] == ManagedByValue
}

// Options configure a Manager. Zero durations take their defaults.
type Options struct {
	// Client reads and writes the Secret.
	Client kubernetes.Interface
	// APIServices reaches apiregistration.k8s.io/v1 apiservices. It is a
	// dynamic client because k8s.io/kube-aggregator is not a dependency.
	APIServices dynamic.Interface

	// Namespace holds both the Secret and the gateway's Service.
	Namespace  string
	SecretName string // default DefaultSecretName
	// ServiceName is the Service the APIServices point at; the serving
	// certificate names <svc>.<ns>.svc (what the aggregator dials),
	// <svc>.<ns>.svc.cluster.local and <svc>.<ns>.
	ServiceName string // default DefaultServiceName
	// APIServiceNames are the APIServices whose caBundle is set, and only
	// when their spec.service is Namespace/ServiceName.
	APIServiceNames []string
	// CertDir receives tls.crt and tls.key for the apiserver's dynamic
	// serving certificate controller.
	CertDir string

	// Validity of a serving certificate (default DefaultValidity); it is
	// reissued when less than RenewBefore (default Validity/3) is left.
	Validity    time.Duration
	RenewBefore time.Duration
	// CAValidity of the CA (default DefaultCAValidity); a new CA is created
	// when less than CARenewBefore (default CAValidity/3) is left. It must
	// exceed RenewBefore, so a fresh serving certificate is never due.
	CAValidity    time.Duration
	CARenewBefore time.Duration
	// TrustDelay is how long a new CA is in the bundle before it signs a
	// serving certificate, the time every kube-apiserver gets to see the
	// new caBundle (default the lesser of DefaultTrustDelay and
	// RenewBefore/2). It must be less than RenewBefore.
	TrustDelay time.Duration

	Clock  clock.Clock // default the wall clock
	Logger klog.Logger // default klog.Background()
}

// withDefaults fills in zero fields.
func (o Options) withDefaults() Options {
	if o.SecretName == "" {
		o.SecretName = DefaultSecretName
	}
	if o.ServiceName == "" {
		o.ServiceName = DefaultServiceName
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = o.Validity / 3
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CARenewBefore == 0 {
		o.CARenewBefore = o.CAValidity / 3
	}
	if o.TrustDelay == 0 {
		o.TrustDelay = min(DefaultTrustDelay, o.RenewBefore/2)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger.GetSink() == nil {
		o.Logger = klog.Background()
	}
	return o
}

// validate reports every problem at once.
func (o Options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Client != nil, "a Kubernetes client is required")
	check(o.APIServices != nil || len(o.APIServiceNames) == 0, "a dynamic client is required to patch APIServices")
	check(o.Namespace != "", "namespace must not be empty")
	check(o.CertDir != "", "cert directory must not be empty")
	for _, n := range o.APIServiceNames {
		check(n != "", "APIService names must not be empty")
	}
	check(o.Validity > 0, "validity must be positive, got %v", o.Validity)
	check(o.RenewBefore > 0 && o.RenewBefore < o.Validity, "renew-before must be positive and less than the validity %v, got %v", o.Validity, o.RenewBefore)
	check(o.CAValidity > 0, "CA validity must be positive, got %v", o.CAValidity)
	check(o.CARenewBefore > o.RenewBefore && o.CARenewBefore < o.CAValidity, "CA renew-before must be between renew-before %v and the CA validity %v, got %v", o.RenewBefore, o.CAValidity, o.CARenewBefore)
	check(o.TrustDelay >= 0 && o.TrustDelay < o.RenewBefore, "trust delay must be less than renew-before %v, got %v", o.RenewBefore, o.TrustDelay)
	return errors.Join(errs...)
}

// Manager keeps the gateway's serving certificate, its Secret, the files in
// CertDir and the caBundle of its APIServices in step. Its methods are safe
// for concurrent use; reconciles run one at a time.
type Manager struct {
	o      Options
	policy policy

	mu      sync.Mutex
	next    time.Time         // when the last planned material needs another look
	skipped map[string]string // why an APIService was last skipped, logged once
}

// New validates o and returns a Manager. It does not reach the API server.
func New(o Options) (*Manager, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("serving certificate options: %w", err)
	}
	svc := o.ServiceName + "." + o.Namespace
	return &Manager{
		o: o,
		policy: policy{
			serviceName:   o.ServiceName,
			dnsNames:      []string{svc + ".svc", svc + ".svc.cluster.local", svc},
			validity:      o.Validity,
			renewBefore:   o.RenewBefore,
			caValidity:    o.CAValidity,
			caRenewBefore: o.CARenewBefore,
			trustDelay:    o.TrustDelay,
		},
		skipped: map[string]string{},
	}, nil
}

// CertFile is the serving certificate's path: set it as the apiserver's
// --tls-cert-file (SecureServingOptions.ServerCert.CertKey.CertFile).
func (m *Manager) CertFile() string { return filepath.Join(m.o.CertDir, corev1.TLSCertKey) }

// KeyFile is the serving key's path, for ServerCert.CertKey.KeyFile.
func (m *Manager) KeyFile() string { return filepath.Join(m.o.CertDir, corev1.TLSPrivateKeyKey) }

// Ensure reconciles once: it loads the Secret, or creates it with a new CA
// and serving certificate; rotates what is due (and stores it, retrying on
// conflicts with other replicas by re-reading their result); sets the
// caBundle of each named APIService; and writes CertFile and KeyFile when
// their content changed. The files are written even when patching an
// APIService fails, so the gateway can serve; every error is returned,
// joined.
func (m *Manager) Ensure(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mat, err := m.syncSecret(ctx)
	if err != nil {
		return err
	}
	m.next = m.policy.nextEvent(mat, m.o.Clock.Now())
	return errors.Join(
		m.patchAPIServices(ctx, mat.bundle()),
		m.writeFiles(mat),
	)
}

// nextDelay is how long Run waits after a successful Ensure: interval, or
// until a second past the next planned event when that is sooner.
func (m *Manager) nextDelay(interval time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.next.IsZero() {
		return interval
	}
	return min(interval, max(m.next.Sub(m.o.Clock.Now()), 0)+time.Second)
}

// Run calls Ensure now and then every interval, or sooner when a rotation
// or the end of a trust delay falls earlier, until ctx is done. Failures are
// logged and retried after a backoff from one second up to interval. A
// non-positive interval means DefaultInterval.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := m.o.Logger
	var retry time.Duration
	for {
		delay := interval
		if err := m.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = min(max(2*retry, time.Second), interval)
			delay = retry
			log.Error(err, "Serving certificate reconcile failed", "retryIn", delay)
		} else {
			retry = 0
			delay = m.nextDelay(interval)
		}
		t := m.o.Clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
