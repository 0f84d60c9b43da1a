package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// StopPoll wraps an error that ends a Poll at once (a process that exited
// will not become ready).
type StopPoll struct{ Err error }

func (s StopPoll) Error() string { return s.Err.Error() }
func (s StopPoll) Unwrap() error { return s.Err }

// Poll runs f every period until it returns nil, returns a StopPoll, ctx
// ends or timeout passes; the error names what was awaited and f's last
// error. It is the one poll loop of the harness: the cluster, env, the
// e2e suite and the benchmarks wait through it.
func Poll(ctx context.Context, period, timeout time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		last := f()
		if last == nil {
			return nil
		}
		if stop := (StopPoll{}); errors.As(last, &stop) {
			return stop.Err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %v: %w", what, timeout, last)
		case <-t.C:
		}
	}
}
