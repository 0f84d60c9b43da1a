package env

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// GatewayServiceAccount is the ServiceAccount of manifests/base.
const GatewayServiceAccount = "metrics-gateway"

// KubeletServiceAccount is the read-only ServiceAccount of manifests/base
// whose tokens the gateway sends kubelets, as --kubelet-service-account.
const KubeletServiceAccount = "kube-system/metrics-gateway-kubelet"

// baseKinds are the objects of manifests/base the harness applies: the
// ServiceAccount, every role and binding, and the empty Secret the gateway
// keeps its serving certificate in (it may not create one), so that the
// gateway runs with exactly the permissions and objects an install gives it.
var baseKinds = map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true, "Secret": true}

// gatewayServiceAccount applies the ServiceAccount and RBAC of
// manifests/base (rendered by kubectl kustomize) and returns a kubeconfig
// with a token of that ServiceAccount.
func (e *Env) gatewayServiceAccount(ctx context.Context) (kubeconfig string, err error) {
	rendered, err := e.Kubectl(ctx, "kustomize", filepath.Join(e.root, "manifests", "base"))
	if err != nil {
		return "", err
	}
	var keep []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var obj struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return "", fmt.Errorf("rendered manifests/base: %w", err)
		}
		if baseKinds[obj.Kind] {
			keep = append(keep, doc)
		}
	}
	file := e.baseObjectsFile()
	if err := os.WriteFile(file, []byte(strings.Join(keep, "\n---\n")), 0o644); err != nil {
		return "", err
	}
	if _, err := e.Kubectl(ctx, "apply", "-f", file); err != nil {
		return "", err
	}
	// Long enough for a demo left running; the e2e suite takes minutes.
	return e.serviceAccountKubeconfig(ctx, cluster.GatewayServiceNamespace, GatewayServiceAccount, 48*time.Hour)
}

// serviceAccountKubeconfig writes a kubeconfig with a token of ServiceAccount
// ns/name valid for expiry (TokenRequest) and returns its path.
func (e *Env) serviceAccountKubeconfig(ctx context.Context, ns, name string, expiry time.Duration) (string, error) {
	seconds := int64(expiry.Seconds())
	tr, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", ns, name, err)
	}
	return e.Cluster.TokenKubeconfig("system:serviceaccount:"+ns+":"+name, tr.Status.Token)
}

// baseObjectsFile holds the objects of manifests/base the harness applied.
func (e *Env) baseObjectsFile() string { return filepath.Join(e.Dir, "gateway-base.yaml") }
