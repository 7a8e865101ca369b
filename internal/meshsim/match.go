package meshsim

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

type matchKind uint8

const (
	matchPresent matchKind = iota // the header (or parameter) is present, whatever its value
	matchExact
	matchPrefix
	matchRegex
	matchNever // a JWT claim: meshsim's requests carry none
)

// stringMatch is an Istio StringMatch as Envoy evaluates it.
type stringMatch struct {
	kind matchKind
	s    string
	re   *regexp.Regexp
}

// compileStringMatch translates a StringMatch as istiod does: an empty one, or the regex "*",
// is a presence match; a regex must match the whole value (Envoy's safe_regex is RE2, with
// full-match semantics).
func compileStringMatch(m *networking.StringMatch) (*stringMatch, error) {
	switch t := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &stringMatch{kind: matchExact, s: t.Exact}, nil
	case *networking.StringMatch_Prefix:
		return &stringMatch{kind: matchPrefix, s: t.Prefix}, nil
	case *networking.StringMatch_Regex:
		if t.Regex == "*" {
			return &stringMatch{kind: matchPresent}, nil
		}
		re, err := regexp.Compile(`^(?:` + t.Regex + `)$`)
		if err != nil {
			return nil, fmt.Errorf("invalid regex %q: %w", t.Regex, err)
		}
		return &stringMatch{kind: matchRegex, s: t.Regex, re: re}, nil
	}
	return &stringMatch{kind: matchPresent}, nil
}

func (m *stringMatch) value(v string, foldCase bool) bool {
	switch m.kind {
	case matchPresent:
		return true
	case matchExact:
		if foldCase {
			return strings.EqualFold(v, m.s)
		}
		return v == m.s
	case matchPrefix:
		if foldCase {
			return len(v) >= len(m.s) && strings.EqualFold(v[:len(m.s)], m.s)
		}
		return strings.HasPrefix(v, m.s)
	case matchRegex:
		return m.re.MatchString(v)
	}
	return false
}

type namedMatch struct {
	name string
	m    *stringMatch
}

// matchRequest is one HTTPMatchRequest; its conditions are ANDed.
type matchRequest struct {
	uri, scheme, method, authority *stringMatch
	ignoreURICase                  bool
	headers, without, query        []namedMatch
}

func compileMatch(m *networking.HTTPMatchRequest) (*matchRequest, error) {
	out := &matchRequest{ignoreURICase: m.IgnoreUriCase}
	var err error
	one := func(sm *networking.StringMatch) *stringMatch {
		if sm == nil || err != nil {
			return nil
		}
		var c *stringMatch
		c, err = compileStringMatch(sm)
		return c
	}
	out.uri, out.scheme, out.method, out.authority = one(m.Uri), one(m.Scheme), one(m.Method), one(m.Authority)
	named := func(in map[string]*networking.StringMatch, header bool) []namedMatch {
		var ms []namedMatch
		for name, sm := range in {
			name = strings.ToLower(name)
			if header {
				switch name {
				case "uri", "scheme", "method", "authority":
					continue // Istio ignores these keys
				}
				if strings.HasPrefix(name, "@request.auth.claims") {
					ms = append(ms, namedMatch{name, &stringMatch{kind: matchNever}})
					continue
				}
			}
			if c := one(sm); c != nil {
				ms = append(ms, namedMatch{name, c})
			}
		}
		return ms
	}
	out.headers = named(m.Headers, true)
	out.without = named(m.WithoutHeaders, true)
	out.query = named(m.QueryParams, false)
	return out, err
}

// matches evaluates the match against a request sent with the given authority. Headers absent from the request never
// match a header condition; withoutHeaders inverts the condition, with a missing header taken
// as empty for value matches (istiod sets treat_missing_header_as_empty).
func (m *matchRequest) matches(req *Request, authority string) bool {
	if m.uri != nil && !m.uri.value(req.path(), m.ignoreURICase) {
		return false
	}
	if m.method != nil && !m.method.value(req.method(), false) {
		return false
	}
	if m.scheme != nil && !m.scheme.value(req.scheme(), false) {
		return false
	}
	if m.authority != nil && !m.authority.value(authority, false) {
		return false
	}
	for _, h := range m.headers {
		v, ok := req.Headers[h.name]
		if !ok || !h.m.value(v, false) {
			return false
		}
	}
	for _, h := range m.without {
		v, ok := req.Headers[h.name]
		switch {
		case h.m.kind == matchNever:
		case h.m.kind == matchPresent:
			if ok {
				return false
			}
		case h.m.value(v, false): // v is "" when missing
			return false
		}
	}
	if len(m.query) > 0 {
		q := req.queryValues()
		for _, p := range m.query {
			vs, ok := q[p.name]
			if !ok || !p.m.value(vs[0], false) {
				return false
			}
		}
	}
	return true
}

func (r *Request) path() string {
	p, _, _ := strings.Cut(r.Path, "?")
	if p == "" {
		return "/"
	}
	return p
}

func (r *Request) method() string {
	if r.Method == "" {
		return "GET"
	}
	return r.Method
}

func (r *Request) scheme() string {
	if r.Scheme == "" {
		return "http"
	}
	return r.Scheme
}

func (r *Request) queryValues() url.Values {
	_, q, _ := strings.Cut(r.Path, "?")
	v, _ := url.ParseQuery(q)
	return v
}
