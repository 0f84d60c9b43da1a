package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/backend"
	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Server is a complete gateway, ready to run.
type Server struct {
	// certs rotates the self-managed serving certificate; nil when off.
	certs *certs.Manager
	// self serves /metrics on loopback for the gateway's own scrape job.
	self *loopbackServer
	// kubeletToken renews the token sent to kubelets; nil when the
	// gateway sends its own credentials.
	kubeletToken *kubeletToken
	// drainTimeout bounds the drain of each listener at shutdown.
	drainTimeout time.Duration
	// insecureQuery is the optional plain-HTTP query API; nil when off.
	insecureQuery   *loopbackServer
	api             *genericapiserver.GenericAPIServer
	store           *storage.Storage
	scraper         *scrape.Manager
	nodeInformers   informers.SharedInformerFactory
	podInformer     cache.SharedIndexInformer
	objects         *objectLister
	informersSynced []func() bool
	// autoscaling and recorder are the autoscaling history, the page and
	// explain read; nil without --record-autoscalers.
	autoscaling *autoscaling.Sources
	recorder    *autoscaling.Recorder
	// remoteWrite ships what is stored to the scale-out engine, and
	// backend evaluates the custom metrics and query APIs there; nil in
	// single-process mode (docs/scale-out.md).
	remoteWrite *storage.RemoteWrite
	backend     *backend.Engine
}

// RunUntil runs informers, scraping and the API server until ctx is done,
// then stops them and closes storage.
func (s *Server) RunUntil(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.nodeInformers.Start(ctx.Done())
	podsDone := make(chan struct{})
	go func() { s.podInformer.RunWithContext(ctx); close(podsDone) }()
	s.objects.start(ctx.Done())

	if s.certs != nil {
		go s.certs.Run(ctx, certs.DefaultInterval)
	}
	if s.kubeletToken != nil {
		go s.kubeletToken.run(ctx)
	}
	s.self.start()
	if s.insecureQuery != nil {
		s.insecureQuery.start()
	}
	scrapeDone := make(chan error, 1)
	go func() { scrapeDone <- s.scraper.Run(ctx) }()
	if s.recorder != nil {
		go s.recorder.Run(ctx)
	}
	if s.backend != nil {
		go s.backend.Run(ctx)
	}

	// The plain-HTTP listeners drain while the secure port does, so the
	// two drains add up to the longer one, not their sum.
	loopbacks := []*loopbackServer{s.self}
	if s.insecureQuery != nil {
		loopbacks = append(loopbacks, s.insecureQuery)
	}
	drained := make(chan error, len(loopbacks))
	for _, l := range loopbacks {
		go func() {
			<-ctx.Done()
			drained <- l.shutdown(s.drainTimeout)
		}()
	}
	prepared := s.api.PrepareRun()
	apiErr := prepared.RunWithContext(ctx)
	cancel()
	err := errors.Join(apiErr, <-scrapeDone)
	s.nodeInformers.Shutdown()
	<-podsDone
	s.objects.shutdown()
	// Queries still running on the plain-HTTP listeners finish (or are cut
	// off) before the TSDB closes under them.
	for range loopbacks {
		err = errors.Join(err, <-drained)
	}
	if s.kubeletToken != nil {
		err = errors.Join(err, s.kubeletToken.close())
	}
	if s.remoteWrite != nil {
		// The queues flush what they hold before the WAL they read closes.
		if cerr := s.remoteWrite.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close remote write: %w", cerr))
		}
	}
	if cerr := s.store.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close storage: %w", cerr))
	}
	return err
}

// WaitStarted returns once the informers have synced and a kubelet scrape
// has finished (what /readyz and /livez wait for), or when ctx is done: the
// end of the gateway's start, when caches are filled and the first
// scrapes have created their series.
func (s *Server) WaitStarted(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		synced := true
		for _, f := range s.informersSynced {
			synced = synced && f()
		}
		if synced && s.scraper.CheckFresh(scrape.KubeletJobName) == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addHealthChecks: livez fails only on what a restart fixes (storage gone,
// the scrape loop stalled); readyz also waits for informers.
// A kubelet that fails its scrapes still counts as scraped: it is absent
// from answers, and the gateway is healthy.
// BackendCheckName is the /readyz check of the scale-out query backend.
const BackendCheckName = "query-backend"

func (s *Server) addHealthChecks() error {
	storageCheck := healthz.NamedCheck("storage", func(*http.Request) error { return s.store.Ready() })
	scrapeCheck := healthz.NamedCheck("scrape-timely", func(*http.Request) error { return s.scraper.CheckFresh(scrape.KubeletJobName) })
	informerCheck := healthz.NamedCheck("informers-synced", func(*http.Request) error {
		for _, synced := range s.informersSynced {
			if !synced() {
				return errors.New("informers not synced")
			}
		}
		return nil
	})
	// Not livez: a restart does not free disk space, and the pod keeps
	// answering from what it holds.
	writeCheck := healthz.NamedCheck("storage-writable", func(*http.Request) error { return s.scraper.CheckStorageWrites() })
	// A replica is ready once it can answer cpu for every node it scraped:
	// two stored kubelet scrapes each (at start, one scrape made it ready,
	// and its first answers lacked every node's cpu).
	ratesCheck := healthz.NamedCheck("kubelet-rates", func(*http.Request) error { return s.scraper.CheckRatesReady(scrape.KubeletJobName) })
	if err := s.api.AddHealthChecks(storageCheck, scrapeCheck); err != nil {
		return err
	}
	ready := []healthz.HealthChecker{informerCheck, writeCheck, ratesCheck}
	if s.backend != nil {
		// Says why custom and external metrics fail. The scale-out
		// overlay's readiness probe excludes it: metrics.k8s.io answers
		// from the replica's own scrapes while the engine is down.
		ready = append(ready, healthz.NamedCheck(BackendCheckName, func(*http.Request) error { return s.backend.Ready() }))
	}
	return s.api.AddReadyzChecks(ready...)
}
