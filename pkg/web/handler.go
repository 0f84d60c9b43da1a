// Package web serves the autoscaling page and the explain endpoint: the
// list of HPAs, each HPA's metrics against their targets and its replicas
// over time beside the replayed decision (pkg/autoscaling), a chart of any
// PromQL expression, and the explanation as JSON for tools. Everything is
// rendered on the server (charts as inline SVG), so the page needs no
// script and no build step.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Paths the handler serves; the secure port authorizes them as
// non-resource URLs (manifests/base/rbac-readers.yaml).
const (
	UIPrefix      = "/ui"
	ExplainPrefix = "/explain/"
)

// Options configure the handler. All but Graph are required.
type Options struct {
	Sources *autoscaling.Sources
	// Explain is the controller's settings the replay assumes.
	Explain autoscaling.Options
	// Query holds the autoscaling history the HPA pages chart.
	Query storage.Querier
	// Graph evaluates /ui/graph's expressions; Query when nil. A scale-out
	// replica's is the engine, which holds every shard's series.
	Graph   storage.Querier
	Timeout time.Duration
}

// NewHandler serves UIPrefix and ExplainPrefix.
func NewHandler(o Options) http.Handler {
	if o.Graph == nil {
		o.Graph = o.Query
	}
	h := &handler{o: o}
	m := http.NewServeMux()
	m.HandleFunc("GET "+ExplainPrefix+"hpa/{namespace}/{name}", h.explainJSON)
	m.Handle("GET "+UIPrefix, http.RedirectHandler(UIPrefix+"/", http.StatusFound))
	m.HandleFunc("GET "+UIPrefix+"/{$}", h.list)
	m.HandleFunc("GET "+UIPrefix+"/hpa/{namespace}/{name}", h.hpa)
	m.HandleFunc("GET "+UIPrefix+"/graph", h.graph)
	return m
}

type handler struct{ o Options }

// explainJSON answers an Explanation, or a Kubernetes Status.
func (h *handler) explainJSON(w http.ResponseWriter, r *http.Request) {
	at, err := parseAt(r.URL.Query().Get("at"), time.Now())
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	e, err := h.explain(r.Context(), ns, name, at)
	if err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(e)
}

// explain replays ns/name at at; an HPA that does not exist is a 404, a
// failed replay of one that does a 500 naming the cause.
func (h *handler) explain(ctx context.Context, ns, name string, at time.Time) (autoscaling.Explanation, error) {
	if _, err := h.o.Sources.HPAs.HorizontalPodAutoscalers(ns).Get(name); err != nil {
		return autoscaling.Explanation{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	e, err := h.o.Sources.Explain(ctx, ns, name, at, h.o.Explain)
	if err != nil {
		// Storage busy or slow keeps its 503 or 504; anything else (a scale
		// target not found, say) is this server's failure to explain.
		var status apierrors.APIStatus
		if errors.As(err, &status) && (status.Status().Code == http.StatusServiceUnavailable || status.Status().Code == http.StatusGatewayTimeout) {
			return e, err
		}
		if errors.Is(err, autoscaling.ErrNotRecorded) {
			return e, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound, Message: err.Error()}}
		}
		return e, apierrors.NewInternalError(fmt.Errorf("explain %s/%s: %w", ns, name, err))
	}
	return e, nil
}

// parseAt reads ?at=: RFC 3339 or unix seconds, not after now; empty is
// now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return time.Time{}, fmt.Errorf("at=%q: want an RFC 3339 time or unix seconds", s)
		}
		t = time.UnixMilli(int64(f * 1000))
	}
	if t.After(now.Add(time.Second)) {
		return time.Time{}, fmt.Errorf("at=%q is in the future", s)
	}
	return t, nil
}

// writeStatus writes err as a Kubernetes Status.
func writeStatus(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	s := status.Status()
	s.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s)
}
