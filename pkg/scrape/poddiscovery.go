package scrape

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/util/strutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
)

// The labels of kubernetes_sd_configs role pod (Prometheus'
// discovery/kubernetes/pod.go), which relabeling reads.
const (
	metaPod                 = "__meta_kubernetes_pod_"
	metaNamespace           = "__meta_kubernetes_namespace"
	podNameLabel            = metaPod + "name"
	podIPLabel              = metaPod + "ip"
	podReadyLabel           = metaPod + "ready"
	podPhaseLabel           = metaPod + "phase"
	podNodeNameLabel        = metaPod + "node_name"
	podHostIPLabel          = metaPod + "host_ip"
	podUIDLabel             = metaPod + "uid"
	podControllerKindLabel  = metaPod + "controller_kind"
	podControllerNameLabel  = metaPod + "controller_name"
	podContainerNameLabel   = metaPod + "container_name"
	podContainerIDLabel     = metaPod + "container_id"
	podContainerImageLabel  = metaPod + "container_image"
	podContainerInitLabel   = metaPod + "container_init"
	podContainerPortName    = metaPod + "container_port_name"
	podContainerPortNumber  = metaPod + "container_port_number"
	podContainerPortProtocl = metaPod + "container_port_protocol"
)

// PodDiscoveryConfig is a discovery.Config for the targets of
// kubernetes_sd_configs role pod, read from the gateway's shared pod
// informer (pkg/pods) instead of a second watch of every full Pod. It has
// no YAML form: Manager puts it in place of the built-in pod job's
// kubernetes_sd_configs, whose namespaces it keeps. Users' own jobs keep
// Prometheus' discovery.
type PodDiscoveryConfig struct {
	// Informer holds *pods.Pod objects (pods.NewInformer).
	Informer cache.SharedIndexInformer
	// Namespaces, when not empty, are the only namespaces discovered.
	Namespaces []string
	// Keep, when set, leaves out pods that the job's relabeling would drop
	// anyway, so that neither discovery nor the scrape pool holds their
	// labels. It must agree with the job's relabeling.
	Keep func(*pods.Pod) bool
}

var _ discovery.Config = (*PodDiscoveryConfig)(nil)

// Name implements discovery.Config.
func (*PodDiscoveryConfig) Name() string { return "gateway_pods" }

// NewDiscoverer implements discovery.Config.
func (c *PodDiscoveryConfig) NewDiscoverer(discovery.DiscovererOptions) (discovery.Discoverer, error) {
	return &informerDiscoverer{informer: c.Informer, source: podSource, build: c.group}, nil
}

// NewDiscovererMetrics implements discovery.Config: the informer's own
// client metrics are the gateway's.
func (*PodDiscoveryConfig) NewDiscovererMetrics(prometheus.Registerer, discovery.RefreshMetricsInstantiator) discovery.DiscovererMetrics {
	return noMetrics{}
}

func podSource(key string) string { return "pod/" + key }

// group builds the pod's group, or reports it not discovered.
func (c *PodDiscoveryConfig) group(o any) (*targetgroup.Group, bool) {
	p, ok := o.(*pods.Pod)
	if !ok || (len(c.Namespaces) > 0 && !slices.Contains(c.Namespaces, p.Namespace)) || (c.Keep != nil && !c.Keep(p)) {
		return nil, false
	}
	return PodTargetGroup(p), true
}

// PodTargetGroup is the target group Prometheus' pod discovery builds for
// the pod: the same source, labels and targets.
func PodTargetGroup(p *pods.Pod) *targetgroup.Group {
	tg := &targetgroup.Group{Source: "pod/" + p.Namespace + "/" + p.Name}
	// A starting or evicted pod has no IP.
	if p.PodIP == "" {
		return tg
	}
	ready := strings.ToLower(string(p.Ready))
	if ready == "" {
		ready = strings.ToLower(string(corev1.ConditionUnknown))
	}
	ls := model.LabelSet{
		podIPLabel:       model.LabelValue(p.PodIP),
		podReadyLabel:    model.LabelValue(ready),
		podPhaseLabel:    model.LabelValue(p.Phase),
		podNodeNameLabel: model.LabelValue(p.NodeName),
		podHostIPLabel:   model.LabelValue(p.HostIP),
		podUIDLabel:      model.LabelValue(p.UID),
		podNameLabel:     model.LabelValue(p.Name),
		metaNamespace:    model.LabelValue(p.Namespace),
	}
	for k, v := range p.Labels {
		n := strutil.SanitizeLabelName(k)
		ls[model.LabelName(metaPod+"label_"+n)] = model.LabelValue(v)
		ls[model.LabelName(metaPod+"labelpresent_"+n)] = "true"
	}
	for k, v := range p.Annotations {
		n := strutil.SanitizeLabelName(k)
		ls[model.LabelName(metaPod+"annotation_"+n)] = model.LabelValue(v)
		ls[model.LabelName(metaPod+"annotationpresent_"+n)] = "true"
	}
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			if ref.Kind != "" {
				ls[podControllerKindLabel] = model.LabelValue(ref.Kind)
			}
			if ref.Name != "" {
				ls[podControllerNameLabel] = model.LabelValue(ref.Name)
			}
			break
		}
	}
	tg.Labels = ls
	for _, c := range p.Containers {
		base := func(addr string) model.LabelSet {
			return model.LabelSet{
				model.AddressLabel:     model.LabelValue(addr),
				podContainerNameLabel:  model.LabelValue(c.Name),
				podContainerIDLabel:    model.LabelValue(c.ID),
				podContainerImageLabel: model.LabelValue(c.Image),
				podContainerInitLabel:  model.LabelValue(strconv.FormatBool(c.Init)),
			}
		}
		if len(c.Ports) == 0 {
			tg.Targets = append(tg.Targets, base(p.PodIP))
			continue
		}
		for _, port := range c.Ports {
			number := strconv.FormatUint(uint64(port.ContainerPort), 10)
			t := base(net.JoinHostPort(p.PodIP, number))
			t[podContainerPortNumber] = model.LabelValue(number)
			t[podContainerPortName] = model.LabelValue(port.Name)
			t[podContainerPortProtocl] = model.LabelValue(port.Protocol)
			tg.Targets = append(tg.Targets, t)
		}
	}
	return tg
}

// podDiscoveryFor returns the shared-informer discovery standing in for
// cfgs, the built-in pod job's kubernetes_sd_configs, or false when they
// are not a single role-pod config it can stand in for.
func podDiscoveryFor(cfgs discovery.Configs, inf cache.SharedIndexInformer, keep func(*pods.Pod) bool) (discovery.Configs, bool) {
	if inf == nil || len(cfgs) != 1 {
		return nil, false
	}
	k, ok := cfgs[0].(*kubernetes.SDConfig)
	if !ok || k.Role != kubernetes.RolePod || len(k.Selectors) > 0 || k.APIServer.URL != nil ||
		k.AttachMetadata != (kubernetes.AttachMetadataConfig{}) || k.NamespaceDiscovery.IncludeOwnNamespace {
		return nil, false
	}
	return discovery.Configs{&PodDiscoveryConfig{Informer: inf, Namespaces: k.NamespaceDiscovery.Names, Keep: keep}}, true
}
