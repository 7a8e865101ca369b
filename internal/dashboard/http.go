package dashboard

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// How the dashboard keeps other sites and other local users out. It acts with the user's
// credentials, so:
//   - the browser proves it was given the URL kubectl ramp printed: the URL's token is traded
//     for an HttpOnly, SameSite=Strict cookie, and every request needs that cookie (another
//     user of the machine can reach a loopback port, but has no token);
//   - requests must name the server by an IP address or localhost in Host, so a site whose
//     DNS name is rebound to 127.0.0.1 cannot read the pages;
//   - a POST must come from the dashboard's own page (Origin), and a SameSite=Strict cookie
//     is not sent with requests other sites start;
//   - the page may not be framed (clickjacking), and loads nothing from elsewhere (CSP).

// eventsRefresh is how often a Rollout's page re-reads its events when the Rollout does not
// change (events are listed, not watched).
const eventsRefresh = 10 * time.Second

// heartbeat keeps idle streams open through proxies and notices closed browsers.
const heartbeat = 15 * time.Second

// actTimeout bounds a button's request (the verb waits up to 5 s for the controller).
const actTimeout = 30 * time.Second

// Handler is the dashboard's HTTP handler for a server listening on port (which names its
// cookie, so dashboards on two ports keep their own).
func (s *Server) Handler(port string) http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /api/rollouts", s.streamList)
	mux.HandleFunc("GET /api/rollouts/{namespace}/{name}", s.streamDetail)
	mux.HandleFunc("POST /api/rollouts/{namespace}/{name}/{action}", s.act)
	return s.guard("ramp-dashboard-"+port, mux)
}

// guard applies the checks above, and trades the URL's token for the cookie.
func (s *Server) guard(cookie string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		if !addressedByIP(r.Host) {
			http.Error(w, "open the dashboard at the address kubectl ramp dashboard printed (Host must be an IP address or localhost)", http.StatusForbidden)
			return
		}
		if tok := r.URL.Query().Get("token"); tok != "" && r.Method == http.MethodGet && r.URL.Path == "/" {
			if !s.validToken(tok) {
				http.Error(w, "wrong token: open the URL kubectl ramp dashboard printed", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookie, Value: s.o.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		c, err := r.Cookie(cookie)
		if err != nil || !s.validToken(c.Value) {
			http.Error(w, "open the URL kubectl ramp dashboard printed (it carries a token for this run)", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if origin := r.Header.Get("Origin"); origin != "http://"+r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.o.Token)) == 1
}

// addressedByIP reports whether a Host header names an IP address or localhost: DNS
// rebinding needs a DNS name.
func addressedByIP(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}

// streamList pushes the list of Rollouts on every change.
func (s *Server) streamList(w http.ResponseWriter, r *http.Request) {
	sse, ok := startStream(w)
	if !ok {
		return
	}
	changed, done := s.hub.subscribe()
	defer done()
	var last []byte
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		if b, err := json.Marshal(s.list()); err == nil && string(b) != string(last) {
			if sse.send("list", b) != nil {
				return
			}
			last = b
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-beat.C:
			if sse.ping() != nil {
				return
			}
		}
	}
}

// streamDetail pushes a Rollout's page on every change of the Rollout, with its events
// (re-read when it changes, and every eventsRefresh).
func (s *Server) streamDetail(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	sse, ok := startStream(w)
	if !ok {
		return
	}
	changed, done := s.hub.subscribe()
	defer done()
	refresh := time.NewTicker(eventsRefresh)
	defer refresh.Stop()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	var last []byte
	var eventsOf *rampv1.Rollout // the version of the Rollout the events were read at
	var events []Event
	var eventsErr string
	for {
		d, ro := s.detail(ns, name)
		if ro != nil && ro != eventsOf {
			events, eventsErr = s.events(r.Context(), ro)
			eventsOf = ro
		}
		if ro != nil {
			d.Events, d.EventsError = events, eventsErr
		}
		// Now changes every time: compare without it.
		d.Now = time.Time{}
		if b, err := json.Marshal(d); err == nil && string(b) != string(last) {
			last = b
			d.Now = s.o.Now()
			if b, err = json.Marshal(d); err != nil || sse.send("rollout", b) != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-refresh.C:
			eventsOf = nil
		case <-beat.C:
			if sse.ping() != nil {
				return
			}
		}
	}
}

// events reads the latest events about a Rollout, oldest first.
func (s *Server) events(ctx context.Context, ro *rampv1.Rollout) ([]Event, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	evs, err := s.o.Cluster.Events(ctx, ro)
	if err != nil {
		return []Event{}, err.Error()
	}
	if len(evs) > maxEvents {
		evs = evs[len(evs)-maxEvents:]
	}
	return clone(evs), ""
}

// act runs a button's request: the plugin's verb of the same name.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	ns, name, action := r.PathValue("namespace"), r.PathValue("name"), Action(r.PathValue("action"))
	if !slices.Contains(Actions, action) {
		http.Error(w, fmt.Sprintf("unknown action %q", action), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actTimeout)
	defer cancel()
	out := s.o.Cluster.Act(ctx, action, ns, name)
	s.o.Logf("%s %s/%s from the dashboard: exit %d: %s", action, ns, name, out.Code, out.Message)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// stream writes Server-Sent Events.
type stream struct {
	w http.ResponseWriter
	f http.Flusher
}

func startStream(w http.ResponseWriter) (*stream, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &stream{w: w, f: f}, true
}

// send writes one event; data is JSON, which holds no newline.
func (s *stream) send(event string, data []byte) error {
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *stream) ping() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// hub tells the streams that something changed; each stream then sends what changed for it.
type hub struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// subscribe returns a channel that receives (at most one pending) notification per change.
func (h *hub) subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan struct{}]struct{}{}
	}
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}
}

func (h *hub) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default: // a notification is pending: the stream will read the latest state anyway
		}
	}
}
