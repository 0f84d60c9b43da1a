package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Server is a complete gateway, ready to run.
type Server struct {
	// self serves /metrics on loopback for the gateway's own scrape job.
	self *loopbackServer
	// insecureQuery is the optional plain-HTTP query API; nil when off.
	insecureQuery   *loopbackServer
	api             *genericapiserver.GenericAPIServer
	store           *storage.Storage
	scraper         *scrape.Manager
	nodeInformers   informers.SharedInformerFactory
	podInformers    metadatainformer.SharedInformerFactory
	objects         *objectLister
	informersSynced []func() bool
}

// RunUntil runs informers, scraping and the API server until ctx is done,
// then stops them and closes storage.
func (s *Server) RunUntil(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.nodeInformers.Start(ctx.Done())
	s.podInformers.Start(ctx.Done())
	s.objects.start(ctx.Done())

	s.self.start()
	if s.insecureQuery != nil {
		s.insecureQuery.start()
	}
	scrapeDone := make(chan error, 1)
	go func() { scrapeDone <- s.scraper.Run(ctx) }()

	prepared := s.api.PrepareRun()
	apiErr := prepared.RunWithContext(ctx)
	cancel()
	err := errors.Join(apiErr, <-scrapeDone)
	s.nodeInformers.Shutdown()
	s.podInformers.Shutdown()
	s.objects.shutdown()
	err = errors.Join(err, s.self.close())
	if s.insecureQuery != nil {
		err = errors.Join(err, s.insecureQuery.close())
	}
	if cerr := s.store.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close storage: %w", cerr))
	}
	return err
}

// addHealthChecks: livez fails only on what a restart fixes (storage gone,
// the scrape loop stalled); readyz also waits for informers.
// A kubelet that fails its scrapes still counts as scraped: it is absent
// from answers, and the gateway is healthy.
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
	if err := s.api.AddHealthChecks(storageCheck, scrapeCheck); err != nil {
		return err
	}
	return s.api.AddReadyzChecks(informerCheck)
}

// loopbackServer is a plain-HTTP listener bound at construction, so a bad
// address fails the start, not a goroutine later.
type loopbackServer struct {
	ln   net.Listener
	srv  *http.Server
	once sync.Once
	err  error
}

func newLoopbackServer(addr string, h http.Handler) (*loopbackServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &loopbackServer{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

func (l *loopbackServer) addr() string { return l.ln.Addr().String() }

func (l *loopbackServer) start() {
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Loopback listener stopped", "address", l.addr())
		}
	}()
}

// close stops the listener; safe before start and more than once.
func (l *loopbackServer) close() error {
	l.once.Do(func() {
		l.err = l.srv.Close()
		if cerr := l.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			l.err = errors.Join(l.err, cerr)
		}
	})
	return l.err
}
