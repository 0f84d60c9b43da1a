package scrape

import (
	"maps"
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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// The labels of kubernetes_sd_configs role node (Prometheus'
// discovery/kubernetes/node.go).
const (
	metaNode            = "__meta_kubernetes_node_"
	nodeNameLabel       = metaNode + "name"
	nodeProviderIDLabel = metaNode + "provider_id"
	nodeConditionPrefix = metaNode + "condition_"
	nodeAddressPrefix   = metaNode + "address_"
)

// NodeDiscoveryConfig is a discovery.Config for the targets of
// kubernetes_sd_configs role node, read from the gateway's node informer
// instead of a second watch of every full Node. Manager puts it in place of
// the kubelet jobs' kubernetes_sd_configs, whose label selector it keeps.
// A node's group is sent again only when it changed: a kubelet's status
// heartbeat no longer re-syncs every kubelet target.
type NodeDiscoveryConfig struct {
	// Informer holds *corev1.Node objects.
	Informer cache.SharedIndexInformer
	// Selector keeps the nodes it matches; nil keeps every node.
	Selector labels.Selector
}

var _ discovery.Config = (*NodeDiscoveryConfig)(nil)

// Name implements discovery.Config.
func (*NodeDiscoveryConfig) Name() string { return "gateway_nodes" }

// NewDiscoverer implements discovery.Config.
func (c *NodeDiscoveryConfig) NewDiscoverer(discovery.DiscovererOptions) (discovery.Discoverer, error) {
	return &informerDiscoverer{informer: c.Informer, source: nodeSource, build: c.group, unchanged: nodeGroupUnchanged}, nil
}

// NewDiscovererMetrics implements discovery.Config.
func (*NodeDiscoveryConfig) NewDiscovererMetrics(prometheus.Registerer, discovery.RefreshMetricsInstantiator) discovery.DiscovererMetrics {
	return noMetrics{}
}

func nodeSource(name string) string { return "node/" + name }

func (c *NodeDiscoveryConfig) group(o any) (*targetgroup.Group, bool) {
	n, ok := o.(*corev1.Node)
	if !ok || (c.Selector != nil && !c.Selector.Matches(labels.Set(n.Labels))) {
		return nil, false
	}
	return NodeTargetGroup(n), true
}

// nodeGroupUnchanged reports whether a node update left every field that
// the selector and NodeTargetGroup read as it was. A kubelet's status
// heartbeat moves only its conditions' times: at 1,000 nodes, building and
// hashing each heartbeat's group was about 2% of the gateway's idle CPU.
func nodeGroupUnchanged(old, cur any) bool {
	a, ok := old.(*corev1.Node)
	b, ok2 := cur.(*corev1.Node)
	if !ok || !ok2 {
		return false
	}
	return a.Name == b.Name && a.Spec.ProviderID == b.Spec.ProviderID &&
		a.Status.DaemonEndpoints.KubeletEndpoint.Port == b.Status.DaemonEndpoints.KubeletEndpoint.Port &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		slices.Equal(a.Status.Addresses, b.Status.Addresses) &&
		slices.EqualFunc(a.Status.Conditions, b.Status.Conditions, func(x, y corev1.NodeCondition) bool {
			return x.Type == y.Type && x.Status == y.Status
		})
}

// NodeTargetGroup is the target group Prometheus' node discovery builds for
// the node, or nil when the node has no address (Prometheus then sends
// nothing and keeps what it had).
func NodeTargetGroup(n *corev1.Node) *targetgroup.Group {
	addrs := map[corev1.NodeAddressType][]string{}
	for _, a := range n.Status.Addresses {
		addrs[a.Type] = append(addrs[a.Type], a.Address)
	}
	var host string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeInternalDNS, corev1.NodeExternalIP,
		corev1.NodeExternalDNS, corev1.NodeAddressType(kubernetes.NodeLegacyHostIP), corev1.NodeHostName} {
		if a, ok := addrs[t]; ok {
			host = a[0]
			break
		}
	}
	if host == "" {
		return nil
	}
	ls := model.LabelSet{
		nodeProviderIDLabel: model.LabelValue(n.Spec.ProviderID),
		nodeNameLabel:       model.LabelValue(n.Name),
	}
	for _, c := range n.Status.Conditions {
		ls[model.LabelName(nodeConditionPrefix+strutil.SanitizeLabelName(strings.ToLower(string(c.Type))))] = model.LabelValue(strings.ToLower(string(c.Status)))
	}
	for k, v := range n.Labels {
		name := strutil.SanitizeLabelName(k)
		ls[model.LabelName(metaNode+"label_"+name)] = model.LabelValue(v)
		ls[model.LabelName(metaNode+"labelpresent_"+name)] = "true"
	}
	for k, v := range n.Annotations {
		name := strutil.SanitizeLabelName(k)
		ls[model.LabelName(metaNode+"annotation_"+name)] = model.LabelValue(v)
		ls[model.LabelName(metaNode+"annotationpresent_"+name)] = "true"
	}
	t := model.LabelSet{
		model.AddressLabel:  model.LabelValue(net.JoinHostPort(host, strconv.FormatInt(int64(n.Status.DaemonEndpoints.KubeletEndpoint.Port), 10))),
		model.InstanceLabel: model.LabelValue(n.Name),
	}
	for typ, a := range addrs {
		t[model.LabelName(strutil.SanitizeLabelName(nodeAddressPrefix+string(typ)))] = model.LabelValue(a[0])
	}
	return &targetgroup.Group{Source: nodeSource(n.Name), Labels: ls, Targets: []model.LabelSet{t}}
}

// nodeDiscoveryFor returns the shared-informer discovery standing in for
// cfgs, a kubelet job's kubernetes_sd_configs, or false when they are not a
// single role-node config with at most a label selector.
func nodeDiscoveryFor(cfgs discovery.Configs, inf cache.SharedIndexInformer) (discovery.Configs, bool) {
	if inf == nil || len(cfgs) != 1 {
		return nil, false
	}
	k, ok := cfgs[0].(*kubernetes.SDConfig)
	if !ok || k.Role != kubernetes.RoleNode || k.APIServer.URL != nil || k.AttachMetadata != (kubernetes.AttachMetadataConfig{}) ||
		len(k.NamespaceDiscovery.Names) > 0 || k.NamespaceDiscovery.IncludeOwnNamespace {
		return nil, false
	}
	var sel labels.Selector
	for _, s := range k.Selectors {
		if s.Role != kubernetes.RoleNode || s.Field != "" || sel != nil {
			return nil, false
		}
		parsed, err := labels.Parse(s.Label)
		if err != nil {
			return nil, false
		}
		sel = parsed
	}
	return discovery.Configs{&NodeDiscoveryConfig{Informer: inf, Selector: sel}}, true
}
