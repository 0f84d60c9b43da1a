package cluster

import (
	"sync"
	"testing"
)

// Ports are chosen before the processes that bind them start, so a port
// handed out once must never be handed out again while its process may
// not have bound it yet: not by the next call, and not to another
// goroutine (two scale-out replicas start at once).
func TestFreePortNeverRepeats(t *testing.T) {
	const goroutines, calls = 4, 1500
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				p, err := FreePort()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[p]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for p, n := range seen {
		if n > 1 {
			t.Errorf("port %d handed out %d times", p, n)
		}
	}
	if len(seen) != goroutines*calls && !t.Failed() {
		t.Errorf("%d distinct ports from %d calls", len(seen), goroutines*calls)
	}
}
