package resource

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/metrics/pkg/apis/metrics"
)

// The tables `kubectl get podmetrics,nodemetrics` print: Name, one quantity
// column per resource (sorted, taken from the first row), Window; as
// metrics-server v0.9.0 renders them.

func podTable(obj runtime.Object) *metav1.Table {
	var t metav1.Table
	var pods []metrics.PodMetrics
	switch o := obj.(type) {
	case *metrics.PodMetrics:
		t.ResourceVersion = o.ResourceVersion
		pods = []metrics.PodMetrics{*o}
	case *metrics.PodMetricsList:
		t.ResourceVersion = o.ResourceVersion
		t.Continue = o.Continue
		pods = o.Items
	}
	var names []corev1.ResourceName
	for i := range pods {
		usage := corev1.ResourceList{}
		for _, c := range pods[i].Containers {
			for k, v := range c.Usage {
				u := usage[k]
				u.Add(v)
				usage[k] = u
			}
		}
		if names == nil {
			names = tableColumns(&t, usage)
		}
		t.Rows = append(t.Rows, tableRow(pods[i].Name, names, usage, pods[i].Window, &pods[i]))
	}
	return &t
}

func nodeTable(obj runtime.Object) *metav1.Table {
	var t metav1.Table
	var nodes []metrics.NodeMetrics
	switch o := obj.(type) {
	case *metrics.NodeMetrics:
		t.ResourceVersion = o.ResourceVersion
		nodes = []metrics.NodeMetrics{*o}
	case *metrics.NodeMetricsList:
		t.ResourceVersion = o.ResourceVersion
		t.Continue = o.Continue
		nodes = o.Items
	}
	var names []corev1.ResourceName
	for i := range nodes {
		if names == nil {
			names = tableColumns(&t, nodes[i].Usage)
		}
		t.Rows = append(t.Rows, tableRow(nodes[i].Name, names, nodes[i].Usage, nodes[i].Window, &nodes[i]))
	}
	return &t
}

// tableColumns defines t's columns from the first row's resources and
// returns them in column order.
func tableColumns(t *metav1.Table, usage corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(usage))
	for k := range usage {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	t.ColumnDefinitions = []metav1.TableColumnDefinition{{Name: "Name", Type: "string", Format: "name", Description: "Name of the resource"}}
	for _, n := range names {
		t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{Name: string(n), Type: "string", Format: "quantity"})
	}
	t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Window", Type: "string", Format: "duration"})
	return names
}

func tableRow(name string, names []corev1.ResourceName, usage corev1.ResourceList, window metav1.Duration, obj runtime.Object) metav1.TableRow {
	cells := make([]any, 0, len(names)+2)
	cells = append(cells, name)
	for _, n := range names {
		v := usage[n]
		cells = append(cells, v.String())
	}
	cells = append(cells, window.Duration.String())
	return metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}}
}
