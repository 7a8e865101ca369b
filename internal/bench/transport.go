package bench

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// requestCounter counts a client's API requests by verb and resource, and their HTTP
// status codes.
type requestCounter struct {
	mu    sync.Mutex
	byKey map[string]int64
	codes map[int]int64
	// latency of the requests other than watches (until the response headers)
	latency latencyHistogram
}

func newRequestCounter() *requestCounter {
	return &requestCounter{byKey: map[string]int64{}, codes: map[int]int64{}}
}

// wrap is a rest.Config WrapTransport function.
func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		verb := requestVerb(req)
		key := verb + " " + requestResource(req.URL.Path)
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		if verb != "watch" {
			c.latency.observe(time.Since(start))
		}
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		c.mu.Lock()
		c.byKey[key]++
		c.codes[code]++
		c.mu.Unlock()
		return resp, err
	})
}

func (c *requestCounter) snapshot() (map[string]int64, map[int]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := make(map[string]int64, len(c.byKey))
	for a, b := range c.byKey {
		k[a] = b
	}
	s := make(map[int]int64, len(c.codes))
	for a, b := range c.codes {
		s[a] = b
	}
	return k, s
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestVerb names a request as Kubernetes audit logs do (get, list, watch, create, update,
// patch, apply, delete).
func requestVerb(req *http.Request) string {
	switch req.Method {
	case http.MethodGet:
		if req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1" {
			return "watch"
		}
		if _, name, _ := splitResourcePath(req.URL.Path); name == "" {
			return "list"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		if strings.HasPrefix(req.Header.Get("Content-Type"), "application/apply-patch") {
			return "apply"
		}
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(req.Method)
}

// requestResource is the resource (and subresource) of an API path, e.g. "rollouts/status";
// "discovery" for everything that is not a resource.
func requestResource(path string) string {
	res, _, sub := splitResourcePath(path)
	if res == "" {
		return "discovery"
	}
	if sub != "" {
		return res + "/" + sub
	}
	return res
}

// splitResourcePath parses /api/v1/... and /apis/<group>/<version>/...: the resource, the
// object's name ("" for a collection) and the subresource.
func splitResourcePath(path string) (resource, name, sub string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return "", "", ""
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:] // a namespaced resource (a lone namespaces/<name> stays the namespace)
	}
	if len(segs) == 0 {
		return "", "", ""
	}
	resource = segs[0]
	if len(segs) > 1 {
		name = segs[1]
	}
	if len(segs) > 2 {
		sub = segs[2]
	}
	return resource, name, sub
}
