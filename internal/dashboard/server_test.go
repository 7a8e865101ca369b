package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

var rolloutsGVR = rampv1.GroupVersion.WithResource("rollouts")

// fakeCluster stands in for the plugin: it records the actions asked of it.
type fakeCluster struct {
	mu   sync.Mutex
	acts []string
}

func (f *fakeCluster) Describe(ro *rampv1.Rollout) Description {
	return Description{Position: fmt.Sprintf("step %d/%d", ro.Status.CurrentStep, ro.Status.Steps), Steps: []Step{}, Enabled: []Action{Promote, Abort}}
}

func (f *fakeCluster) Events(_ context.Context, ro *rampv1.Rollout) ([]Event, error) {
	return []Event{{Type: "Normal", Reason: "StepStarted", Message: ro.Status.Message, Count: 1}}, nil
}

func (f *fakeCluster) Act(_ context.Context, a Action, ns, name string) Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acts = append(f.acts, fmt.Sprintf("%s %s/%s", a, ns, name))
	return Outcome{Code: 0, Message: "promoted: step 1/2 → 2/2"}
}

func (f *fakeCluster) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.acts...)
}

func unstructuredRollout(t *testing.T, ns, name string, step, weight int32) *unstructured.Unstructured {
	t.Helper()
	ro := &rampv1.Rollout{
		TypeMeta:   metav1.TypeMeta{APIVersion: rampv1.GroupVersion.String(), Kind: "Rollout"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "u1"},
		Status:     rampv1.RolloutStatus{Phase: rampv1.PhaseProgressing, CurrentStep: step, Steps: 2, CanaryWeight: weight, Message: fmt.Sprintf("at %d%%", weight)},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: obj}
}

// served is a Server serving on loopback, with the browser's cookie.
type served struct {
	t       *testing.T
	base    string
	cookie  *http.Cookie
	cluster *fakeCluster
	dyn     *dynamicfake.FakeDynamicClient
}

func serve(t *testing.T, objs ...runtime.Object) *served {
	t.Helper()
	return serveWith(t, nil, objs...)
}

// serveWith is serve with setup run on the fake client before the server starts.
func serveWith(t *testing.T, setup func(*dynamicfake.FakeDynamicClient), objs ...runtime.Object) *served {
	t.Helper()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{rolloutsGVR: "RolloutList"}, objs...)
	if setup != nil {
		setup(dyn)
	}
	fc := &fakeCluster{}
	s, err := New(Options{Dynamic: dyn, Cluster: fc, Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if got, want := s.URL(ln), "http://"+ln.Addr().String()+"/?token=secret"; got != want {
		t.Errorf("URL %s, want %s", got, want)
	}
	// The URL's token buys the cookie.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(s.URL(ln))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("the URL answered %s with cookies %v: want a redirect setting the cookie", resp.Status, resp.Cookies())
	}
	c := resp.Cookies()[0]
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if c.Name != "ramp-dashboard-"+port || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Value != "secret" {
		t.Errorf("cookie %+v: want ramp-dashboard-<port>, HttpOnly, SameSite=Strict", c)
	}
	return &served{t: t, base: "http://" + ln.Addr().String(), cookie: c, cluster: fc, dyn: dyn}
}

func (s *served) do(method, path string, header map[string]string, withCookie bool) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	if withCookie {
		req.AddCookie(s.cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

// TestGuard: only the browser holding the run's token, talking to the server by IP address or
// localhost, gets in; a POST must come from the dashboard's own page.
func TestGuard(t *testing.T) {
	s := serve(t, unstructuredRollout(t, "shop", "web", 1, 10))
	origin := s.base
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		cookie             bool
		want               int
	}{
		{"the page, with the cookie", "GET", "/", nil, true, http.StatusOK},
		{"the page, without", "GET", "/", nil, false, http.StatusUnauthorized},
		{"a wrong token", "GET", "/?token=guess", nil, false, http.StatusUnauthorized},
		{"the stream, without the cookie", "GET", "/api/rollouts", nil, false, http.StatusUnauthorized},
		{"a DNS name rebound to loopback", "GET", "/", map[string]string{"Host": "evil.example:80"}, true, http.StatusForbidden},
		{"localhost", "GET", "/assets/app.js", map[string]string{"Host": "localhost"}, true, http.StatusOK},
		{"a POST from another site", "POST", "/api/rollouts/shop/web/promote", map[string]string{"Origin": "http://evil.example"}, true, http.StatusForbidden},
		{"a POST without Origin", "POST", "/api/rollouts/shop/web/promote", nil, true, http.StatusForbidden},
		{"a POST from the page, without the cookie", "POST", "/api/rollouts/shop/web/promote", map[string]string{"Origin": origin}, false, http.StatusUnauthorized},
		{"an unknown action", "POST", "/api/rollouts/shop/web/delete", map[string]string{"Origin": origin}, true, http.StatusNotFound},
		{"a GET of an action", "GET", "/api/rollouts/shop/web/promote", nil, true, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(tc.method, tc.path, tc.header, tc.cookie)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q: the page may not be framed nor load from elsewhere", csp)
			}
		})
	}
	if got := s.cluster.actions(); len(got) != 0 {
		t.Errorf("refused requests acted: %v", got)
	}
	resp := s.do("POST", "/api/rollouts/shop/web/promote", map[string]string{"Origin": origin}, true)
	defer resp.Body.Close()
	var out Outcome
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Message != "promoted: step 1/2 → 2/2" {
		t.Errorf("promote answered %+v (%v)", out, err)
	}
	if got := s.cluster.actions(); len(got) != 1 || got[0] != "promote shop/web" {
		t.Errorf("actions %v, want promote shop/web", got)
	}
}

// events reads a Server-Sent Events stream.
func events(t *testing.T, resp *http.Response) <-chan [2]string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream: %s, Content-Type %q", resp.Status, ct)
	}
	out := make(chan [2]string, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				out <- [2]string{name, strings.TrimPrefix(line, "data: ")}
			}
		}
	}()
	return out
}

func next[T any](t *testing.T, c <-chan [2]string, event string, cond func(T) bool) T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c:
			if !ok {
				t.Fatalf("the stream ended before %s", event)
			}
			var v T
			if ev[0] != event {
				t.Fatalf("event %q, want %q", ev[0], event)
			}
			if err := json.Unmarshal([]byte(ev[1]), &v); err != nil {
				t.Fatal(err)
			}
			if cond(v) {
				return v
			}
		case <-timeout:
			t.Fatalf("no %s event as wanted within 10s", event)
		}
	}
}

// TestStreams: the server's watch pushes each change of a Rollout to the list and to the
// Rollout's page, which carries the weights seen so far and the events.
func TestStreams(t *testing.T) {
	s := serve(t, unstructuredRollout(t, "shop", "web", 1, 10))
	list := s.do("GET", "/api/rollouts", nil, true)
	defer list.Body.Close()
	detail := s.do("GET", "/api/rollouts/shop/web", nil, true)
	defer detail.Body.Close()
	lc, dc := events(t, list), events(t, detail)

	next(t, lc, "list", func(l List) bool {
		return l.Synced && len(l.Rollouts) == 1 && l.Rollouts[0].Weight == 10 && l.Rollouts[0].Position == "step 1/2"
	})
	next(t, dc, "rollout", func(d Detail) bool { return d.Found && d.Rollout.Weight == 10 })

	// ramp moves the rollout on: the watch sees it, both streams push it.
	u := unstructuredRollout(t, "shop", "web", 2, 50)
	if _, err := s.dyn.Resource(rolloutsGVR).Namespace("shop").UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next(t, lc, "list", func(l List) bool { return len(l.Rollouts) == 1 && l.Rollouts[0].Weight == 50 })
	d := next(t, dc, "rollout", func(d Detail) bool { return d.Rollout.Weight == 50 })
	if len(d.Weights) != 2 || d.Weights[0].Weight != 10 || d.Weights[1].Weight != 50 {
		t.Errorf("weights %+v: want 10 then 50", d.Weights)
	}
	if len(d.Events) != 1 || d.Events[0].Message != "at 50%" {
		t.Errorf("events %+v: want them re-read for the new version", d.Events)
	}

	// Deleted: the list empties, the page says so.
	if err := s.dyn.Resource(rolloutsGVR).Namespace("shop").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next(t, lc, "list", func(l List) bool { return len(l.Rollouts) == 0 })
	next(t, dc, "rollout", func(d Detail) bool { return !d.Found })
}

// TestHandlerServesEmbeddedAssets: the page and its script and style come from the binary.
func TestHandlerServesEmbeddedAssets(t *testing.T) {
	s, err := New(Options{Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Cluster: &fakeCluster{}, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler("1")
	for path, want := range map[string]string{"/": `<script src="/assets/app.js"`, "/assets/app.js": "new EventSource(", "/assets/style.css": "svg.chart"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = "127.0.0.1:1"
		req.AddCookie(&http.Cookie{Name: "ramp-dashboard-1", Value: "t"})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, rec.Code, want)
		}
	}
}

// TestWatchEnded: a watch's normal end is not an error for the page; a refusal is.
func TestWatchEnded(t *testing.T) {
	gr := schema.GroupResource{Group: "ramp.dev", Resource: "rollouts"}
	for err, want := range map[error]bool{
		io.EOF: true,
		fmt.Errorf("watch: %w", io.ErrUnexpectedEOF):             true,
		apierrors.NewResourceExpired("too old resource version"): true,
		apierrors.NewGone("gone"):                                true,
		apierrors.NewForbidden(gr, "", errors.New("no RBAC")):    false,
		apierrors.NewNotFound(gr, ""):                            false,
	} {
		if got := watchEnded(err); got != want {
			t.Errorf("watchEnded(%v) = %t, want %t", err, got, want)
		}
	}
}

// TestListSaysWhyItCannotWatch: without permission to list Rollouts, the list says so.
func TestListSaysWhyItCannotWatch(t *testing.T) {
	s := serveWith(t, func(dyn *dynamicfake.FakeDynamicClient) {
		dyn.PrependReactor("list", "rollouts", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "ramp.dev", Resource: "rollouts"}, "", errors.New("RBAC says no"))
		})
	})
	list := s.do("GET", "/api/rollouts", nil, true)
	defer list.Body.Close()
	next(t, events(t, list), "list", func(l List) bool {
		return !l.Synced && strings.Contains(l.Error, "forbidden") && strings.Contains(l.Error, "RBAC says no")
	})
}
