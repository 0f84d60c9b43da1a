package scrape

import (
	"context"
	"log/slog"
)

// outOfBoundsMessage is what Prometheus' scrape loop logs, at warning
// level, once per scrape in which an Append answered ErrOutOfBounds.
const outOfBoundsMessage = "Error on ingesting samples that are too old or are too far into the future"

// deferredAsDebug lowers outOfBoundsMessage to debug level. The series cap
// answers errDeferred, which matches ErrOutOfBounds, for every new series
// of a pod or user job so that the scrape loop does not cache it: every
// new pod's first scrape would log the warning, about samples that are in
// fact stored. Refusals at the cap are counted in
// metrics_gateway_series_rejected_total and logged by the cap itself.
type deferredAsDebug struct{ slog.Handler }

func (h deferredAsDebug) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == outOfBoundsMessage {
		if !h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h deferredAsDebug) WithAttrs(attrs []slog.Attr) slog.Handler {
	return deferredAsDebug{h.Handler.WithAttrs(attrs)}
}

func (h deferredAsDebug) WithGroup(name string) slog.Handler {
	return deferredAsDebug{h.Handler.WithGroup(name)}
}
