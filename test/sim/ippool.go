package sim

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrPoolExhausted is returned when every address of the pod range is taken.
var ErrPoolExhausted = errors.New("pod IP range exhausted")

// ipPool hands out pod IPs from base+1 up to the end of 127.0.0.0/8, so pod traffic
// never leaves the loopback interface. Allocation moves forward and wraps, so a
// freed address is reused as late as possible: a scraper still holding the old
// pod's target should not reach a new pod at the same address. Goroutine-safe.
type ipPool struct {
	mu    sync.Mutex
	first netip.Addr
	last  netip.Addr
	next  netip.Addr
	used  map[netip.Addr]bool
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

func newIPPool(base netip.Addr) (*ipPool, error) {
	if !base.Is4() || !loopback.Contains(base) {
		return nil, fmt.Errorf("pod CIDR base %s is not in %s", base, loopback)
	}
	first := base.Next()
	last := netip.MustParseAddr("127.255.255.254")
	if !first.IsValid() || last.Less(first) {
		return nil, fmt.Errorf("pod CIDR base %s leaves no addresses", base)
	}
	return &ipPool{first: first, last: last, next: first, used: map[netip.Addr]bool{}}, nil
}

// contains says whether a is one of the pool's addresses.
func (p *ipPool) contains(a netip.Addr) bool {
	return a.Is4() && !a.Less(p.first) && !p.last.Less(a)
}

// allocate returns the next free address.
func (p *ipPool) allocate() (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.next
	for {
		a := p.next
		p.next = a.Next()
		if p.last.Less(p.next) {
			p.next = p.first
		}
		if !p.used[a] {
			p.used[a] = true
			return a, nil
		}
		if p.next == start {
			return netip.Addr{}, ErrPoolExhausted
		}
	}
}

// reserve claims a specific address, for a pod that already had it before a
// restart of the simulator. It reports false when the address is not the pool's or
// is taken.
func (p *ipPool) reserve(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.contains(a) || p.used[a] {
		return false
	}
	p.used[a] = true
	return true
}

func (p *ipPool) release(a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, a)
}
