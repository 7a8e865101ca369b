// Package loadgen is ramp's load generator: a gate endpoint (docs/gates.md) that, called at a
// step, sends requests to the rollout's Service in the background, with the header that
// reaches the canary (or the blue/green preview) alone, so analysis has requests to judge. A
// canary that gets no traffic can never pass minRequests; a blue/green preview, reached only
// by its header, gets none unless someone sends it.
//
// It runs as `manager load` (the manager's image), in the app's namespace with an Istio
// sidecar, so its requests go through the mesh and Istio's telemetry counts them for the
// canary workload. It sends only to http://<service>.<namespace>:<port><path>: a Service's
// name in the namespace ramp's body names, never an arbitrary host, at most --max-rps for at
// most --max-duration.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/validation"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Defaults of a load's settings (the gate's metadata) and of the generator's limits.
const (
	DefaultRPS         = 10
	DefaultDuration    = time.Minute
	DefaultPort        = 80
	DefaultMaxRPS      = 100
	DefaultMaxDuration = 10 * time.Minute
	// concurrency bounds the requests in flight per load.
	concurrency = 16
)

// Config bounds what callers may ask for.
type Config struct {
	// MaxRPS and MaxDuration cap a load's rate and length.
	MaxRPS      float64
	MaxDuration time.Duration
	// Client sends the requests: http.DefaultTransport's (HTTP_PROXY honoured) with
	// RequestTimeout when nil.
	Client *http.Client
	// RequestTimeout bounds each request of the default Client.
	RequestTimeout time.Duration
	// Logf reports loads started and ended (nil: nothing).
	Logf func(format string, args ...any)
}

// Load is what a gate call asks for, read from its body.
type Load struct {
	// Key is namespace/rollout/gate: a new call for the same key replaces the load running.
	Key string
	// URL is http://<service>.<namespace>:<port><path>.
	URL string
	// Header is sent with every request ("" for none): e.g. x-ramp-preview: true.
	HeaderName, HeaderValue string
	RPS                     float64
	Duration                time.Duration
}

// Counts are a load's results so far.
type Counts struct {
	Sent int64
	// ByCode counts answers by status code; 0 counts requests that got none.
	ByCode map[int]int64
}

// Server is the gate endpoint: POST / with a gate's body starts (or restarts) a load and
// answers 202; GET /healthz answers 200.
type Server struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	runs  map[string]*run
	total map[string]*Counts // by key, every load so far
}

type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Server; Stop ends its loads.
func New(cfg Config) *Server {
	if cfg.MaxRPS <= 0 {
		cfg.MaxRPS = DefaultMaxRPS
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.Client == nil {
		t := cfg.RequestTimeout
		if t <= 0 {
			t = 10 * time.Second
		}
		cfg.Client = &http.Client{Timeout: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, ctx: ctx, cancel: cancel, runs: map[string]*run{}, total: map[string]*Counts{}}
}

// Stop ends every load and waits for them.
func (s *Server) Stop() {
	s.cancel()
	s.wg.Wait()
}

// Counts returns what the loads of key (namespace/rollout/gate) sent so far, all calls
// together.
func (s *Server) Counts(key string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Counts{ByCode: map[int]int64{}}
	if c := s.total[key]; c != nil {
		out.Sent = c.Sent
		for k, v := range c.ByCode {
			out.ByCode[k] = v
		}
	}
	return out
}

// ServeHTTP answers gate calls.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST a gate's body (docs/gates.md)", http.StatusMethodNotAllowed)
		return
	}
	var body rampv1.GateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	l, err := s.cfg.Parse(&body)
	if err != nil {
		// ramp reports only the status code: the reason is in this log.
		s.cfg.Logf("gate %q of %s/%s refused: %v", body.Gate, body.Namespace, body.Rollout, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.start(l) {
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// Parse reads the load a gate's body asks for from its metadata: service (default: the
// Rollout's name), port (80), path (/), header ("name: value"), rps (10), duration (1m).
func (c Config) Parse(b *rampv1.GateRequest) (*Load, error) {
	md := b.Metadata
	get := func(k, def string) string {
		if v, ok := md[k]; ok && v != "" {
			return v
		}
		return def
	}
	name := b.Name
	if name == "" {
		name = b.Rollout
	}
	svc := get("service", name)
	var errs []error
	if msgs := validation.IsDNS1123Label(svc); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("metadata.service %q: %s", svc, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Label(b.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", b.Namespace, strings.Join(msgs, "; ")))
	}
	port, err := strconv.Atoi(get("port", strconv.Itoa(DefaultPort)))
	if err != nil || port < 1 || port > 65535 {
		errs = append(errs, fmt.Errorf("metadata.port %q: want 1 to 65535", md["port"]))
	}
	path := get("path", "/")
	if !strings.HasPrefix(path, "/") {
		errs = append(errs, fmt.Errorf("metadata.path %q: want an absolute path", path))
	}
	l := &Load{Key: b.Namespace + "/" + b.Rollout + "/" + b.Gate, URL: fmt.Sprintf("http://%s.%s:%d%s", svc, b.Namespace, port, path)}
	if h := get("header", ""); h != "" {
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if msgs := validation.IsHTTPHeaderName(name); !ok || len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("metadata.header %q: want \"name: value\"", h))
		}
		l.HeaderName, l.HeaderValue = name, value
	}
	if l.RPS, err = strconv.ParseFloat(get("rps", strconv.Itoa(DefaultRPS)), 64); err != nil || !(l.RPS > 0 && l.RPS <= c.MaxRPS) {
		errs = append(errs, fmt.Errorf("metadata.rps %q: want more than 0, at most %v", md["rps"], c.MaxRPS))
	}
	if l.Duration, err = time.ParseDuration(get("duration", DefaultDuration.String())); err != nil || l.Duration <= 0 || l.Duration > c.MaxDuration {
		errs = append(errs, fmt.Errorf("metadata.duration %q: want a duration above 0, at most %s", md["duration"], c.MaxDuration))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// start replaces the load of l's key by l; false when stopping.
func (s *Server) start(l *Load) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	if old := s.runs[l.Key]; old != nil {
		old.cancel()
	}
	if s.total[l.Key] == nil {
		s.total[l.Key] = &Counts{ByCode: map[int]int64{}}
	}
	ctx, cancel := context.WithTimeout(s.ctx, l.Duration)
	r := &run{cancel: cancel, done: make(chan struct{})}
	s.runs[l.Key] = r
	s.wg.Go(func() {
		defer close(r.done)
		defer cancel()
		s.cfg.Logf("load %s: %v requests/s to %s (%s: %s) for %s", l.Key, l.RPS, l.URL, l.HeaderName, l.HeaderValue, l.Duration)
		s.send(ctx, l)
		c := s.Counts(l.Key)
		s.cfg.Logf("load %s ended: %d requests so far, by status %v", l.Key, c.Sent, c.ByCode)
		s.mu.Lock()
		if s.runs[l.Key] == r {
			delete(s.runs, l.Key)
		}
		s.mu.Unlock()
	})
	return true
}

// send sends l's requests until ctx ends, at most concurrency at a time.
func (s *Server) send(ctx context.Context, l *Load) {
	lim := rate.NewLimiter(rate.Limit(l.RPS), 1)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for lim.Wait(ctx) == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			code := s.once(ctx, l)
			if code < 0 {
				return // cut short by the load's end: not an answer
			}
			s.mu.Lock()
			c := s.total[l.Key]
			c.Sent++
			c.ByCode[code]++
			s.mu.Unlock()
		})
	}
}

// once sends one request and returns its status code (0 without an answer, -1 when the load
// ended meanwhile).
func (s *Server) once(ctx context.Context, l *Load) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("User-Agent", "ramp-load")
	if l.HeaderName != "" {
		req.Header.Set(l.HeaderName, l.HeaderValue)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Flags are the command's settings (manager load --help).
type Flags struct {
	Listen string
	Config
}

// ParseFlags reads the command's arguments.
func ParseFlags(args []string, out io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.Listen, "listen", ":8080", "Address of the gate endpoint (POST /) and /healthz.")
	fs.Float64Var(&f.MaxRPS, "max-rps", DefaultMaxRPS, "Highest rate a gate may ask for (metadata.rps), per load.")
	fs.DurationVar(&f.MaxDuration, "max-duration", DefaultMaxDuration, "Longest load a gate may ask for (metadata.duration).")
	fs.DurationVar(&f.RequestTimeout, "request-timeout", 10*time.Second, "Bound of each request sent.")
	fs.Usage = func() {
		fmt.Fprintf(out, `Usage: manager load [flags]

ramp's load generator, a gate endpoint (docs/gates.md): POSTed a gate's body, it answers 202
and sends GET requests to http://<service>.<namespace>:<port><path> in the background, where
namespace is the Rollout's and the rest comes from the gate's metadata: service (default: the
Rollout's name), port (80), path (/), header ("x-ramp-preview: true"), rps (10), duration (1m).
A new call for the same Rollout and gate replaces the load running. Run it in the app's
namespace with an Istio sidecar (examples/podinfo-bluegreen-load).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

// Serve runs the load generator on f.Listen until ctx ends.
func Serve(ctx context.Context, f *Flags) error {
	s := New(f.Config)
	defer s.Stop()
	srv := &http.Server{Addr: f.Listen, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// running reports whether a load of key runs.
func (s *Server) running(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[key] != nil
}
