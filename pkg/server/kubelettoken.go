package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
)

// KubeletTokenLifetime is how long a token requested for kubelets lives.
// The API server may issue it longer (--service-account-max-token-expiration
// is a ceiling, extended tokens a floor); the renewal follows what it issued.
const KubeletTokenLifetime = time.Hour

// RequestKubeletToken asks the TokenRequest API for a token of the
// ServiceAccount namespace/name living about lifetime. The gateway sends
// such tokens to kubelets instead of its own, which may also write its
// serving-certificate Secret and patch its APIServices: a node that records
// what it is sent then holds a token that can read node metrics and nothing
// else, and only until it expires.
func RequestKubeletToken(ctx context.Context, client kubernetes.Interface, namespace, name string, lifetime time.Duration) (token string, expires time.Time, err error) {
	secs := int64(lifetime.Seconds())
	tr, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("request a token for ServiceAccount %s/%s (the gateway needs create on its serviceaccounts/token): %w", namespace, name, err)
	}
	if tr.Status.Token == "" {
		return "", time.Time{}, fmt.Errorf("request a token for ServiceAccount %s/%s: empty token", namespace, name)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// kubeletToken keeps a current token for kubelets in a private file, which
// the kubelet jobs read as their bearer_token_file (pkg/scrape notices a
// changed file at the next scrape). It renews at four fifths of a token's
// life, as the kubelet renews projected tokens, and retries failures with
// backoff while the old token still lives.
type kubeletToken struct {
	client          kubernetes.Interface
	namespace, name string
	dir, file       string
	lock            fileutil.Releaser
	logger          *slog.Logger

	mu       sync.Mutex // guards issued and expires
	expires  time.Time
	issued   time.Time
	failures prometheus.Counter
	expiry   prometheus.GaugeFunc
}

// newKubeletToken requests the first token (retrying for up to a minute:
// the API server may still be starting) and writes it under a new private
// directory.
func newKubeletToken(ctx context.Context, client kubernetes.Interface, account string, logger *slog.Logger, reg prometheus.Registerer) (*kubeletToken, error) {
	ns, name, err := scrape.KubeletOptions{ServiceAccount: account}.ServiceAccountRef()
	if err != nil {
		return nil, err
	}
	logger = logger.With("component", "kubelet-token", "serviceaccount", account)
	dir, lock, err := makeTokenDir(os.TempDir(), logger)
	if err != nil {
		return nil, fmt.Errorf("kubelet token directory: %w", err)
	}
	k := &kubeletToken{client: client, namespace: ns, name: name, dir: dir, lock: lock, file: filepath.Join(dir, "token"), logger: logger}
	k.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "metrics_gateway_kubelet_token_request_failures_total",
		Help: "Failed TokenRequests for the ServiceAccount whose tokens are sent to kubelets (--kubelet-service-account).",
	})
	k.expiry = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metrics_gateway_kubelet_token_expiry_timestamp_seconds",
		Help: "When the token sent to kubelets expires, in Unix seconds.",
	}, func() float64 { _, exp := k.life(); return float64(exp.Unix()) })
	for _, c := range []prometheus.Collector{k.failures, k.expiry} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(fmt.Errorf("register kubelet token metrics: %w", err), k.close())
		}
	}
	first, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	err = wait.PollUntilContextCancel(first, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		if last = k.renew(ctx); last != nil {
			k.logger.Warn("Requesting the first kubelet token failed; retrying", "err", last)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("first kubelet token: %w", last), k.close())
	}
	return k, nil
}

// renew requests a token and replaces the file with it.
func (k *kubeletToken) renew(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, expires, err := RequestKubeletToken(rctx, k.client, k.namespace, k.name, KubeletTokenLifetime)
	if err != nil {
		k.failures.Inc()
		return err
	}
	tmp := k.file + ".new"
	if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
		return fmt.Errorf("write kubelet token: %w", err)
	}
	if err := os.Rename(tmp, k.file); err != nil {
		return fmt.Errorf("write kubelet token: %w", err)
	}
	k.mu.Lock()
	k.issued, k.expires = time.Now(), expires
	k.mu.Unlock()
	k.logger.Info("Kubelet token renewed", "expires", expires)
	return nil
}

func (k *kubeletToken) life() (issued, expires time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issued, k.expires
}

// nextRenewal is four fifths into the current token's life.
func (k *kubeletToken) nextRenewal() time.Duration {
	issued, expires := k.life()
	return time.Until(issued.Add(expires.Sub(issued) * 4 / 5))
}

// run renews until ctx is done. A failure is retried with backoff from 2s,
// capped at a tenth of the token's remaining life, so several retries fit
// before it expires; kubelets answer 401 only once it has.
func (k *kubeletToken) run(ctx context.Context) {
	backoff := 2 * time.Second
	t := time.NewTimer(k.nextRenewal())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.renew(ctx); err != nil {
			_, expires := k.life()
			retry := min(backoff, max(time.Until(expires)/10, time.Second))
			k.logger.Error("Renewing the kubelet token failed", "err", err, "retry", retry, "expires", expires)
			backoff = min(2*backoff, 5*time.Minute)
			t.Reset(retry)
			continue
		}
		backoff = 2 * time.Second
		t.Reset(k.nextRenewal())
	}
}

// close removes the token directory.
func (k *kubeletToken) close() error {
	return errors.Join(os.RemoveAll(k.dir), k.lock.Release())
}

// tokenDirPrefix names the private directories kubelet tokens are kept in.
const tokenDirPrefix = "metrics-gateway-kubelet-token-"

// makeTokenDir creates a private directory for the kubelet token under
// parent, holding a lock on its file "lock" for the life of the process:
// the kernel drops the lock however the process ends. First it removes
// the directories of gateways that ended without removing theirs (a
// SIGKILL, an OOM kill), each holding a token that may still be valid:
// those whose lock nobody holds. A directory without a lock file is left
// alone: it may be another gateway's being made.
func makeTokenDir(parent string, logger *slog.Logger) (string, fileutil.Releaser, error) {
	stale, _ := filepath.Glob(filepath.Join(parent, tokenDirPrefix+"*"))
	for _, old := range stale {
		lockFile := filepath.Join(old, "lock")
		if _, err := os.Stat(lockFile); err != nil {
			continue
		}
		l, _, err := fileutil.Flock(lockFile)
		if err != nil {
			continue // held: that gateway runs
		}
		err = errors.Join(os.RemoveAll(old), l.Release())
		logger.Info("Removed the kubelet token directory of a gateway that ended without removing it", "dir", old, "err", err)
	}
	dir, err := os.MkdirTemp(parent, tokenDirPrefix)
	if err != nil {
		return "", nil, err
	}
	// Locked under another name, then renamed: a sweeping gateway never
	// sees this directory's lock file unlocked.
	lock, _, err := fileutil.Flock(filepath.Join(dir, "lock.new"))
	if err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(dir))
	}
	if err := os.Rename(filepath.Join(dir, "lock.new"), filepath.Join(dir, "lock")); err != nil {
		return "", nil, errors.Join(err, lock.Release(), os.RemoveAll(dir))
	}
	return dir, lock, nil
}
