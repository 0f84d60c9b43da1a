package storage

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// committer runs the TSDB appenders' Commit and Rollback on a few
// goroutines of its own, so that the WAL record each of them compresses is
// compressed there and not on the caller's goroutine. It exists for
// snappy: Go's snappy encoder keeps a 32 KB hash table on the stack, and a
// commit made on a scrape loop's goroutine grew that loop's stack to 64 KB,
// which the GC halved again between scrapes (about 40 KB per target, and
// the copying that goes with it). On the committer's goroutines the table
// is paid once per goroutine. zstd keeps its tables on the heap, but
// probing 1 MB of them costs 30-70 µs per kubelet record where snappy
// takes 4-6 µs (docs/benchmarks.md, "The WAL's compression, again").
//
// The channel is unbuffered, so a call handed over is always run: Close
// waits for the goroutines, and a call made after it runs on the caller.
type committer struct {
	calls    chan *commitCall
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	pool     sync.Pool // of *commitCall
}

type commitCall struct {
	app      storage.AppenderV2
	rollback bool
	done     chan error
}

// newCommitter starts n goroutines. The WAL writes one record at a time
// under its own lock, so more goroutines than CPUs would only wait there.
func newCommitter(n int) *committer {
	c := &committer{calls: make(chan *commitCall), stop: make(chan struct{})}
	c.wg.Add(n)
	for range n {
		go c.loop()
	}
	return c
}

func (c *committer) loop() {
	defer c.wg.Done()
	for {
		select {
		case call := <-c.calls:
			call.done <- call.run()
		case <-c.stop:
			return
		}
	}
}

func (call *commitCall) run() error {
	if call.rollback {
		return call.app.Rollback()
	}
	return call.app.Commit()
}

// do runs app's Commit (or Rollback) on one of the committer's goroutines
// and returns its error.
func (c *committer) do(app storage.AppenderV2, rollback bool) error {
	call, _ := c.pool.Get().(*commitCall)
	if call == nil {
		call = &commitCall{done: make(chan error, 1)}
	}
	call.app, call.rollback = app, rollback
	var err error
	select {
	case c.calls <- call:
		err = <-call.done
	case <-c.stop:
		err = call.run()
	}
	call.app = nil
	c.pool.Put(call)
	return err
}

// close stops the goroutines once the calls they hold are done. It may be
// called more than once.
func (c *committer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// committerAppender commits and rolls back through a committer.
type committerAppender struct {
	storage.AppenderV2
	c *committer
}

var _ storage.GetRef = committerAppender{}

func (a committerAppender) Commit() error   { return a.c.do(a.AppenderV2, false) }
func (a committerAppender) Rollback() error { return a.c.do(a.AppenderV2, true) }

// GetRef passes the TSDB's lookup through, for the series cap above.
func (a committerAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	return getRef(a.AppenderV2, ls, hash)
}
