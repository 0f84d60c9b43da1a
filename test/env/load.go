package env

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Load sends rps requests per second in total, spread round-robin over the
// Running pods of ns matching selector (re-listed every second, as a
// Service would spread them), to port 8080 of each pod IP (loopback). It
// stops when ctx is done and returns how many requests succeeded.
func (e *Env) Load(ctx context.Context, ns, selector string, rps int) (int64, error) {
	if rps <= 0 || rps > 2000 {
		return 0, fmt.Errorf("load: rps %d out of range 1..2000", rps)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var ok atomic.Int64
	var targets atomic.Value
	targets.Store([]string{})
	refresh := func() {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return
		}
		var ts []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				ts = append(ts, "http://"+p.Status.PodIP+":8080/")
			}
		}
		targets.Store(ts)
	}
	refresh()
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	relist := time.NewTicker(time.Second)
	defer relist.Stop()
	sem := make(chan struct{}, 64) // bounds requests in flight
	i := 0
	for {
		select {
		case <-ctx.Done():
			return ok.Load(), nil
		case <-relist.C:
			refresh()
		case <-tick.C:
			ts := targets.Load().([]string)
			if len(ts) == 0 {
				continue
			}
			url := ts[i%len(ts)]
			i++
			select {
			case sem <- struct{}{}:
			default:
				continue // a slow pod: drop rather than pile up
			}
			go func() {
				defer func() { <-sem }()
				resp, err := client.Get(url)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					}
				}
			}()
		}
	}
}
