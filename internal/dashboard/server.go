// Package dashboard is the web UI of kubectl ramp dashboard: a local HTTP server, run by the
// plugin with the user's own kubeconfig, that watches Rollouts with an informer and pushes
// them to the page with Server-Sent Events. Its buttons run the plugin's own request verbs
// (through Cluster). The page's HTML, JavaScript and CSS are embedded: nothing is fetched from
// elsewhere, and nothing runs in the cluster.
package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

//go:embed assets
var assets embed.FS

// Options configure a Server.
type Options struct {
	// Dynamic reads the Rollouts, with the user's credentials.
	Dynamic dynamic.Interface
	// Namespace to watch; "" (metav1.NamespaceAll) watches all namespaces.
	Namespace string
	Cluster   Cluster
	// Token authenticates the browser (see Server.URL); a random one when empty.
	Token string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logf logs the requests the buttons make and watch errors; nothing when nil.
	Logf func(format string, args ...any)
}

// Server serves the dashboard. Create it with New, then Serve it on a listener.
type Server struct {
	o     Options
	since time.Time

	mu       sync.Mutex
	rollouts map[string]*entry // by namespace/name
	synced   bool
	watchErr string

	hub hub
}

// entry is a watched Rollout and what the dashboard saw of it.
type entry struct {
	ro   *rampv1.Rollout
	hist history
}

// New returns a server; it watches nothing until Serve.
func New(o Options) (*Server, error) {
	if o.Dynamic == nil || o.Cluster == nil {
		return nil, errors.New("dashboard: Options.Dynamic and Options.Cluster are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Token == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		o.Token = hex.EncodeToString(b)
	}
	return &Server{o: o, since: o.Now(), rollouts: map[string]*entry{}}, nil
}

// URL is the address to open for a server listening on ln: it carries the token, which the
// page trades for a cookie.
func (s *Server) URL(ln net.Listener) string {
	return fmt.Sprintf("http://%s/?token=%s", ln.Addr(), s.o.Token)
}

// Serve watches the Rollouts and serves the dashboard on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	inf := s.informer(ctx)
	go inf.RunWithContext(ctx)

	_, port, _ := net.SplitHostPort(ln.Addr().String())
	srv := &http.Server{
		Handler:           s.Handler(port),
		ReadHeaderTimeout: 10 * time.Second,
		// Streams end with ctx.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return nil
}

// informer watches the Rollouts with the user's credentials and records each version.
func (s *Server) informer(ctx context.Context) cache.SharedIndexInformer {
	ri := s.o.Dynamic.Resource(rampv1.GroupVersion.WithResource("rollouts")).Namespace(s.o.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return ri.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return ri.Watch(ctx, opts)
		},
	}
	// A client may not support streaming the initial list (client-go's fakes do not).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.o.Dynamic), &unstructured.Unstructured{}, 0, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if watchEnded(err) {
			return // the reflector lists and watches again: nothing for the page to say
		}
		s.o.Logf("watching rollouts: %v", err)
		s.mu.Lock()
		s.watchErr = err.Error()
		s.mu.Unlock()
		s.hub.notify()
	})
	_, _ = inf.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.observe(obj) },
		UpdateFunc: func(_, obj any) { s.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				s.mu.Lock()
				delete(s.rollouts, u.GetNamespace()+"/"+u.GetName())
				s.mu.Unlock()
				s.hub.notify()
			}
		},
	}, cache.HandlerOptions{})
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			s.mu.Lock()
			s.synced, s.watchErr = true, ""
			s.mu.Unlock()
			s.hub.notify()
		}
	}()
	return inf
}

// watchEnded reports whether a watch error is only its normal end (closed, or its resource
// version expired), which client-go's default handler does not report either.
func watchEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// observe records a version of a Rollout.
func (s *Server) observe(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	ro := &rampv1.Rollout{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ro); err != nil {
		s.o.Logf("decoding rollout %s/%s: %v", u.GetNamespace(), u.GetName(), err)
		return
	}
	now := s.o.Now()
	s.mu.Lock()
	key := ro.Namespace + "/" + ro.Name
	e := s.rollouts[key]
	if e == nil {
		e = &entry{}
		s.rollouts[key] = e
	}
	e.ro = ro
	e.hist.observe(ro, now)
	s.watchErr = ""
	s.mu.Unlock()
	s.hub.notify()
}

// Row is a Rollout on the list page.
type Row struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Phase     string    `json:"phase"`
	Weight    int32     `json:"weight"`
	Step      int32     `json:"step"`
	Steps     int32     `json:"steps"`
	Position  string    `json:"position"`
	Message   string    `json:"message"`
	Created   time.Time `json:"created"`
}

// List is the list page's data.
type List struct {
	// Namespace watched; "" for all.
	Namespace string `json:"namespace"`
	// Synced: the first list is done (until then the page says it is loading).
	Synced   bool   `json:"synced"`
	Error    string `json:"error,omitempty"`
	Rollouts []Row  `json:"rollouts"`
}

func (s *Server) row(ro *rampv1.Rollout) Row {
	st := &ro.Status
	return Row{Namespace: ro.Namespace, Name: ro.Name, Phase: st.Phase, Weight: st.CanaryWeight, Step: st.CurrentStep,
		Steps: st.Steps, Position: s.o.Cluster.Describe(ro).Position, Message: st.Message, Created: ro.CreationTimestamp.Time}
}

func (s *Server) list() List {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := List{Namespace: s.o.Namespace, Synced: s.synced, Error: s.watchErr, Rollouts: []Row{}}
	for _, e := range s.rollouts {
		l.Rollouts = append(l.Rollouts, s.row(e.ro))
	}
	sort.Slice(l.Rollouts, func(i, j int) bool {
		a, b := l.Rollouts[i], l.Rollouts[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return l
}

// Detail is a Rollout's page's data.
type Detail struct {
	// Found is false when the dashboard watches no such Rollout (deleted, or not listed yet).
	Found       bool        `json:"found"`
	Rollout     Row         `json:"rollout"`
	Description Description `json:"description"`
	Target      string      `json:"target"`
	Stage       string      `json:"stage,omitempty"`
	Stable      string      `json:"stableRevision,omitempty"`
	Canary      string      `json:"canaryRevision,omitempty"`
	// FailedChecks and InconclusiveChecks count the rollout's failed and inconclusive rounds.
	FailedChecks       int32          `json:"failedChecks"`
	InconclusiveChecks int32          `json:"inconclusiveChecks"`
	Conditions         []Condition    `json:"conditions"`
	Events             []Event        `json:"events"`
	EventsError        string         `json:"eventsError,omitempty"`
	Weights            []WeightPoint  `json:"weights"`
	Metrics            []MetricSeries `json:"metrics"`
	// Since is when the dashboard started watching: the history begins then.
	Since time.Time `json:"since"`
	Now   time.Time `json:"now"`
}

// Condition is a status condition.
type Condition struct {
	Type    string    `json:"type"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// maxEvents is how many of a Rollout's latest events its page shows.
const maxEvents = 20

// detail is a Rollout's page without its events, and the Rollout (nil when not found).
func (s *Server) detail(ns, name string) (Detail, *rampv1.Rollout) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := Detail{Since: s.since, Now: s.o.Now(), Conditions: []Condition{}, Events: []Event{}, Weights: []WeightPoint{}, Metrics: []MetricSeries{}}
	e := s.rollouts[ns+"/"+name]
	if e == nil {
		d.Rollout = Row{Namespace: ns, Name: name}
		return d, nil
	}
	ro, st := e.ro, &e.ro.Status
	d.Found = true
	d.Rollout = s.row(ro)
	d.Description = s.o.Cluster.Describe(ro)
	d.Target = "Deployment/" + ro.Spec.TargetRef.Name
	d.Stage, d.Stable, d.Canary = st.Stage, st.StableRevision, st.CanaryRevision
	d.FailedChecks, d.InconclusiveChecks = st.FailedChecks, st.InconclusiveChecks
	for _, c := range st.Conditions {
		d.Conditions = append(d.Conditions, Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, Since: c.LastTransitionTime.Time})
	}
	d.Weights = clone(e.hist.weights)
	d.Metrics = e.hist.series(ro)
	return d, ro
}
