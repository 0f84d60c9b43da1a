package sim

import (
	"context"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// WebhookAuth authenticates and authorizes bearer tokens as a kubelet in
// webhook mode does (--authentication-token-webhook,
// --authorization-mode=Webhook): a TokenReview names the user, a
// SubjectAccessReview asks whether it may get nodes/metrics of this node.
// Answers are cached for a minute, as the kubelet's webhook cache does. It
// also records every distinct token it was shown, so that a test can see
// exactly what a node could have kept.
type WebhookAuth struct {
	client kubernetes.Interface

	mu    sync.Mutex
	cache map[string]webhookAnswer // by node + token
	seen  map[string]*SeenToken    // by token
	order []string
}

type webhookAnswer struct {
	allowed bool
	at      time.Time
}

// SeenToken is one distinct bearer token a simulated kubelet received.
type SeenToken struct {
	Token    string `json:"token"`
	User     string `json:"user"`
	Allowed  bool   `json:"allowed"`
	Requests int    `json:"requests"`
}

// maxSeenTokens bounds the record: a scraper renewing hourly shows a few.
const maxSeenTokens = 100

// NewWebhookAuth reviews tokens with client (the simulator's own
// credentials, as a kubelet uses its own).
func NewWebhookAuth(client kubernetes.Interface) *WebhookAuth {
	return &WebhookAuth{client: client, cache: map[string]webhookAnswer{}, seen: map[string]*SeenToken{}}
}

// allow reports whether token may read node's metrics.
func (a *WebhookAuth) allow(ctx context.Context, token, node string) bool {
	key := node + "\x00" + token
	a.mu.Lock()
	if ans, ok := a.cache[key]; ok && time.Since(ans.at) < time.Minute {
		a.record(token, "", ans.allowed)
		a.mu.Unlock()
		return ans.allowed
	}
	a.mu.Unlock()
	user, allowed := a.review(ctx, token, node)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) > 10*maxSeenTokens {
		clear(a.cache)
	}
	a.cache[key] = webhookAnswer{allowed: allowed, at: time.Now()}
	a.record(token, user, allowed)
	return allowed
}

// record counts token; mu must be held.
func (a *WebhookAuth) record(token, user string, allowed bool) {
	s := a.seen[token]
	if s == nil {
		if len(a.order) >= maxSeenTokens {
			delete(a.seen, a.order[0])
			a.order = a.order[1:]
		}
		s = &SeenToken{Token: token}
		a.seen[token] = s
		a.order = append(a.order, token)
	}
	if user != "" {
		s.User = user
	}
	s.Allowed = allowed
	s.Requests++
}

func (a *WebhookAuth) review(ctx context.Context, token, node string) (user string, allowed bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		klog.ErrorS(err, "TokenReview", "node", node)
		return "", false
	}
	if !tr.Status.Authenticated {
		return "", false
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics", Name: node},
	}}, metav1.CreateOptions{})
	if err != nil {
		klog.ErrorS(err, "SubjectAccessReview", "node", node, "user", u.Username)
		return u.Username, false
	}
	return u.Username, sar.Status.Allowed
}

// Seen lists the distinct tokens received, oldest first.
func (a *WebhookAuth) Seen() []SeenToken {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]SeenToken, 0, len(a.order))
	for _, t := range a.order {
		out = append(out, *a.seen[t])
	}
	return out
}
