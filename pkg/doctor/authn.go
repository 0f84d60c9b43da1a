package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	authNamespace = "kube-system"
	authConfigMap = "extension-apiserver-authentication"

	checkCA    = "requestheader-client-ca"
	checkNames = "requestheader-allowed-names"

	aggregationFlags = "start kube-apiserver with the aggregation flags --requestheader-client-ca-file, --requestheader-allowed-names, --requestheader-username-headers=X-Remote-User, --requestheader-group-headers=X-Remote-Group, --requestheader-extra-headers-prefix=X-Remote-Extra-, --proxy-client-cert-file and --proxy-client-key-file"
)

// authConfig is the ConfigMap kube-apiserver publishes for extension API
// servers, or why it could not be read.
type authConfig struct {
	cm  *corev1.ConfigMap
	err error
}

func readAuthConfig(ctx context.Context, kube kubernetes.Interface) authConfig {
	cm, err := kube.CoreV1().ConfigMaps(authNamespace).Get(ctx, authConfigMap, metav1.GetOptions{})
	return authConfig{cm: cm, err: err}
}

func (a authConfig) unreadable(check string) Result {
	return fail(check, fmt.Sprintf("cannot read ConfigMap %s/%s: %v", authNamespace, authConfigMap, a.err),
		fmt.Sprintf("run doctor as an identity that may get it (the gateway's ServiceAccount has the RoleBinding to extension-apiserver-authentication-reader); if it does not exist, %s", aggregationFlags))
}

// checkRequestHeaderCA: without the requestheader CA the gateway cannot
// authenticate the requests kube-apiserver proxies to it.
func checkRequestHeaderCA(a authConfig) Result {
	if a.err != nil {
		return a.unreadable(checkCA)
	}
	if strings.TrimSpace(a.cm.Data["requestheader-client-ca-file"]) == "" {
		return fail(checkCA, fmt.Sprintf("ConfigMap %s/%s has no requestheader-client-ca-file, so kube-apiserver is not set up to proxy to aggregated API servers", authNamespace, authConfigMap), aggregationFlags)
	}
	return pass(checkCA, "")
}

// checkAllowedNames reports the names the gateway accepts as the proxy
// client's CN. The doctor cannot read kube-apiserver's proxy client
// certificate, so it fails only when an APIService condition shows the
// gateway rejecting kube-apiserver's proxied requests.
func checkAllowedNames(a authConfig, svcs []apiService) Result {
	if a.err != nil {
		return a.unreadable(checkNames)
	}
	var names []string
	if raw := strings.TrimSpace(a.cm.Data["requestheader-allowed-names"]); raw != "" {
		if err := json.Unmarshal([]byte(raw), &names); err != nil {
			return fail(checkNames, fmt.Sprintf("requestheader-allowed-names is not a JSON list: %v", err),
				"set kube-apiserver --requestheader-allowed-names to a comma-separated list of names (or leave it empty to accept any name signed by the requestheader CA)")
		}
	}
	if len(names) == 0 {
		return pass(checkNames, "empty: any client certificate signed by the requestheader CA is accepted")
	}
	for _, s := range svcs {
		if s.availableMsg != "" && rejectsProxyClient(s.availableMsg) {
			return fail(checkNames,
				fmt.Sprintf("APIService %s reports %q: the gateway may be rejecting kube-apiserver's proxy client certificate, whose CN must be one of %v", s.name, s.availableMsg, names),
				fmt.Sprintf("make the CN of kube-apiserver's --proxy-client-cert-file one of %v, or add that CN to kube-apiserver's --requestheader-allowed-names", names))
		}
	}
	return pass(checkNames, fmt.Sprintf("%v: the CN of kube-apiserver's --proxy-client-cert-file must be one of these (not checkable from here)", names))
}

func rejectsProxyClient(msg string) bool {
	return containsAny(strings.ToLower(msg), "401", "unauthorized", "allowed names")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
