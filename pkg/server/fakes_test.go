package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeAPIServer serves just what the gateway reads from Kubernetes:
// discovery, and list and watch of nodes and of pods, as full objects (for
// Prometheus' pod discovery) or as metadata (for the informers). Watches
// get real events.
type fakeAPIServer struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	rv       int
	nodes    map[string]corev1.Node
	pods     map[string]corev1.Pod
	hpas     map[string]autoscalingv2.HorizontalPodAutoscaler
	watchers map[string][]chan []byte // by view: nodes, pods, podmeta, hpas
	reviews  []authzv1.SubjectAccessReviewSpec
	// Objects of the self-managed serving certificate.
	secrets      map[string]corev1.Secret // by namespace/name
	secretWrites int
	apiServices  map[string]map[string]any
	// TokenRequests: tokens issued so far, by "namespace/name", each
	// "<namespace>/<name>-<n>", living tokenLife (3s when zero).
	tokensIssued map[string]int
	tokenLife    time.Duration
	// Lists and watches asked so far by view, and those of them whose
	// client accepted a gzip-encoded answer.
	asked, askedGzip map[string]int
}

func newFakeAPIServer(t testing.TB) *fakeAPIServer {
	f := &fakeAPIServer{t: t, nodes: map[string]corev1.Node{}, pods: map[string]corev1.Pod{}, watchers: map[string][]chan []byte{}, asked: map[string]int{}, askedGzip: map[string]int{}}
	for _, name := range []string{"v1beta1.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		f.addAPIService(name, "kube-system", "metrics-gateway")
	}
	f.addAPIService("v1beta1.other.example.com", "kube-system", "other-server")
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// kubeconfig writes a kubeconfig pointing at the fake and returns its path.
func (f *fakeAPIServer) kubeconfig(dir string) string {
	p := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q, certificate-authority-data: %q}}]
users: [{name: fake, user: {token: test-token}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, f.srv.URL, base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})))
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fakeAPIServer) addNode(name, ip string, port int, lbls map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	n := corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls, ResourceVersion: strconv.Itoa(f.rv), UID: types.UID("uid-node-" + name)},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
			Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	f.nodes[name] = n
	f.notify("nodes", "ADDED", n)
}

func (f *fakeAPIServer) addPod(ns, name string, lbls map[string]string) {
	f.addPodWith(ns, name, lbls, nil, "")
}

// addPodWith adds a running pod with annotations and an IP, as Prometheus'
// pod discovery needs them.
func (f *fakeAPIServer) addPodWith(ns, name string, lbls, annotations map[string]string, ip string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	p := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls, Annotations: annotations, ResourceVersion: strconv.Itoa(f.rv), UID: types.UID("uid-pod-" + ns + "-" + name)},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	f.pods[ns+"/"+name] = p
	f.notifyPod("ADDED", p)
}

func (f *fakeAPIServer) deletePod(ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[ns+"/"+name]
	if !ok {
		return
	}
	delete(f.pods, ns+"/"+name)
	f.rv++
	p.ResourceVersion = strconv.Itoa(f.rv)
	f.notifyPod("DELETED", p)
}

// addHPA adds or replaces a HorizontalPodAutoscaler.
func (f *fakeAPIServer) addHPA(h autoscalingv2.HorizontalPodAutoscaler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hpas == nil {
		f.hpas = map[string]autoscalingv2.HorizontalPodAutoscaler{}
	}
	f.rv++
	h.TypeMeta = metav1.TypeMeta{Kind: "HorizontalPodAutoscaler", APIVersion: "autoscaling/v2"}
	h.ResourceVersion = strconv.Itoa(f.rv)
	typ := "ADDED"
	if _, ok := f.hpas[h.Namespace+"/"+h.Name]; ok {
		typ = "MODIFIED"
	}
	f.hpas[h.Namespace+"/"+h.Name] = h
	f.notify("hpas", typ, h)
}

func podMeta(p corev1.Pod) metav1.PartialObjectMetadata {
	return metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: p.ObjectMeta}
}

// notifyPod must be called with mu held.
func (f *fakeAPIServer) notifyPod(typ string, p corev1.Pod) {
	f.notify("pods", typ, p)
	f.notify("podmeta", typ, podMeta(p))
}

// notify must be called with mu held.
func (f *fakeAPIServer) notify(resource, typ string, obj any) {
	ev, _ := json.Marshal(map[string]any{"type": typ, "object": obj})
	for _, w := range f.watchers[resource] {
		select {
		case w <- ev:
		default:
			f.t.Errorf("fake apiserver: watcher of %s is not reading", resource)
		}
	}
}

func (f *fakeAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	if f.review(w, r) || f.certObjects(w, r) || f.tokenRequest(w, r) {
		return
	}
	if body, ok := discoveryDocs[r.URL.Path]; ok {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
		return
	}
	var view string
	switch r.URL.Path {
	case "/api/v1/nodes":
		view = "nodes"
	case "/apis/autoscaling/v2/horizontalpodautoscalers":
		view = "hpas"
	case "/api/v1/pods":
		view = "pods"
		if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
			view = "podmeta"
		}
	default:
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.asked[view]++
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		f.askedGzip[view]++
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Query().Get("watch") == "true" {
		f.watch(w, r, view)
		return
	}
	f.mu.Lock()
	kind, apiVersion, items := f.list(view)
	body, _ := json.Marshal(map[string]any{"kind": kind + "List", "apiVersion": apiVersion, "metadata": metav1.ListMeta{ResourceVersion: strconv.Itoa(f.rv)}, "items": items})
	f.mu.Unlock()
	_, _ = w.Write(body)
}

var tokenRequestPath = regexp.MustCompile(`^/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)/token$`)

// tokenRequest answers a TokenRequest with the next token of that
// ServiceAccount.
func (f *fakeAPIServer) tokenRequest(w http.ResponseWriter, r *http.Request) bool {
	m := tokenRequestPath.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodPost {
		return false
	}
	f.mu.Lock()
	if f.tokensIssued == nil {
		f.tokensIssued = map[string]int{}
	}
	key := m[1] + "/" + m[2]
	f.tokensIssued[key]++
	token := fmt.Sprintf("%s-%d", key, f.tokensIssued[key])
	life := f.tokenLife
	f.mu.Unlock()
	if life == 0 {
		// Short, so that tests see the gateway renew.
		life = 3 * time.Second
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
		"metadata": map[string]any{"name": m[2], "namespace": m[1]},
		"status":   map[string]any{"token": token, "expirationTimestamp": time.Now().Add(life).UTC().Format(time.RFC3339)},
	})
	return true
}

// list returns the objects of a view; mu must be held.
func (f *fakeAPIServer) list(view string) (kind, apiVersion string, items []any) {
	items = []any{}
	switch view {
	case "nodes":
		for _, n := range f.nodes {
			items = append(items, n)
		}
		return "Node", "v1", items
	case "pods":
		for _, p := range f.pods {
			items = append(items, p)
		}
		return "Pod", "v1", items
	case "hpas":
		for _, h := range f.hpas {
			items = append(items, h)
		}
		return "HorizontalPodAutoscaler", "autoscaling/v2", items
	default:
		for _, p := range f.pods {
			items = append(items, podMeta(p))
		}
		return "PartialObjectMetadata", "meta.k8s.io/v1", items
	}
}

// discoveryDocs is the legacy discovery the gateway's RESTMapper reads:
// the core resources and apps/v1, enough to compile the rules.
var discoveryDocs = map[string]string{
	"/api":  `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:6443"}]}`,
	"/apis": `{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}}]}`,
	"/api/v1": `{"kind":"APIResourceList","groupVersion":"v1","resources":[
		{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list","watch"]},
		{"name":"nodes","singularName":"node","namespaced":false,"kind":"Node","verbs":["get","list","watch"]},
		{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":["get","list","watch"]},
		{"name":"services","singularName":"service","namespaced":true,"kind":"Service","verbs":["get","list","watch"]}]}`,
	"/apis/apps/v1": `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"apps/v1","resources":[
		{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":["get","list","watch"]}]}`,
}

func (f *fakeAPIServer) watch(w http.ResponseWriter, r *http.Request, resource string) {
	ch := make(chan []byte, 100)
	f.mu.Lock()
	f.watchers[resource] = append(f.watchers[resource], ch)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		ws := f.watchers[resource]
		for i, c := range ws {
			if c == ch {
				f.watchers[resource] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
	}()
	w.WriteHeader(http.StatusOK)
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		// Watch-list: every current object, then the bookmark that ends
		// the initial events.
		f.mu.Lock()
		kind, apiVersion, objs := f.list(resource)
		rv := strconv.Itoa(f.rv)
		f.mu.Unlock()
		for _, o := range objs {
			ev, _ := json.Marshal(map[string]any{"type": "ADDED", "object": o})
			_, _ = w.Write(append(ev, '\n'))
		}
		ev, _ := json.Marshal(map[string]any{"type": "BOOKMARK", "object": map[string]any{
			"kind": kind, "apiVersion": apiVersion,
			"metadata": map[string]any{"resourceVersion": rv, "annotations": map[string]string{"k8s.io/initial-events-end": "true"}},
		}})
		_, _ = w.Write(append(ev, '\n'))
	}
	w.(http.Flusher).Flush()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timeout.C:
			return
		case ev := <-ch:
			// ev is shared by every watcher: appending the newline to it
			// would write into one backing array from several handlers.
			_, _ = w.Write(ev)
			_, _ = w.Write([]byte{'\n'})
			w.(http.Flusher).Flush()
		}
	}
}

// kubeletMode is how a fake kubelet answers.
type kubeletMode int

const (
	kubeletOK kubeletMode = iota
	kubeletGarbage
	kubelet500
	kubeletHang
	kubeletRedirect // 302 to redirectTo
)

// fakeKubelet serves kubelet fixture bodies over TLS on its own loopback
// address, with the fixture's timestamps moved so that the served round is
// "now". It requires the bearer token a kubelet would check.
type fakeKubelet struct {
	name string
	ip   string
	port int
	srv  *httptest.Server

	mu         sync.Mutex
	body       string
	mode       kubeletMode
	served     int
	redirectTo string
	token      string // prefix of the bearer token required; "test-token" when empty
	tokensSeen map[string]int
}

var fixtureTimestamp = regexp.MustCompile(` (17900000[0-9]{5})$`)

// fixtureT0 is the first round's time in the fixtures, in milliseconds.
const fixtureT0 = 1790000000000

func newFakeKubelet(t testing.TB, name, ip string) *fakeKubelet {
	k := &fakeKubelet{name: name, ip: ip}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	k.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(k.serve)}}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	k.port = ln.Addr().(*net.TCPAddr).Port
	return k
}

// setRound serves fixture file round (e.g. "round1.txt") as if fixture time
// fixtureAt (ms) were wall time at; see rebase for podPrefix and drop.
func (k *fakeKubelet) setRound(t testing.TB, round string, fixtureAt int64, at time.Time, podPrefix string, drop ...string) {
	b, err := os.ReadFile(filepath.Join("..", "scrape", "testdata", "kubelet", round))
	if err != nil {
		t.Fatal(err)
	}
	k.setBody(rebase(string(b), at.UnixMilli()-fixtureAt, podPrefix, drop))
}

// rebase moves a fixture body in time by shift ms (explicit timestamps and
// container start times alike), prefixes pod names, and drops the lines of
// the pods in drop. Everything else stays byte for byte.
func rebase(body string, shift int64, podPrefix string, drop []string) string {
	lines := strings.Split(body, "\n")
	out := lines[:0]
lines:
	for _, l := range lines {
		for _, d := range drop {
			if strings.Contains(l, `pod="`+d+`"`) {
				continue lines
			}
		}
		if m := fixtureTimestamp.FindStringSubmatchIndex(l); m != nil {
			ts, _ := strconv.ParseInt(l[m[2]:m[3]], 10, 64)
			l = l[:m[2]] + strconv.FormatInt(ts+shift, 10)
		} else if strings.HasPrefix(l, "container_start_time_seconds{") {
			i := strings.LastIndexByte(l, ' ')
			v, _ := strconv.ParseFloat(l[i+1:], 64)
			l = l[:i+1] + strconv.FormatFloat(v+float64(shift)/1000, 'f', -1, 64)
		}
		if podPrefix != "" {
			l = strings.ReplaceAll(l, `pod="`, `pod="`+podPrefix)
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func (k *fakeKubelet) setBody(body string) {
	k.mu.Lock()
	k.body, k.mode = body, kubeletOK
	k.mu.Unlock()
}

func (k *fakeKubelet) setMode(m kubeletMode) {
	k.mu.Lock()
	k.mode = m
	k.mu.Unlock()
}

func (k *fakeKubelet) servedCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.served
}

func (k *fakeKubelet) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	want := k.token
	if want == "" {
		want = "test-token"
	}
	if k.tokensSeen == nil {
		k.tokensSeen = map[string]int{}
	}
	k.tokensSeen[r.Header.Get("Authorization")]++
	k.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "+want) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if r.URL.Path != "/metrics/resource" {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	body, mode := k.body, k.mode
	k.served++
	k.mu.Unlock()
	switch mode {
	case kubeletGarbage:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("container_cpu_usage_seconds_total{container=\"app\" 12 oops\n\x00\x01garbage"))
	case kubelet500:
		http.Error(w, "internal error", http.StatusInternalServerError)
	case kubeletRedirect:
		k.mu.Lock()
		to := k.redirectTo
		k.mu.Unlock()
		http.Redirect(w, r, to, http.StatusFound)
	case kubeletHang:
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	default:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(body))
	}
}

// insecureClient talks to the gateway's self-signed serving certificate.
func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

var _ = context.Background
