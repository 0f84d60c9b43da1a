package storage

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// reserve keeps the TSDB off a full filesystem. Prometheus' TSDB handles a
// failed WAL write (the commit fails), but a commit can still fit in the
// WAL's last page, and the TSDB panics when it then cannot create or write
// the file of a full head chunk (handleChunkWriteError; upstream
// prometheus/prometheus#18152): TestReserveKeepsTheTSDBFromPanicking. So
// commits fail while the filesystem has less than min bytes free: with no
// samples appended no chunk fills and none is written, the scrape targets
// are reported down with the reason, and the commits succeed again once
// space returns. Open refuses on such a filesystem for the same reason:
// replaying the WAL writes head chunks.
type reserve struct {
	path string
	min  uint64
	// free is statfs, replaceable in tests.
	free func(path string) (uint64, error)

	mu      sync.Mutex
	checked time.Time
	err     error
}

// reserveCheckEvery bounds statfs calls: every scrape commits, and free
// space changes slowly next to the reserve.
const reserveCheckEvery = time.Second

// check returns an error while the filesystem has less than min bytes
// free. A filesystem that cannot be asked passes.
func (r *reserve) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reserveCheckEvery {
		r.checked = now
		r.err = nil
		if free, err := r.free(r.path); err == nil && free < r.min {
			r.err = fmt.Errorf("storage %s has %d bytes free, under the reserve of %d (--storage-min-free-space): samples are not stored until space returns", r.path, free, r.min)
		}
	}
	return r.err
}

// reserveAppender fails the commit while the reserve is not free.
type reserveAppender struct {
	storage.AppenderV2
	r *reserve
}

var _ storage.GetRef = reserveAppender{}

func (a reserveAppender) Commit() error {
	if err := a.r.check(); err != nil {
		_ = a.AppenderV2.Rollback()
		return err
	}
	return a.AppenderV2.Commit()
}

// GetRef passes the TSDB's lookup through, for the series cap above.
func (a reserveAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	return getRef(a.AppenderV2, ls, hash)
}

// getRef is app's series lookup, or none when app has no lookup.
func getRef(app storage.AppenderV2, ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := app.(storage.GetRef); ok {
		return g.GetRef(ls, hash)
	}
	return 0, labels.EmptyLabels()
}
