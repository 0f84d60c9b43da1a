package storage

import (
	"errors"
	"testing"

	"github.com/prometheus/prometheus/storage"
)

type fakeCommitApp struct {
	storage.AppenderV2
	commits, rollbacks int
	err                error
}

func (a *fakeCommitApp) Commit() error   { a.commits++; return a.err }
func (a *fakeCommitApp) Rollback() error { a.rollbacks++; return a.err }

func TestCommitterRunsEveryCallBeforeAndAfterClose(t *testing.T) {
	c := newCommitter(2)
	app := &fakeCommitApp{err: errors.New("boom")}
	for _, closed := range []bool{false, true} {
		if closed {
			c.close()
		}
		if err := (committerAppender{AppenderV2: app, c: c}).Commit(); err != app.err {
			t.Errorf("closed=%v: Commit returned %v, want the appender's error", closed, err)
		}
		if err := (committerAppender{AppenderV2: app, c: c}).Rollback(); err != app.err {
			t.Errorf("closed=%v: Rollback returned %v, want the appender's error", closed, err)
		}
	}
	c.close() // Storage.Close may be called twice
	if app.commits != 2 || app.rollbacks != 2 {
		t.Fatalf("%d commits and %d rollbacks ran, want 2 and 2", app.commits, app.rollbacks)
	}
}
