package meshsim

import (
	"net/url"
	"strings"
)

// The parts of a request Envoy's route matches read, with their defaults.

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
