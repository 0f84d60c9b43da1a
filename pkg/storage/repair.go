package storage

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb"
)

// CorruptDir is where, under the storage path, blocks that cannot be
// opened are moved. The TSDB reads only directories named by a ULID, so
// what is here is kept for inspection and never read again.
const CorruptDir = "corrupt"

// quarantineCorruptBlocks moves every block of dir that does not open on
// its own to CorruptDir, with an error log naming it: one damaged block (a
// disk error, a partial copy) costs its two hours of history, not every
// start after it (Prometheus refuses to start until an operator deletes the
// block). It runs before the TSDB opens, not after an open failed, because
// tsdb.Open registers its metrics and a second Open on the same registry
// would fail; it costs one extra open of each block's index at start.
func quarantineCorruptBlocks(dir string, logger *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := ulid.ParseStrict(e.Name()); err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, openErr := tsdb.OpenBlock(logger, path, nil, nil)
		if openErr == nil {
			if err := b.Close(); err != nil {
				return fmt.Errorf("close block %s: %w", e.Name(), err)
			}
			continue
		}
		dest := filepath.Join(dir, CorruptDir, e.Name())
		if err := os.MkdirAll(filepath.Dir(dest), 0o750); err != nil {
			return fmt.Errorf("move corrupt block %s aside: %w", e.Name(), err)
		}
		if err := os.Rename(path, dest); err != nil {
			return fmt.Errorf("move corrupt block %s aside: %w", e.Name(), err)
		}
		logger.Error("Moved a corrupt block aside; its samples are no longer served", "block", e.Name(), "to", dest, "err", openErr)
	}
	return nil
}
