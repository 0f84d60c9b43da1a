package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
)

// ServingCertOptions configure the self-managed serving certificate.
type ServingCertOptions struct {
	// Manage turns self-management on. It is off whatever this says when
	// --tls-cert-file is given (cert-manager or your own certificates), and
	// when Namespace is empty (outside a cluster, unless given).
	Manage          bool
	Namespace       string
	SecretName      string
	ServiceName     string
	APIServiceNames []string
	Validity        time.Duration
	// RenewBefore is how long before expiry the certificate is renewed;
	// 0 means a third of Validity.
	RenewBefore time.Duration
}

// serviceAccountNamespaceFile holds the pod's namespace in a cluster.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// startupCertTimeout bounds the wait for the first certificate: the server
// cannot start serving without one.
const startupCertTimeout = time.Minute

func defaultServingCertOptions() ServingCertOptions {
	ns := ""
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		ns = strings.TrimSpace(string(b))
	}
	return ServingCertOptions{
		Manage:          true,
		Namespace:       ns,
		SecretName:      certs.DefaultSecretName,
		ServiceName:     certs.DefaultServiceName,
		APIServiceNames: append([]string(nil), certs.DefaultAPIServiceNames...),
		Validity:        certs.DefaultValidity,
	}
}

func (s *ServingCertOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.Manage, "manage-serving-cert", s.Manage, "Create the serving certificate and its CA, keep them in a Secret, put the CA in the caBundle of the gateway's APIServices and rotate before expiry. Off when --tls-cert-file is given, and outside a cluster unless --serving-cert-namespace is.")
	fs.StringVar(&s.Namespace, "serving-cert-namespace", s.Namespace, "Namespace of the serving-certificate Secret and of the gateway's Service (default: the pod's namespace).")
	fs.StringVar(&s.SecretName, "serving-cert-secret", s.SecretName, "Name of the Secret holding the CA and serving certificate (manifests/base ships it empty; created if missing where RBAC allows). Written only while labeled metrics-gateway.io/serving-cert=owned (or, as earlier manifests did, app.kubernetes.io/managed-by=metrics-gateway).")
	fs.StringVar(&s.ServiceName, "serving-cert-service", s.ServiceName, "Name of the Service in front of the gateway: the certificate names <service>.<namespace>.svc.")
	fs.StringSliceVar(&s.APIServiceNames, "apiservice-names", s.APIServiceNames, "APIServices whose caBundle the gateway sets (only those pointing at its Service are changed).")
	fs.DurationVar(&s.Validity, "serving-cert-validity", s.Validity, "Validity of each serving certificate.")
	fs.DurationVar(&s.RenewBefore, "serving-cert-renew-before", s.RenewBefore, "Renew the serving certificate this long before it expires (default: a third of its validity).")
}

func (s ServingCertOptions) validate() []error {
	var errs []error
	if !s.Manage {
		return nil
	}
	if s.Validity < time.Minute {
		errs = append(errs, fmt.Errorf("serving-cert-validity must be at least 1m, got %v", s.Validity))
	}
	if s.RenewBefore < 0 || s.RenewBefore >= s.Validity {
		errs = append(errs, fmt.Errorf("serving-cert-renew-before must be between 0 and serving-cert-validity, got %v", s.RenewBefore))
	}
	if s.SecretName == "" || s.ServiceName == "" {
		errs = append(errs, fmt.Errorf("serving-cert-secret and serving-cert-service must not be empty"))
	}
	return errs
}

// servingCert sets up the self-managed certificate when it applies: it
// issues (or loads) the certificate, writes it into certDir and returns the
// manager, whose Run keeps it fresh. It returns nil when self-management
// is off.
func (o *Options) servingCert(restConfig *rest.Config) (*certs.Manager, error) {
	s := o.ServingCert
	switch {
	case !s.Manage:
		return nil, nil
	case o.SecureServing.ServerCert.CertKey.CertFile != "":
		klog.InfoS("Serving certificate given with --tls-cert-file: not managing one")
		return nil, nil
	case s.Namespace == "":
		klog.InfoS("Not in a cluster and no --serving-cert-namespace: not managing the serving certificate")
		return nil, nil
	}
	c := rest.CopyConfig(restConfig)
	c.ContentType = "application/json"
	client, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("serving certificate client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("serving certificate client: %w", err)
	}
	dir := o.SecureServing.ServerCert.CertDirectory
	if dir == "" {
		dir = o.StoragePath + "/serving-cert"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("serving certificate dir %s: %w", dir, err)
	}
	m, err := certs.New(certs.Options{
		Client:          client,
		APIServices:     dyn,
		Namespace:       s.Namespace,
		SecretName:      s.SecretName,
		ServiceName:     s.ServiceName,
		APIServiceNames: s.APIServiceNames,
		CertDir:         dir,
		Validity:        s.Validity,
		RenewBefore:     s.RenewBefore,
	})
	if err != nil {
		return nil, err
	}
	// The cause is what failed before the deadline: the last attempt often
	// fails only on the deadline itself (or the client's rate limiter
	// waiting for it).
	var cause error
	ctx, cancel := context.WithTimeout(context.Background(), startupCertTimeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := m.Ensure(ctx)
		if deadline, _ := ctx.Deadline(); err != nil && (cause == nil || time.Until(deadline) > 2*time.Second) {
			if cause == nil || err.Error() != cause.Error() {
				klog.ErrorS(err, "Serving certificate not ready; retrying", "secret", s.Namespace+"/"+s.SecretName)
			}
			cause = err
		}
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("serving certificate in Secret %s/%s: %w", s.Namespace, s.SecretName, cause)
	}
	o.SecureServing.ServerCert.CertKey.CertFile = m.CertFile()
	o.SecureServing.ServerCert.CertKey.KeyFile = m.KeyFile()
	return m, nil
}
