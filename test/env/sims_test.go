package env

import (
	"slices"
	"testing"
)

// TestSimSplit: nodes go to simkubelet processes NodesPerSim at a time, each
// process starting at the address after the previous one's last node.
func TestSimSplit(t *testing.T) {
	for _, tc := range []struct {
		nodes, per int
		first      string
		want       []int
		firstIPs   []string
	}{
		{nodes: 3, want: []int{3}, firstIPs: []string{""}},
		{nodes: 3, first: "127.0.0.10", want: []int{3}, firstIPs: []string{"127.0.0.10"}},
		{nodes: 10, per: 250, first: "127.0.0.10", want: []int{10}, firstIPs: []string{"127.0.0.10"}},
		{nodes: 600, per: 250, first: "127.0.0.10", want: []int{250, 250, 100}, firstIPs: []string{"127.0.0.10", "127.0.1.4", "127.0.1.254"}},
		{nodes: 500, per: 250, first: "127.0.0.10", want: []int{250, 250}, firstIPs: []string{"127.0.0.10", "127.0.1.4"}},
	} {
		e := &Env{Options: Options{Nodes: tc.nodes, NodesPerSim: tc.per, FirstNodeIP: tc.first}}
		got := e.simSplit()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d nodes, %d per process: split %v, want %v", tc.nodes, tc.per, got, tc.want)
		}
		var ips []string
		for k := range got {
			ips = append(ips, e.firstIP(k))
		}
		if !slices.Equal(ips, tc.firstIPs) {
			t.Errorf("%d nodes, %d per process: first addresses %v, want %v", tc.nodes, tc.per, ips, tc.firstIPs)
		}
	}
}
