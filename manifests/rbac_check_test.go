package manifests

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

// Names the manifests share with the gateway and the cluster.
const (
	namespace       = "kube-system"
	gatewayName     = "metrics-gateway"
	certsRole       = "system:metrics-gateway:certs"
	queryReaderRole = "metrics-gateway:query-api-reader"
	// Secrets the manifests mount but do not create.
	ownTLSSecret = "metrics-gateway-tls"
)

// Roles and accounts that the cluster provides.
var (
	builtinClusterRoles = sets.New("system:auth-delegator")
	builtinRoles        = sets.New(namespace + "/extension-apiserver-authentication-reader")
	builtinAccounts     = sets.New(namespace + "/horizontal-pod-autoscaler")
)

// The API groups whose resources are metric names, hence "*".
var metricsGroups = sets.New("custom.metrics.k8s.io", "external.metrics.k8s.io")

// checkNoTLSShortcuts fails on insecureSkipTLSVerify anywhere, and on a
// caBundle written into the manifests (the gateway or cert-manager sets it).
func checkNoTLSShortcuts(objs []object) []error {
	var errs []error
	var walk func(k string, v any)
	walk = func(k string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for f, x := range v {
				if f == "insecureSkipTLSVerify" || f == "caBundle" {
					errs = append(errs, fmt.Errorf("%s: sets %s", k, f))
				}
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(k, x)
			}
		}
	}
	for _, o := range objs {
		walk(key(o), o)
	}
	return errs
}

// checkRules holds every rule of the gateway's roles to least privilege.
func checkRules(owner string, namespaced bool, rules []rbacv1.PolicyRule) []error {
	var errs []error
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s rules[%d]: %s", owner, i, fmt.Sprintf(format, args...)))
	}
	write := sets.New("create", "update", "patch", "delete", "deletecollection")
	for i, r := range rules {
		verbs := sets.New(r.Verbs...)
		if verbs.Has("*") {
			bad(i, `verb "*"`)
		}
		for _, v := range []string{"escalate", "bind", "impersonate"} {
			if verbs.Has(v) {
				bad(i, "verb %s", v)
			}
		}
		if slices.Contains(r.APIGroups, "*") {
			bad(i, `apiGroup "*"`)
		}
		if len(r.NonResourceURLs) > 0 {
			query := slices.Equal(r.NonResourceURLs, []string{"/prometheus/api/v1/*"}) && sets.New("get", "post").IsSuperset(verbs)
			pages := slices.Equal(r.NonResourceURLs, []string{"/ui", "/ui/*", "/explain/*"}) && verbs.Equal(sets.New("get"))
			if !query && !pages {
				bad(i, "non-resource URLs %v %v: only get and post on /prometheus/api/v1/*, or get on the pages", r.NonResourceURLs, r.Verbs)
			}
			continue
		}
		for _, res := range r.Resources {
			switch {
			case res == "*":
				if !metricsGroups.IsSuperset(sets.New(r.APIGroups...)) || !sets.New("get", "list", "watch").IsSuperset(verbs) {
					bad(i, `resource "*" outside reading custom and external metrics`)
				}
			case res == "nodes/proxy" || strings.HasSuffix(res, "/*") || strings.HasPrefix(res, "*/"):
				bad(i, "resource %s", res)
			case res == "secrets":
				if !namespaced {
					bad(i, "secrets in a cluster-wide role")
				}
				if len(r.ResourceNames) == 0 {
					bad(i, "secrets without resourceNames")
				}
			case res == "serviceaccounts/token":
				if !namespaced || len(r.ResourceNames) == 0 || !verbs.Equal(sets.New("create")) {
					bad(i, "serviceaccounts/token: only create, in a Role, with resourceNames")
				}
			case res == "apiservices":
				if len(r.ResourceNames) == 0 {
					bad(i, "apiservices without resourceNames")
				}
			default:
				if verbs.HasAny(sets.List(write)...) {
					bad(i, "writes %s", res)
				}
			}
		}
	}
	return errs
}

func checkRBAC(r *rendering) []error {
	var errs []error
	for name, cr := range r.clusterRoles {
		if cr.AggregationRule != nil {
			errs = append(errs, fmt.Errorf("ClusterRole %s: aggregationRule", name))
		}
		errs = append(errs, checkRules("ClusterRole "+name, false, cr.Rules)...)
	}
	for k, role := range r.roles {
		errs = append(errs, checkRules("Role "+k, true, role.Rules)...)
	}
	return append(errs, checkBindings(r)...)
}

// checkBindings: every binding names roles and accounts that exist, the
// gateway has the delegation every aggregated API server needs, and the
// query API reader stays unbound.
func checkBindings(r *rendering) []error {
	var errs []error
	bound := sets.New[string]()
	check := func(owner, bindingNS string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		switch ref.Kind {
		case "ClusterRole":
			if r.clusterRoles[ref.Name] == nil && !builtinClusterRoles.Has(ref.Name) {
				errs = append(errs, fmt.Errorf("%s: no ClusterRole %s", owner, ref.Name))
			}
			if ref.Name == queryReaderRole {
				errs = append(errs, fmt.Errorf("%s: binds %s, which is for users to bind", owner, ref.Name))
			}
		case "Role":
			if r.roles[bindingNS+"/"+ref.Name] == nil && !builtinRoles.Has(bindingNS+"/"+ref.Name) {
				errs = append(errs, fmt.Errorf("%s: no Role %s/%s", owner, bindingNS, ref.Name))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: roleRef kind %q", owner, ref.Kind))
		}
		for _, s := range subjects {
			k := s.Namespace + "/" + s.Name
			if s.Kind != rbacv1.ServiceAccountKind {
				errs = append(errs, fmt.Errorf("%s: subject %s %s, want ServiceAccounts only", owner, s.Kind, s.Name))
			} else if r.serviceAccounts[k] == nil && !builtinAccounts.Has(k) {
				errs = append(errs, fmt.Errorf("%s: no ServiceAccount %s", owner, k))
			}
			if k == namespace+"/"+gatewayName {
				bound.Insert(ref.Kind + " " + ref.Name)
			}
		}
	}
	for name, b := range r.clusterBindings {
		check("ClusterRoleBinding "+name, "", b.RoleRef, b.Subjects)
	}
	for k, b := range r.roleBindings {
		check("RoleBinding "+k, b.Namespace, b.RoleRef, b.Subjects)
	}
	for _, want := range []string{"ClusterRole system:metrics-gateway", "ClusterRole system:auth-delegator", "Role extension-apiserver-authentication-reader"} {
		if !bound.Has(want) {
			errs = append(errs, fmt.Errorf("the gateway's ServiceAccount is not bound to %s", want))
		}
	}
	return errs
}

// checkKubeletAccount: the gateway sends kubelets tokens of a second
// ServiceAccount (--kubelet-service-account), which exists, is bound to
// get on nodes/metrics and nothing else, and whose tokens the gateway may
// request; the gateway's own account no longer reads nodes/metrics.
func checkKubeletAccount(r *rendering, o *server.Options) []error {
	if o.Kubelet.ServiceAccount == "" {
		return []error{errors.New("no --kubelet-service-account: kubelets would receive the gateway's own token")}
	}
	ns, name, err := o.Kubelet.ServiceAccountRef()
	if err != nil {
		return []error{err}
	}
	var errs []error
	if r.serviceAccounts[ns+"/"+name] == nil {
		errs = append(errs, fmt.Errorf("--kubelet-service-account %s/%s is not rendered", ns, name))
	}
	rules := map[string][]rbacv1.PolicyRule{} // by subject namespace/name
	add := func(bindingNS string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		var rs []rbacv1.PolicyRule
		if ref.Kind == "ClusterRole" && r.clusterRoles[ref.Name] != nil {
			rs = r.clusterRoles[ref.Name].Rules
		} else if ref.Kind == "Role" && r.roles[bindingNS+"/"+ref.Name] != nil {
			rs = r.roles[bindingNS+"/"+ref.Name].Rules
		}
		for _, s := range subjects {
			rules[s.Namespace+"/"+s.Name] = append(rules[s.Namespace+"/"+s.Name], rs...)
		}
	}
	for _, b := range r.clusterBindings {
		add("", b.RoleRef, b.Subjects)
	}
	for _, b := range r.roleBindings {
		add(b.Namespace, b.RoleRef, b.Subjects)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}}}
	if got := rules[ns+"/"+name]; fmt.Sprint(got) != fmt.Sprint(want) {
		errs = append(errs, fmt.Errorf("kubelet ServiceAccount %s/%s may %v, want %v only", ns, name, got, want))
	}
	mayRequest := false
	for _, rule := range rules[namespace+"/"+gatewayName] {
		if slices.Contains(rule.Resources, "nodes/metrics") {
			errs = append(errs, errors.New("the gateway's own ServiceAccount reads nodes/metrics: only the kubelet ServiceAccount should"))
		}
		if slices.Contains(rule.Resources, "serviceaccounts/token") && slices.Contains(rule.ResourceNames, name) && slices.Contains(rule.Verbs, "create") {
			mayRequest = true
		}
	}
	if !mayRequest {
		errs = append(errs, fmt.Errorf("the gateway's ServiceAccount may not create serviceaccounts/token of %s/%s", ns, name))
	}
	return errs
}

// checkServingCert holds the certificate RBAC to what the gateway's
// serving-certificate manager (pkg/certs) will do with these options: when it
// manages the certificate, its Secret is rendered (empty, labeled as the
// gateway's) and it may read and replace that Secret only, never create one,
// and read and patch exactly the APIServices it is told to, which are the
// ones rendered; when it does not (a certificate is given), it gets none of
// that. o is the parsed arguments of the gateway's container.
func checkServingCert(r *rendering, d *appsv1.Deployment, o *server.Options) []error {
	cr, role := r.clusterRoles[certsRole], r.roles[d.Namespace+"/"+certsRole]
	ownCert := o.SecureServing.ServerCert.CertKey.CertFile != ""
	if !o.ServingCert.Manage || ownCert {
		var errs []error
		if cr != nil || role != nil {
			errs = append(errs, fmt.Errorf("%s: certificate RBAC, but the gateway does not manage its certificate", certsRole))
		}
		for k := range r.secrets {
			errs = append(errs, fmt.Errorf("Secret %s rendered, but the gateway does not manage its certificate", k))
		}
		if !ownCert && len(r.apiServices) > 0 {
			errs = append(errs, errors.New("--manage-serving-cert=false without --tls-cert-file: the self-signed certificate names localhost only, and the APIServices could never verify the gateway"))
		}
		return errs
	}
	if cr == nil || role == nil {
		return []error{fmt.Errorf("the gateway manages its serving certificate, but the ClusterRole and Role %s are not both there", certsRole)}
	}
	var errs []error
	ns := o.ServingCert.Namespace
	if ns == "" {
		ns = d.Namespace // the pod's namespace
	}
	if ns != role.Namespace || r.services[ns+"/"+o.ServingCert.ServiceName] == nil {
		errs = append(errs, fmt.Errorf("serving certificate for Service %s/%s, Role in %s: not the rendered Service", ns, o.ServingCert.ServiceName, role.Namespace))
	}
	grants := func(rules []rbacv1.PolicyRule, resource, verb string, names ...string) bool {
		for _, rule := range rules {
			if slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) &&
				(len(rule.ResourceNames) == 0 || sets.New(rule.ResourceNames...).HasAll(names...)) {
				return true
			}
		}
		return false
	}
	for _, v := range []string{"get", "update"} {
		if !grants(role.Rules, "secrets", v, o.ServingCert.SecretName) {
			errs = append(errs, fmt.Errorf("Role %s: no %s on Secret %s", certsRole, v, o.ServingCert.SecretName))
		}
	}
	if grants(role.Rules, "secrets", "create") {
		errs = append(errs, fmt.Errorf("Role %s: create on Secrets, which RBAC cannot limit to a name; the Secret is rendered instead", certsRole))
	}
	errs = append(errs, checkServingCertSecret(r, ns+"/"+o.ServingCert.SecretName)...)
	var names []string
	for _, rule := range cr.Rules {
		names = append(names, rule.ResourceNames...)
	}
	slices.Sort(names)
	flagNames := slices.Sorted(slices.Values(o.ServingCert.APIServiceNames))
	if want := r.apiServiceNames(); !slices.Equal(names, want) || !slices.Equal(flagNames, want) {
		errs = append(errs, fmt.Errorf("ClusterRole %s may patch APIServices %v and --apiservice-names is %v, but the rendering has %v", certsRole, names, flagNames, want))
	}
	for _, v := range []string{"get", "patch"} {
		if !grants(cr.Rules, "apiservices", v, names...) {
			errs = append(errs, fmt.Errorf("ClusterRole %s: no %s on the APIServices", certsRole, v))
		}
	}
	return errs
}

// wantPriorities are metrics-server's and prometheus-adapter's; v1 of
// metrics.k8s.io, which metrics-server does not serve, comes before v1beta1.
var wantPriorities = map[string][2]int32{
	"v1.metrics.k8s.io":               {100, 200},
	"v1beta1.metrics.k8s.io":          {100, 100},
	"v1beta1.custom.metrics.k8s.io":   {100, 100},
	"v1beta2.custom.metrics.k8s.io":   {100, 200},
	"v1beta1.external.metrics.k8s.io": {100, 100},
}

func checkAPIServices(r *rendering) []error {
	var errs []error
	svc := r.services[namespace+"/"+gatewayName]
	for name, a := range r.apiServices {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("APIService %s: %s", name, fmt.Sprintf(format, args...)))
		}
		if name != a.Spec.Version+"."+a.Spec.Group {
			bad("group %s version %s", a.Spec.Group, a.Spec.Version)
		}
		if p, ok := wantPriorities[name]; !ok {
			bad("not one the gateway serves")
		} else if got := [2]int32{a.Spec.GroupPriorityMinimum, a.Spec.VersionPriority}; got != p {
			bad("priorities %v, want %v", got, p)
		}
		s := a.Spec.Service
		if s == nil || s.Namespace != namespace || s.Name != gatewayName || s.Port == nil || *s.Port != 443 {
			bad("not served by %s/%s port 443", namespace, gatewayName)
			continue
		}
		if svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
			bad("Service %s/%s does not listen on 443", namespace, gatewayName)
		}
	}
	return errs
}

// checkServingCertSecret: the gateway's Secret is rendered where the
// gateway looks for it, empty (re-applying must not overwrite what the
// gateway stored), of a type pkg/certs accepts, and labeled as the
// gateway's, without which pkg/certs refuses to write it.
func checkServingCertSecret(r *rendering, want string) []error {
	var errs []error
	for k := range r.secrets {
		if k != want {
			errs = append(errs, fmt.Errorf("Secret %s rendered; the gateway's is %s", k, want))
		}
	}
	s := r.secrets[want]
	if s == nil {
		return append(errs, fmt.Errorf("no Secret %s: the gateway may not create it", want))
	}
	if len(s.Data) > 0 || len(s.StringData) > 0 {
		errs = append(errs, fmt.Errorf("Secret %s has data: re-applying the manifests would overwrite the gateway's certificate", want))
	}
	if s.Type != corev1.SecretTypeOpaque {
		errs = append(errs, fmt.Errorf("Secret %s is of type %s, want %s (empty, so not kubernetes.io/tls)", want, s.Type, corev1.SecretTypeOpaque))
	}
	if s.Labels[certs.OwnerLabel] != certs.OwnerValue {
		errs = append(errs, fmt.Errorf("Secret %s lacks the label %s=%s: the gateway would not write it once Helm or another tool sets app.kubernetes.io/managed-by", want, certs.OwnerLabel, certs.OwnerValue))
	}
	return errs
}
