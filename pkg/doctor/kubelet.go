package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
)

const checkKubeletName = "kubelet"

// KubeletCheck is how doctor reaches a kubelet: the gateway's own kubelet
// client settings, so a pass means the gateway's scrape would pass too when
// doctor runs where the gateway runs (kubectl exec into its pod).
type KubeletCheck struct {
	Options     scrape.KubeletOptions
	Credentials scrape.Credentials
	// Node is the node to probe; empty picks the first Ready node, by name,
	// among those Options.NodeSelector selects.
	Node string
}

// checkKubelet scrapes one kubelet's /metrics/resource directly, as the
// gateway does, never through the API server's nodes/proxy.
func checkKubelet(ctx context.Context, kube kubernetes.Interface, k KubeletCheck) Result {
	node, r := pickNode(ctx, kube, k)
	if node == nil {
		return r
	}
	check := checkKubeletName + " " + node.Name
	p, err := scrape.ProbeKubelet(ctx, node, k.Options, k.Credentials)
	if err != nil {
		problem, fix := explainProbe(err, k.Options)
		return fail(check, problem, fix)
	}
	return pass(check, fmt.Sprintf("%s answered in %dms with %d resource samples", p.URL, p.Duration.Milliseconds(), p.Samples))
}

func pickNode(ctx context.Context, kube kubernetes.Interface, k KubeletCheck) (*corev1.Node, Result) {
	if k.Node != "" {
		n, err := kube.CoreV1().Nodes().Get(ctx, k.Node, metav1.GetOptions{})
		if err != nil {
			return nil, fail(checkKubeletName+" "+k.Node, fmt.Sprintf("cannot get the node: %v", err),
				"give --kubelet-node the name of an existing node, and run doctor as an identity that may get nodes (the gateway's ServiceAccount may)")
		}
		return n, Result{}
	}
	list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: k.Options.NodeSelector})
	if err != nil {
		return nil, fail(checkKubeletName, fmt.Sprintf("cannot list nodes: %v", err),
			"run doctor as an identity that may list nodes (the gateway's ServiceAccount may), and check --node-selector")
	}
	if len(list.Items) == 0 {
		return nil, fail(checkKubeletName, fmt.Sprintf("no node matches --node-selector %q, so the gateway scrapes no kubelet", k.Options.NodeSelector),
			"correct --node-selector, or wait for nodes to register")
	}
	nodes := list.Items
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for i := range nodes {
		if ready(&nodes[i]) {
			return &nodes[i], Result{}
		}
	}
	return &nodes[0], Result{}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// explainProbe turns a failed probe into plain words and the flag or
// cluster setting that fixes it.
func explainProbe(err error, o scrape.KubeletOptions) (problem, fix string) {
	var pe *scrape.ProbeError
	if !errors.As(err, &pe) {
		return err.Error(), "read the gateway's log"
	}
	msg := pe.Err.Error()
	lower := strings.ToLower(msg)
	at := pe.URL
	switch pe.Stage {
	case scrape.ProbeStageConfig:
		return "the gateway's kubelet TLS or credential settings cannot be loaded (" + msg + ")",
			"make --kubelet-certificate-authority, --kubelet-client-certificate and --kubelet-client-key name readable PEM files, or leave them empty to use the kubeconfig's (in-cluster: the ServiceAccount's) CA and token"
	case scrape.ProbeStageAddress:
		return "the gateway finds no address to reach the kubelet (" + msg + ")",
			fmt.Sprintf("set --kubelet-preferred-address-types (now %s) to include an address type the node reports (kubectl get node -o jsonpath='{.status.addresses}')", strings.Join(o.PreferredAddressTypes, ","))
	case scrape.ProbeStageStatus:
		return explainStatus(pe.StatusCode, at, msg)
	case scrape.ProbeStageParse:
		return at + " did not answer with a kubelet's resource metrics (" + msg + ")",
			"check that --kubelet-port (or the node's status.daemonEndpoints with --kubelet-use-node-status-port) is the kubelet's port, 10250 by default"
	}
	switch {
	case strings.Contains(lower, "x509") && containsAny(lower, "ip sans", "not valid for", "doesn't contain"):
		return "the kubelet's serving certificate does not name the address the gateway dials (" + msg + ")",
			"issue kubelet serving certificates that include the node's addresses (KubeletConfiguration serverTLSBootstrap: true, then approve the CSRs), or pick an address type they name with --kubelet-preferred-address-types"
	case strings.Contains(lower, "x509") || strings.Contains(lower, "certificate"):
		return "the gateway does not trust the kubelet's serving certificate (" + msg + ")",
			"give --kubelet-certificate-authority the CA that signs kubelet serving certificates (with serverTLSBootstrap, the cluster CA, which is the default); kubelets with self-signed certificates need --kubelet-insecure-tls, for testing only"
	case strings.Contains(lower, "no such host"):
		return "the kubelet's address does not resolve from the gateway (" + msg + ")",
			"prefer an IP address type: --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname"
	case containsAny(lower, "connection refused", "no route to host", "i/o timeout", "deadline exceeded", "connection reset", "network is unreachable"):
		return "the gateway cannot reach the kubelet at " + at + " (" + msg + ")",
			"check the port (--kubelet-port, or --kubelet-use-node-status-port for the port in the node status), and that NetworkPolicies, security groups and host firewalls let the gateway's pod reach that port on nodes"
	default:
		return "the scrape of " + at + " failed (" + msg + ")", "read the gateway's log and the kubelet's"
	}
}

func explainStatus(code int, at, msg string) (problem, fix string) {
	switch code {
	case http.StatusUnauthorized:
		return "the kubelet at " + at + " rejected the gateway's credentials (" + msg + ")",
			"let kubelets authenticate ServiceAccount tokens (KubeletConfiguration authentication.webhook.enabled: true, flag --authentication-token-webhook), or give --kubelet-client-certificate and --kubelet-client-key signed by the kubelets' client CA"
	case http.StatusForbidden:
		return "the kubelet at " + at + " authenticated the gateway but denied it (" + msg + ")",
			"grant get on nodes/metrics (ClusterRole system:metrics-gateway in manifests/base/rbac.yaml, bound to the gateway's ServiceAccount) and run kubelets with authorization mode Webhook"
	case http.StatusNotFound:
		return at + " does not exist on this kubelet (" + msg + ")",
			"the kubelet serves /metrics/resource since v1.18; upgrade it, and check that the port is the kubelet's"
	default:
		return fmt.Sprintf("the kubelet at %s answered %d (%s)", at, code, msg), "read the kubelet's log"
	}
}
