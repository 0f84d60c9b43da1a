package scrape

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// targetSets hands the scrape manager the target groups of every job: the
// built-in jobs' from their discoverers (the shared informers', static
// targets), run here, and users' jobs' from Prometheus' discovery manager,
// which runs only when there are such jobs.
//
// Prometheus' discovery manager polls for updates at 10 Hz whenever
// nothing has changed for a second: its sender's backoff, from 100 ms up to
// its update interval, is reset on every tick while idle
// (discovery/manager.go, "Nothing happened for a while"). An otherwise
// idle process running one spends about 150 ms of CPU per minute on those
// wake-ups, more than half of what metrics-server spends on everything at
// 10x30 (docs/benchmarks.md, "CPU at 10×30"). Here a timer runs only while
// an update waits to be sent, with the same pacing: the first update after
// a quiet second goes after firstSendDelay, and sends are at least
// sendEvery apart, so a burst (every pod of a large cluster at startup)
// becomes one set per second, not one per pod.
type targetSets struct {
	// jobs are the discoverers of the jobs run here, by job name.
	jobs map[string][]discovery.Discoverer
	out  chan map[string][]*targetgroup.Group
}

const (
	firstSendDelay = 100 * time.Millisecond
	sendEvery      = time.Second
)

// ownDiscovery splits the jobs' discovery configs into those run here (the
// built-in jobs' shared-informer configs and static targets) and the rest,
// for Prometheus' discovery manager.
func ownDiscovery(cfgs map[string]discovery.Configs) (own, others map[string]discovery.Configs) {
	own, others = map[string]discovery.Configs{}, map[string]discovery.Configs{}
	for job, cs := range cfgs {
		ours := true
		for _, c := range cs {
			switch c.(type) {
			case *PodDiscoveryConfig, *NodeDiscoveryConfig, discovery.StaticConfig:
			default:
				ours = false
			}
		}
		if ours {
			own[job] = cs
		} else {
			others[job] = cs
		}
	}
	return own, others
}

func newTargetSets(cfgs map[string]discovery.Configs, logger *slog.Logger) (*targetSets, error) {
	s := &targetSets{jobs: map[string][]discovery.Discoverer{}, out: make(chan map[string][]*targetgroup.Group)}
	for job, cs := range cfgs {
		s.jobs[job] = []discovery.Discoverer{}
		for _, c := range cs {
			d, err := c.NewDiscoverer(discovery.DiscovererOptions{Logger: logger.With("job", job, "discovery", c.Name())})
			if err != nil {
				return nil, err
			}
			s.jobs[job] = append(s.jobs[job], d)
		}
	}
	return s, nil
}

// groupsUpdate is what one discoverer sent.
type groupsUpdate struct {
	provider provider
	groups   []*targetgroup.Group
}

// provider is one discoverer of one job.
type provider struct {
	job string
	i   int
}

// run runs the discoverers and sends the sets until ctx is done; upstream
// is Prometheus' discovery manager's channel, or nil.
func (s *targetSets) run(ctx context.Context, upstream <-chan map[string][]*targetgroup.Group) {
	updates := make(chan groupsUpdate)
	for job, ds := range s.jobs {
		for i, d := range ds {
			ch := make(chan []*targetgroup.Group)
			go d.Run(ctx, ch)
			go forward(ctx, provider{job, i}, ch, updates)
		}
	}
	groups := map[provider]map[string]*targetgroup.Group{}
	var theirs map[string][]*targetgroup.Group
	var lastSent time.Time
	// Every job's set is sent once at the start, empty or not, as the
	// discovery manager does for a job whose discoverers found nothing.
	fire := time.After(firstSendDelay)
	pending := func() {
		if fire == nil {
			fire = time.After(max(firstSendDelay, time.Until(lastSent.Add(sendEvery))))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-updates:
			byProvider := groups[u.provider]
			if byProvider == nil {
				byProvider = map[string]*targetgroup.Group{}
				groups[u.provider] = byProvider
			}
			for _, tg := range u.groups {
				switch {
				case tg == nil:
				case len(tg.Targets) == 0:
					delete(byProvider, tg.Source)
				default:
					byProvider[tg.Source] = tg
				}
			}
			pending()
		case ts, ok := <-upstream:
			if !ok {
				upstream = nil
				continue
			}
			theirs = ts
			pending()
		case <-fire:
			fire = nil
			select {
			case s.out <- s.all(groups, theirs):
				lastSent = time.Now()
			case <-ctx.Done():
				return
			}
		}
	}
}

// all is the full set the scrape manager takes: every job, each with its
// groups (an empty list drops a job's last targets).
func (s *targetSets) all(groups map[provider]map[string]*targetgroup.Group, theirs map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	sets := make(map[string][]*targetgroup.Group, len(s.jobs)+len(theirs))
	for job := range s.jobs {
		sets[job] = []*targetgroup.Group{}
	}
	for p, bySource := range groups {
		for _, tg := range bySource {
			sets[p.job] = append(sets[p.job], tg)
		}
	}
	for job, tgs := range theirs {
		sets[job] = tgs
	}
	return sets
}

// forward passes what one discoverer sends on, until it closes its
// channel (static targets send once and close) or ctx is done.
func forward(ctx context.Context, p provider, ch <-chan []*targetgroup.Group, updates chan<- groupsUpdate) {
	for {
		select {
		case <-ctx.Done():
			return
		case tgs, ok := <-ch:
			if !ok {
				return
			}
			select {
			case updates <- groupsUpdate{p, tgs}:
			case <-ctx.Done():
				return
			}
		}
	}
}
