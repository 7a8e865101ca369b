package meshsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Traffic is the synthetic load.
type Traffic struct {
	// RPS is requests per second.
	RPS float64
	// Classes are kinds of requests and their shares (0..1, summing to at most 1); the rest
	// of the requests are plain (Request{}: GET / to the Service's name, no headers).
	Classes []Class
}

// Class is a kind of request: e.g. Share 0.1 of requests with header x-canary: true.
type Class struct {
	Share   float64
	Request Request
}

// compiled returns the traffic with cumulative shares and lower-case header names.
func (t Traffic) compiled() (*traffic, error) {
	if math.IsNaN(t.RPS) || t.RPS < 0 || math.IsInf(t.RPS, 0) {
		return nil, fmt.Errorf("meshsim: invalid rate %v", t.RPS)
	}
	out := &traffic{rps: t.RPS}
	sum := 0.0
	for i, c := range t.Classes {
		if math.IsNaN(c.Share) || c.Share < 0 {
			return nil, fmt.Errorf("meshsim: class %d: invalid share %v", i, c.Share)
		}
		sum += c.Share
		req := c.Request
		if len(req.Headers) > 0 {
			req.Headers = make(map[string]string, len(c.Request.Headers))
			for k, v := range c.Request.Headers {
				req.Headers[strings.ToLower(k)] = v
			}
		}
		out.cum = append(out.cum, sum)
		out.reqs = append(out.reqs, req)
	}
	if sum > 1+1e-9 {
		return nil, fmt.Errorf("meshsim: class shares sum to %v > 1", sum)
	}
	return out, nil
}

type traffic struct {
	rps   float64
	cum   []float64
	reqs  []Request
	plain Request
}

func (t *traffic) pick(rng *rand.Rand) *Request {
	if len(t.cum) == 0 {
		return &t.plain
	}
	x := rng.Float64()
	for i, c := range t.cum {
		if x < c {
			return &t.reqs[i]
		}
	}
	return &t.plain
}

// Options configure a Sim.
type Options struct {
	// Client reads the Service and its Pods. A cached client (a manager's) makes refreshes
	// free; a direct one costs two requests per refresh.
	Client client.Reader
	// XDSAddr is istiod's plain-text gRPC (xDS) address (required). The Sim connects to it as
	// a sidecar of Source would and routes by the Envoy configuration istiod serves (RDS for
	// the Service's port, CDS, EDS; see EnvoyConfig); it never reads VirtualServices or
	// DestinationRules.
	XDSAddr string
	// XDSTimeout bounds how long Start waits for istiod's first complete configuration.
	// Defaults to 1m.
	XDSTimeout time.Duration
	// Namespace and Service name the destination Service.
	Namespace, Service string
	// Backends are Services of the namespace selecting some of the Service's pods, which
	// istiod's routes may send its traffic to (Topology.Backends).
	Backends []string
	// Source is the simulated client, a sidecar (defaults: workload "meshsim", the Service's
	// namespace).
	Source Source
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// Traffic to send; change it with SetTraffic.
	Traffic Traffic
	// Model of the application's behaviour per image; nil: DefaultBehaviour for all.
	Model *Model
	// Seed of the random choices.
	Seed uint64
	// Refresh is how often the Service and its Pods are re-read. Defaults to 200ms.
	Refresh time.Duration
	// Tick is how often requests are generated (RPS * elapsed time per tick). Defaults to
	// 50ms.
	Tick time.Duration
	// StatsRetention is how far back Stats can look. Defaults to 5m.
	StatsRetention time.Duration
	// MetricsAddr is where /metrics is served. Defaults to 127.0.0.1:0 (a free loopback port);
	// "-" serves nothing (use Handler). Ignored when MetricsListener is set.
	MetricsAddr string
	// MetricsListener, when set, serves /metrics (the Sim closes it on Stop).
	MetricsListener net.Listener
	// Logf, when set, receives refresh errors and the Router's warnings when they change.
	Logf func(format string, args ...any)
}

// Sim sends synthetic traffic to one Service through a simulated Istio data plane, routed by
// the configuration istiod serves it, and exports Istio's telemetry.
type Sim struct {
	opts    Options
	router  atomic.Pointer[Router]
	model   atomic.Pointer[Model]
	traffic atomic.Pointer[traffic]
	tel     *Telemetry
	ring    *statsRing

	mu       sync.Mutex // guards rng, outliers and reports
	rng      *rand.Rand
	outliers *Outliers
	reports  []Report

	errMu    sync.Mutex // guards err and warnings
	err      error
	warnings string

	buildMu sync.Mutex // guards topo and envoy, and serializes rebuilds of the Router
	topo    Topology   // last read from the API server
	envoy   *EnvoyConfig
	xdsErr  error
	// envoyReady is closed when the first complete configuration from istiod arrives.
	envoyReady chan struct{}
	readyOnce  sync.Once
	// unmappedSince is when a rebuild first found endpoints naming pods not read yet (zero:
	// none); routedByEnvoy: the Router in use was built from istiod's configuration (the
	// first one is used whatever it names). Guarded by buildMu.
	unmappedSince time.Time
	routedByEnvoy bool
	// kick asks the refresh loop to re-read the pods now: istiod's endpoints may name pods
	// the last read did not see yet.
	kick chan struct{}

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   sync.Once
}

// New validates the options and binds the metrics listener; Start starts the Sim.
func New(o Options) (*Sim, error) {
	if o.Client == nil || o.Namespace == "" || o.Service == "" || o.XDSAddr == "" {
		return nil, errors.New("meshsim: Client, XDSAddr, Namespace and Service are required")
	}
	if o.XDSTimeout <= 0 {
		o.XDSTimeout = time.Minute
	}
	if o.Refresh <= 0 {
		o.Refresh = 200 * time.Millisecond
	}
	if o.Tick <= 0 {
		o.Tick = 50 * time.Millisecond
	}
	if o.StatsRetention <= 0 {
		o.StatsRetention = 5 * time.Minute
	}
	if o.Source.Workload == "" {
		o.Source.Workload = "meshsim"
	}
	if o.Source.Namespace == "" {
		o.Source.Namespace = o.Namespace
	}
	s := &Sim{
		opts: o,
		tel:  NewTelemetry(o.Source.Workload, o.Source.Namespace),
		ring: &statsRing{retention: o.StatsRetention},
		rng:  rand.New(rand.NewPCG(o.Seed, 0x6d65736873696d)), // "meshsim"

		envoyReady: make(chan struct{}),
		kick:       make(chan struct{}, 1),
		outliers:   NewOutliers(),
	}
	if err := s.SetTraffic(o.Traffic); err != nil {
		return nil, err
	}
	m := o.Model
	if m == nil {
		m = MustModel(DefaultBehaviour, nil)
	}
	s.model.Store(m)
	s.router.Store(NewRouter(Topology{Source: o.Source, ClusterDomain: o.ClusterDomain, Backends: o.Backends}))

	switch {
	case o.MetricsListener != nil:
		s.ln = o.MetricsListener
	case o.MetricsAddr == "-":
	default:
		addr := o.MetricsAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("meshsim: metrics listener: %w", err)
		}
		s.ln = ln
	}
	return s, nil
}

// Start reads the Service and its pods once (returning the error if that fails: the Sim is
// not started; Stop still releases its listener), subscribes to istiod and waits for its
// first complete configuration (at most XDSTimeout), then serves /metrics and runs the
// refresh and traffic loops until Stop or ctx ends (the metrics server runs until Stop).
func (s *Sim) Start(ctx context.Context) error {
	if err := s.Refresh(ctx); err != nil {
		return err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	if err := s.startXDS(ctx); err != nil {
		s.cancel()
		s.wg.Wait()
		return err
	}
	if s.ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.tel.Handler())
		s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.wg.Go(func() { _ = s.srv.Serve(s.ln) })
	}
	s.wg.Go(func() { s.refreshLoop(ctx) })
	s.wg.Go(func() { s.trafficLoop(ctx) })
	return nil
}

// Stop stops the loops and the metrics server and waits for them. It is safe to call more
// than once, and on a Sim never started.
func (s *Sim) Stop() {
	s.stop.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		if s.srv != nil {
			_ = s.srv.Close()
		} else if s.ln != nil {
			_ = s.ln.Close()
		}
		s.wg.Wait()
	})
}

// MetricsAddr is the host:port serving /metrics ("" when none is served).
func (s *Sim) MetricsAddr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Handler serves the metrics, for callers with their own server.
func (s *Sim) Handler() http.Handler { return s.tel.Handler() }

// Registry holds the Sim's metrics.
func (s *Sim) Registry() *prometheus.Registry { return s.tel.Registry() }

// Router is the routing in use.
func (s *Sim) Router() *Router { return s.router.Load() }

// Ejected reports whether the client's outlier detection has ejected pod from the cluster
// named (outbound|PORT|SUBSET|HOST, e.g. outbound|80|canary|web.demo.svc.cluster.local).
func (s *Sim) Ejected(cluster, pod string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outliers.Ejected(cluster, pod)
}

// Model is the behaviour model in use.
func (s *Sim) Model() *Model { return s.model.Load() }

// SetModel replaces the behaviour model.
func (s *Sim) SetModel(m *Model) { s.model.Store(m) }

// SetBehaviour makes pods running image behave as b from now on.
func (s *Sim) SetBehaviour(image string, b Behaviour) error {
	for {
		old := s.model.Load()
		m, err := old.With(image, b)
		if err != nil {
			return err
		}
		if s.model.CompareAndSwap(old, m) {
			return nil
		}
	}
}

// SetTraffic replaces the load from the next tick on.
func (s *Sim) SetTraffic(t Traffic) error {
	c, err := t.compiled()
	if err != nil {
		return err
	}
	s.traffic.Store(c)
	return nil
}

// Err is the error of the last refresh, or of the xDS stream since istiod's last
// configuration (nil when both succeeded).
func (s *Sim) Err() error {
	s.buildMu.Lock()
	xdsErr := s.xdsErr
	s.buildMu.Unlock()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.err, xdsErr)
}

// Stats counts what the proxies reported in the last window (at the granularity of ticks),
// at most StatsRetention back.
func (s *Sim) Stats(window time.Duration) Stats {
	return s.ring.stats(time.Now(), window)
}

// Send routes n requests now, in addition to the steady traffic (whose classes they follow).
func (s *Sim) Send(n int) {
	now := time.Now()
	s.send(n, now, now)
}

// ServeHTTP plays the client's sidecar for a real HTTP client, such as a load generator
// given the Sim's address as its HTTP proxy (HTTP_PROXY): each request is routed as the
// synthetic traffic is (the authority it names, its path and headers, by istiod's
// configuration), reported in the telemetry and Stats, and answered at once with the status
// the client would get, and no body. The simulated latency is recorded, not waited.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request{Method: r.Method, Scheme: "http", Authority: r.Host, Path: r.URL.RequestURI(), Headers: map[string]string{}}
	for k, v := range r.Header {
		if len(v) > 0 && k != "Proxy-Connection" {
			req.Headers[strings.ToLower(k)] = v[0]
		}
	}
	rt, m := s.router.Load(), s.model.Load()
	now := time.Now()
	s.mu.Lock()
	res := rt.RouteWith(s.rng, m, s.outliers, now, &req)
	reps := res.Reports(s.reports[:0])
	s.reports = reps
	s.tel.Record(reps)
	s.ring.merge(now, reps)
	s.mu.Unlock()
	w.Header().Set("Server", "envoy")
	w.WriteHeader(res.Code)
}

func (s *Sim) send(n int, from, to time.Time) {
	if n <= 0 {
		return
	}
	r, m, tr := s.router.Load(), s.model.Load(), s.traffic.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	reps := s.reports[:0]
	step := to.Sub(from) / time.Duration(n)
	for i := range n {
		// Requests are spread over the tick, for outlier detection's clock.
		res := r.RouteWith(s.rng, m, s.outliers, from.Add(time.Duration(i+1)*step), tr.pick(s.rng))
		reps = res.Reports(reps)
	}
	s.reports = reps
	s.tel.Record(reps)
	s.ring.add(from, to, reps)
}

func (s *Sim) trafficLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	last, carry := time.Now(), 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			tr := s.traffic.Load()
			// After a stall (a busy machine) catch up at most two seconds' worth.
			dt := min(now.Sub(last), 2*time.Second)
			x := tr.rps*dt.Seconds() + carry
			n := math.Floor(x)
			carry = x - n
			s.send(int(n), last, now)
			last = now
		}
	}
}

func (s *Sim) refreshLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = s.Refresh(rctx)
		cancel()
	}
}

// Refresh re-reads the Service and its Pods and rebuilds the routing now. On error the previous routing
// stays in use.
func (s *Sim) Refresh(ctx context.Context) error {
	t, err := s.read(ctx)
	var warnings string
	if err == nil {
		s.buildMu.Lock()
		s.topo = t
		warnings = s.rebuild()
		s.buildMu.Unlock()
	}
	s.report(err, warnings)
	return err
}

// rebuild builds the Router from the last objects read and istiod's last configuration,
// returning its warnings. The caller holds buildMu.
func (s *Sim) rebuild() string {
	t := s.topo
	t.Envoy = s.envoy
	if t.Envoy == nil {
		t.Envoy = &EnvoyConfig{} // not served yet: no route
	}
	r := NewRouter(t)
	// istiod's endpoints can name a pod a moment before the Sim has read it (a new canary
	// pod): Envoy would route to it, a Router without it would answer 503 UH for a cluster
	// that has pods. While endpoints the Router in use did not lack are unknown, keep that
	// Router and read the pods again, for at most unmappedGrace; a mismatch that lasts is
	// routed as it is, with a warning.
	if s.routedByEnvoy && newlyUnmapped(r, s.router.Load()) {
		if s.unmappedSince.IsZero() {
			s.unmappedSince = time.Now()
		}
		if time.Since(s.unmappedSince) < unmappedGrace {
			select {
			case s.kick <- struct{}{}:
			default: // a re-read is already due
			}
			return ""
		}
	}
	s.unmappedSince = time.Time{}
	s.routedByEnvoy = s.envoy != nil
	s.router.Store(r)
	return strings.Join(r.Warnings(), "; ")
}

// newlyUnmapped reports whether r has endpoints naming pods not read that prev had not.
func newlyUnmapped(r, prev *Router) bool {
	for ip := range r.unmapped {
		if prev == nil || !prev.unmapped[ip] {
			return true
		}
	}
	return false
}

// unmappedGrace bounds how long a Sim keeps routing by its previous Router while istiod's
// endpoints name pods it has not read.
const unmappedGrace = 2 * time.Second

// report records the outcome of a refresh, logging changes.
func (s *Sim) report(err error, warnings string) {
	s.errMu.Lock()
	logErr := err != nil && (s.err == nil || s.err.Error() != err.Error())
	logWarnings := err == nil && warnings != s.warnings && warnings != ""
	s.err = err
	if err == nil {
		s.warnings = warnings
	}
	s.errMu.Unlock()
	if s.opts.Logf != nil {
		if logErr {
			s.opts.Logf("meshsim: refresh: %v", err)
		}
		if logWarnings {
			s.opts.Logf("meshsim: %s", warnings)
		}
	}
}

func (s *Sim) read(ctx context.Context) (Topology, error) {
	o := &s.opts
	t := Topology{Source: o.Source, ClusterDomain: o.ClusterDomain, Backends: o.Backends}
	svc := &corev1.Service{}
	switch err := o.Client.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Service}, svc); {
	case apierrors.IsNotFound(err):
		return t, nil // no Service: 404 NR
	case err != nil:
		return t, fmt.Errorf("meshsim: reading service %s/%s: %w", o.Namespace, o.Service, err)
	}
	t.Service = svc
	if len(svc.Spec.Selector) > 0 {
		var pods corev1.PodList
		if err := o.Client.List(ctx, &pods, client.InNamespace(o.Namespace), client.MatchingLabels(svc.Spec.Selector)); err != nil {
			return t, fmt.Errorf("meshsim: listing pods: %w", err)
		}
		t.Pods = pods.Items
	}
	return t, nil // routes come from istiod
}
