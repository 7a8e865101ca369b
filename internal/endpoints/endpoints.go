// Package endpoints holds the analysis endpoints the platform allows ramp to contact. Anyone
// who may create a Rollout chooses its analysis address: without an allow-list, ramp would
// send requests (and credentials) wherever a Rollout points, and copy what comes back into
// status. The allow-list is the manager's configuration, which only the platform team writes.
package endpoints

import (
	"fmt"
	"net/url"
	"strings"
)

// List is the allowed endpoints. The zero List allows nothing.
type List struct {
	urls []*url.URL
}

// Parse reads a comma-separated list of base URLs (scheme://host[:port][/path]). An address
// is allowed when its scheme, host and port equal one of them and its path lies under that
// one's path.
func Parse(list string) (List, error) {
	var l List
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := parse(raw)
		if err != nil {
			return List{}, fmt.Errorf("allowed endpoint %q: %w", raw, err)
		}
		l.urls = append(l.urls, u)
	}
	return l, nil
}

// MustParse is Parse for lists known to be valid (tests, defaults).
func MustParse(list string) List {
	l, err := Parse(list)
	if err != nil {
		panic(err)
	}
	return l
}

func parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("no host")
	case u.User != nil:
		return nil, fmt.Errorf("credentials in the URL: give them in a Secret")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("a query or fragment has no place in a base URL")
	}
	return u, nil
}

// String lists the allowed endpoints, for messages.
func (l List) String() string {
	if len(l.urls) == 0 {
		return "none"
	}
	s := make([]string, len(l.urls))
	for i, u := range l.urls {
		s[i] = u.String()
	}
	return strings.Join(s, ", ")
}

// What an address is for, as messages name it: the one list allows both.
const (
	Analysis = "an analysis endpoint"
	Gate     = "a gate endpoint"
)

// Allows returns nil when address may be contacted as an analysis endpoint, and otherwise an
// error saying why.
func (l List) Allows(address string) error { return l.AllowsAs(Analysis, address) }

// AllowsAs is Allows for an address used as what (Analysis, Gate), which the refusal names.
func (l List) AllowsAs(what, address string) error {
	u, err := parse(address)
	if err != nil {
		return err
	}
	for _, a := range l.urls {
		if a.Scheme == u.Scheme && strings.EqualFold(a.Hostname(), u.Hostname()) && port(a) == port(u) && under(u.Path, a.Path) {
			return nil
		}
	}
	return fmt.Errorf("%s is not %s the platform allows (allowed: %s)", address, what, l)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// under reports whether path is base or below it, segment by segment ("/a" is not under
// "/ab"), after cleaning "." and ".." so they cannot climb out.
func under(path, base string) bool {
	path, base = clean(path), clean(base)
	if base == "/" {
		return true
	}
	return path == base || strings.HasPrefix(path, base+"/")
}

func clean(p string) string {
	if p == "" {
		return "/"
	}
	// Resolve . and .. the way a server would.
	u := &url.URL{Path: p}
	r := (&url.URL{Path: "/"}).ResolveReference(u).Path
	if len(r) > 1 {
		r = strings.TrimSuffix(r, "/")
	}
	return r
}
