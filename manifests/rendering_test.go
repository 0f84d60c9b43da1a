package manifests

import (
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// apiService is apiregistration.k8s.io/v1 APIService, which client-go's
// scheme does not have (kube-aggregator is not a dependency).
type apiService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Service *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Port      *int32 `json:"port,omitempty"`
		} `json:"service,omitempty"`
		Group                 string `json:"group"`
		Version               string `json:"version"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify,omitempty"`
		CABundle              []byte `json:"caBundle,omitempty"`
		GroupPriorityMinimum  int32  `json:"groupPriorityMinimum"`
		VersionPriority       int32  `json:"versionPriority"`
	} `json:"spec"`
}

// rendering is a rendered kustomization decoded into API types. Decoding is
// strict: a misspelt field in a manifest is an error, not a silent no-op.
type rendering struct {
	objs            []object
	serviceAccounts map[string]*corev1.ServiceAccount // namespace/name
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	services        map[string]*corev1.Service
	pvcs            map[string]*corev1.PersistentVolumeClaim
	deployments     map[string]*appsv1.Deployment
	// statefulSets are also in deployments, as addStatefulSetView makes them,
	// so every check of the gateway's pod applies to them too.
	statefulSets    map[string]*appsv1.StatefulSet
	pdbs            map[string]*policyv1.PodDisruptionBudget
	roles           map[string]*rbacv1.Role
	roleBindings    map[string]*rbacv1.RoleBinding
	clusterRoles    map[string]*rbacv1.ClusterRole // name
	clusterBindings map[string]*rbacv1.ClusterRoleBinding
	apiServices     map[string]*apiService
}

func newRendering(objs []object) (*rendering, error) {
	r := &rendering{
		objs:            objs,
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		services:        map[string]*corev1.Service{},
		pvcs:            map[string]*corev1.PersistentVolumeClaim{},
		deployments:     map[string]*appsv1.Deployment{},
		statefulSets:    map[string]*appsv1.StatefulSet{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		roles:           map[string]*rbacv1.Role{},
		roleBindings:    map[string]*rbacv1.RoleBinding{},
		clusterRoles:    map[string]*rbacv1.ClusterRole{},
		clusterBindings: map[string]*rbacv1.ClusterRoleBinding{},
		apiServices:     map[string]*apiService{},
	}
	for _, o := range objs {
		ns, name := str(o, "metadata", "namespace"), str(o, "metadata", "name")
		nsName := ns + "/" + name
		var err error
		switch gvk := str(o, "apiVersion") + " " + str(o, "kind"); gvk {
		case "v1 ServiceAccount":
			err = decodeInto(o, r.serviceAccounts, nsName)
		case "v1 ConfigMap":
			err = decodeInto(o, r.configMaps, nsName)
		case "v1 Secret":
			err = decodeInto(o, r.secrets, nsName)
		case "v1 Service":
			err = decodeInto(o, r.services, nsName)
		case "v1 PersistentVolumeClaim":
			err = decodeInto(o, r.pvcs, nsName)
		case "apps/v1 Deployment":
			err = decodeInto(o, r.deployments, nsName)
		case "apps/v1 StatefulSet":
			if err = decodeInto(o, r.statefulSets, nsName); err == nil {
				err = r.addStatefulSetView(r.statefulSets[nsName])
			}
		case "policy/v1 PodDisruptionBudget":
			err = decodeInto(o, r.pdbs, nsName)
		case "rbac.authorization.k8s.io/v1 Role":
			err = decodeInto(o, r.roles, nsName)
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			err = decodeInto(o, r.roleBindings, nsName)
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			err = decodeInto(o, r.clusterRoles, name)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			err = decodeInto(o, r.clusterBindings, name)
		case "apiregistration.k8s.io/v1 APIService":
			err = decodeInto(o, r.apiServices, name)
		default:
			err = fmt.Errorf("unexpected kind %s", gvk)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key(o), err)
		}
	}
	return r, nil
}

// addStatefulSetView adds a Deployment running the StatefulSet's pods, with
// each claim template as a volume of a claim of the same name, to what the
// checks see.
func (r *rendering) addStatefulSetView(s *appsv1.StatefulSet) error {
	k := s.Namespace + "/" + s.Name
	if _, dup := r.deployments[k]; dup {
		return fmt.Errorf("a Deployment and a StatefulSet %s", k)
	}
	d := &appsv1.Deployment{ObjectMeta: s.ObjectMeta, Spec: appsv1.DeploymentSpec{Replicas: s.Spec.Replicas, Selector: s.Spec.Selector, Template: *s.Spec.Template.DeepCopy()}}
	for _, t := range s.Spec.VolumeClaimTemplates {
		claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: t.Name}, Spec: t.Spec}
		r.pvcs[s.Namespace+"/"+t.Name] = claim
		d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: t.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: t.Name}}})
	}
	r.deployments[k] = d
	return nil
}

// decodeInto decodes o strictly into a new T stored at m[k]; a second object
// with the same key is an error.
func decodeInto[T any](o object, m map[string]*T, k string) error {
	if _, dup := m[k]; dup {
		return fmt.Errorf("duplicate object %s", k)
	}
	// Not encoding/json: it matches field names case-insensitively, so
	// readOnlyRootFileSystem would pass for readOnlyRootFilesystem.
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o, v, true); err != nil {
		return err
	}
	m[k] = v
	return nil
}

// kinds counts the objects of each kind.
func (r *rendering) kinds() map[string]int {
	n := map[string]int{}
	for _, o := range r.objs {
		n[str(o, "kind")]++
	}
	return n
}

func (r *rendering) apiServiceNames() []string {
	return sortedKeys(r.apiServices)
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
