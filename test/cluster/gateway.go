package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/pki"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	apiregv1ac "k8s.io/kube-aggregator/pkg/client/applyconfiguration/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// The gateway's Service, as metrics-server's manifests name theirs. The aggregator checks
// the gateway's serving certificate against GatewayServiceName.GatewayServiceNamespace.svc
// (not against "localhost", the address it dials), so a serving cert must carry that name;
// GatewayServingCert issues one.
const (
	GatewayServiceName      = "metrics-gateway"
	GatewayServiceNamespace = "kube-system"
	// DefaultGatewayUser is the user GatewayCredentials("") creates.
	DefaultGatewayUser = "metrics-gateway"
)

// fieldManager owns everything the harness applies, so re-registering (a gateway
// restarted on a new port) is a clean server-side apply rather than create-or-update.
const fieldManager = "metrics-gateway-harness"

// apiTimeout bounds the helpers whose signature has no context.
const apiTimeout = 30 * time.Second

var applyOpts = metav1.ApplyOptions{FieldManager: fieldManager, Force: true}

// GatewayCredentials issues a client certificate for user name (default
// DefaultGatewayUser), writes Dir/<name>.kubeconfig and grants that user what
// metrics-server's manifests grant metrics-server: read nodes, nodes/metrics, pods and
// namespaces; system:auth-delegator (TokenReview/SubjectAccessReview for delegated
// authn/authz); extension-apiserver-authentication-reader in kube-system (the
// requestheader CA ConfigMap); plus the system:aggregated-metrics-reader ClusterRole
// that lets view/edit/admin read metrics.k8s.io. Calling it again re-issues the
// certificate and re-applies the same objects.
func (c *Cluster) GatewayCredentials(name string) (kubeconfigPath string, err error) {
	if name == "" {
		name = DefaultGatewayUser
	}
	ca, err := pki.LoadCA(c.layout.pkiDir(), caName)
	if err != nil {
		return "", fmt.Errorf("load cluster CA: %w", err)
	}
	certPEM, keyPEM, err := issue(ca, pki.Leaf{CN: name, Client: true})
	if err != nil {
		return "", err
	}
	kubeconfigPath = c.layout.kubeconfig(strings.ReplaceAll(name, ":", "-"))
	if err := writeKubeconfig(kubeconfigPath, c.Host, name, ca.CertPEM, certPEM, keyPEM); err != nil {
		return "", err
	}
	client, err := c.Client()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := applyGatewayRBAC(ctx, client, name); err != nil {
		return "", fmt.Errorf("apply RBAC for %s: %w", name, err)
	}
	return kubeconfigPath, nil
}

func applyGatewayRBAC(ctx context.Context, client kubernetes.Interface, user string) error {
	rbac := client.RbacV1()
	subject := rbacv1ac.Subject().WithKind("User").WithAPIGroup("rbac.authorization.k8s.io").WithName(user)
	read := []string{"get", "list", "watch"}
	roleName := "system:" + user

	if _, err := rbac.ClusterRoles().Apply(ctx, rbacv1ac.ClusterRole(roleName).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("nodes", "nodes/metrics", "pods", "namespaces").WithVerbs(read...),
	), applyOpts); err != nil {
		return err
	}
	if _, err := rbac.ClusterRoles().Apply(ctx, rbacv1ac.ClusterRole("system:aggregated-metrics-reader").
		WithLabels(map[string]string{
			"rbac.authorization.k8s.io/aggregate-to-view":  "true",
			"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
			"rbac.authorization.k8s.io/aggregate-to-admin": "true",
		}).
		WithRules(rbacv1ac.PolicyRule().WithAPIGroups("metrics.k8s.io").WithResources("pods", "nodes").WithVerbs(read...)),
		applyOpts); err != nil {
		return err
	}
	bindings := []struct{ name, role string }{
		{roleName, roleName},
		{user + ":system:auth-delegator", "system:auth-delegator"},
	}
	for _, b := range bindings {
		if _, err := rbac.ClusterRoleBindings().Apply(ctx, rbacv1ac.ClusterRoleBinding(b.name).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(b.role)).
			WithSubjects(subject), applyOpts); err != nil {
			return err
		}
	}
	_, err := rbac.RoleBindings(GatewayServiceNamespace).Apply(ctx,
		rbacv1ac.RoleBinding(user+"-auth-reader", GatewayServiceNamespace).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").
				WithName("extension-apiserver-authentication-reader")).
			WithSubjects(subject), applyOpts)
	return err
}

// GatewayServingCert issues a serving certificate, signed by the cluster CA, for an
// aggregated server on this host: SANs GatewayServiceName.GatewayServiceNamespace.svc
// (what the aggregator verifies), its .cluster.local form, localhost and 127.0.0.1. It
// returns the file paths under Dir/pki and the CA bundle to put in the APIService.
// The pair is issued once per cluster and the same files returned after: gateways
// started at once (two replicas) each asked for one, and a pair rewritten while another
// gateway read it gave that gateway one pair's certificate and the other's key ("tls:
// private key does not match public key"); a running gateway reloads the files too.
func (c *Cluster) GatewayServingCert() (certFile, keyFile string, caBundle []byte, err error) {
	c.servingMu.Lock()
	defer c.servingMu.Unlock()
	ca, err := pki.LoadCA(c.layout.pkiDir(), caName)
	if err != nil {
		return "", "", nil, fmt.Errorf("load cluster CA: %w", err)
	}
	const name = "metrics-gateway-serving"
	if c.serving {
		return c.layout.pki(name + ".crt"), c.layout.pki(name + ".key"), ca.CertPEM, nil
	}
	svc := GatewayServiceName + "." + GatewayServiceNamespace + ".svc"
	certPEM, keyPEM, err := issue(ca, pki.Leaf{
		CN:     svc,
		DNS:    []string{svc, svc + ".cluster.local", "localhost"},
		IPs:    []net.IP{net.IPv4(127, 0, 0, 1)},
		Server: true,
	})
	if err != nil {
		return "", "", nil, err
	}
	if err := pki.WritePair(c.layout.pkiDir(), name, certPEM, keyPEM); err != nil {
		return "", "", nil, err
	}
	c.serving = true
	return c.layout.pki(name + ".crt"), c.layout.pki(name + ".key"), ca.CertPEM, nil
}

// RegisterAPIService points <version>.<group> at a server listening on 127.0.0.1:port.
// The Service is ExternalName "localhost" because the harness runs with
// --enable-aggregator-routing=false (see doc.go); the APIService always verifies TLS
// against caBundle — insecureSkipTLSVerify would hide exactly the certificate mistakes
// the end-to-end tests are there to catch.
func (c *Cluster) RegisterAPIService(ctx context.Context, group, version string, port int, caBundle []byte) error {
	if len(caBundle) == 0 {
		return errors.New("register APIService: caBundle is required")
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("register APIService: bad port %d", port)
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	svc := corev1ac.Service(GatewayServiceName, GatewayServiceNamespace).WithSpec(corev1ac.ServiceSpec().
		WithType(corev1.ServiceTypeExternalName).
		WithExternalName("localhost").
		WithPorts(corev1ac.ServicePort().WithName("https").WithProtocol(corev1.ProtocolTCP).WithPort(int32(port))))
	if _, err := client.CoreV1().Services(GatewayServiceNamespace).Apply(ctx, svc, applyOpts); err != nil {
		return fmt.Errorf("apply service %s/%s: %w", GatewayServiceNamespace, GatewayServiceName, err)
	}
	agg, err := c.aggregatorClient()
	if err != nil {
		return err
	}
	name := version + "." + group
	apiSvc := apiregv1ac.APIService(name).WithSpec(apiregv1ac.APIServiceSpec().
		WithGroup(group).
		WithVersion(version).
		WithService(apiregv1ac.ServiceReference().
			WithNamespace(GatewayServiceNamespace).WithName(GatewayServiceName).WithPort(int32(port))).
		WithCABundle(caBundle...).
		WithInsecureSkipTLSVerify(false).
		WithGroupPriorityMinimum(100).
		WithVersionPriority(100))
	if _, err := agg.ApiregistrationV1().APIServices().Apply(ctx, apiSvc, applyOpts); err != nil {
		return fmt.Errorf("apply APIService %s: %w", name, err)
	}
	return nil
}

// WaitAPIServiceAvailable waits until APIService name reports Available=True. When ctx
// has no deadline it waits at most two minutes. On timeout the error carries the
// condition's reason and message, which is how the aggregator explains a TLS or
// discovery failure. The condition carries no generation, so right after re-pointing an
// APIService that was already Available this can return before the aggregator has
// re-checked it; delete the APIService first when that matters.
func (c *Cluster) WaitAPIServiceAvailable(ctx context.Context, name string) error {
	timeout := 2 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	agg, err := c.aggregatorClient()
	if err != nil {
		return err
	}
	last := errors.New("APIService not found")
	return Poll(ctx, pollInterval, timeout, "APIService "+name+" Available", func() error {
		svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return last
		}
		if err != nil {
			// A failed Get as ctx expires says nothing about the APIService; keep
			// the condition seen before it.
			if ctx.Err() == nil {
				last = err
			}
			return last
		}
		for _, cond := range svc.Status.Conditions {
			if cond.Type == apiregv1.Available {
				if cond.Status == apiregv1.ConditionTrue {
					return nil
				}
				last = fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
		}
		return last
	})
}

// AggregatorClient is an admin client of the APIService API.
func (c *Cluster) AggregatorClient() (aggregator.Interface, error) { return c.aggregatorClient() }

func (c *Cluster) aggregatorClient() (aggregator.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return aggregator.NewForConfig(cfg)
}

// waitDefaultServiceAccount waits for default/default: the ServiceAccount admission
// plugin rejects pods until the serviceaccount controller has created it, so a test that
// creates a Deployment right after Start would otherwise race it.
func (c *Cluster) waitDefaultServiceAccount(ctx context.Context, timeout time.Duration) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	return Poll(ctx, pollInterval, timeout, "ServiceAccount default/default", func() error {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// TokenKubeconfig writes a kubeconfig that authenticates with a bearer
// token (a ServiceAccount's, from TokenRequest) and returns its path.
func (c *Cluster) TokenKubeconfig(name, token string) (string, error) {
	ca, err := pki.LoadCA(c.layout.pkiDir(), caName)
	if err != nil {
		return "", fmt.Errorf("load cluster CA: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: ca.CertPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name}
	cfg.CurrentContext = "local"
	path := c.layout.kubeconfig(strings.ReplaceAll(name, ":", "-"))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return path, os.Chmod(path, 0o600)
}

// ClientCertFiles issues a client certificate for user name, signed by the
// cluster CA (which the simulated kubelets trust as their client CA), and
// returns the paths of the certificate and key under Dir/pki.
func (c *Cluster) ClientCertFiles(name string) (certFile, keyFile string, err error) {
	ca, err := pki.LoadCA(c.layout.pkiDir(), caName)
	if err != nil {
		return "", "", fmt.Errorf("load cluster CA: %w", err)
	}
	certPEM, keyPEM, err := issue(ca, pki.Leaf{CN: name, Client: true})
	if err != nil {
		return "", "", err
	}
	leaf := strings.ReplaceAll(name, ":", "-")
	if err := pki.WritePair(c.layout.pkiDir(), leaf, certPEM, keyPEM); err != nil {
		return "", "", err
	}
	return c.layout.pki(leaf + ".crt"), c.layout.pki(leaf + ".key"), nil
}
