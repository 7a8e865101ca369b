package meshsim

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"time"
)

// Behaviour is how a version of the application answers: every pod whose container image has
// a Behaviour answers with it.
type Behaviour struct {
	// ErrorRate is the probability (0..1) that the application answers an error.
	ErrorRate float64
	// LatencyP50 and LatencyP99 are the median and 99th percentile of the application's
	// response time. Latencies are drawn from the log-normal distribution with exactly these two
	// quantiles (P99 == P50: every response takes P50; P50 == 0: every response is instant).
	LatencyP50, LatencyP99 time.Duration
	// ErrorCode is the status of an error: 0 answers 500 or 503 with equal odds. Note that
	// Istio's default retry policy retries 503 (not 500) twice: see the package documentation.
	ErrorCode int
	// ConnectFailureRate is the probability (0..1) that the client's proxy cannot connect to
	// the pod (refused at once: its proxy or port is down). Only the client's proxy sees it
	// (503 UF, or UF,URX when retries ran out); the pod reports nothing.
	ConnectFailureRate float64
}

// DefaultBehaviour is what pods whose image has no Behaviour do: no errors, 20 ms median,
// 80 ms p99.
var DefaultBehaviour = Behaviour{LatencyP50: 20 * time.Millisecond, LatencyP99: 80 * time.Millisecond}

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// maxLatency bounds sampled latencies (the log-normal tail is unbounded).
const maxLatency = time.Hour

// Validate reports a Behaviour that cannot be sampled.
func (b Behaviour) Validate() error {
	switch {
	case math.IsNaN(b.ErrorRate) || b.ErrorRate < 0 || b.ErrorRate > 1:
		return fmt.Errorf("meshsim: error rate %v outside 0..1", b.ErrorRate)
	case b.LatencyP50 < 0:
		return fmt.Errorf("meshsim: negative p50 %s", b.LatencyP50)
	case b.LatencyP99 < b.LatencyP50:
		return fmt.Errorf("meshsim: p99 %s below p50 %s", b.LatencyP99, b.LatencyP50)
	case math.IsNaN(b.ConnectFailureRate) || b.ConnectFailureRate < 0 || b.ConnectFailureRate > 1:
		return fmt.Errorf("meshsim: connect failure rate %v outside 0..1", b.ConnectFailureRate)
	case b.ErrorCode != 0 && (b.ErrorCode < 100 || b.ErrorCode > 599):
		return fmt.Errorf("meshsim: error code %d is not an HTTP status", b.ErrorCode)
	}
	return nil
}

// sampler is a Behaviour with its log-normal parameters precomputed.
type sampler struct {
	b         Behaviour
	mu, sigma float64 // of ln(latency in ns)
}

func newSampler(b Behaviour) *sampler {
	s := &sampler{b: b}
	if b.LatencyP50 > 0 {
		s.mu = math.Log(float64(b.LatencyP50))
		s.sigma = math.Log(float64(b.LatencyP99)/float64(b.LatencyP50)) / z99
	}
	return s
}

// connectFails draws whether a connection to the pod fails. It draws nothing when the
// Behaviour has no connect failures, so seeded runs without them route as before.
func (s *sampler) connectFails(rng *rand.Rand) bool {
	return s.b.ConnectFailureRate > 0 && rng.Float64() < s.b.ConnectFailureRate
}

// sample draws one response: its status and how long the application took.
func (s *sampler) sample(rng *rand.Rand) (code int, latency time.Duration) {
	code = 200
	if s.b.ErrorRate > 0 && rng.Float64() < s.b.ErrorRate {
		code = s.b.ErrorCode
		if code == 0 {
			code = 500
			if rng.IntN(2) == 1 {
				code = 503
			}
		}
	}
	if s.b.LatencyP50 <= 0 {
		return code, 0
	}
	if s.sigma == 0 {
		return code, s.b.LatencyP50
	}
	ns := math.Exp(s.mu + s.sigma*rng.NormFloat64())
	if ns >= float64(maxLatency) {
		return code, maxLatency
	}
	return code, time.Duration(ns)
}

// Model maps container images to Behaviours. It is immutable: With returns a changed copy,
// so a Model can be shared by goroutines and swapped atomically.
type Model struct {
	def     *sampler
	byImage map[string]*sampler
}

// NewModel returns a Model where images in byImage behave as given and others as def.
func NewModel(def Behaviour, byImage map[string]Behaviour) (*Model, error) {
	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("default behaviour: %w", err)
	}
	m := &Model{def: newSampler(def), byImage: make(map[string]*sampler, len(byImage))}
	for img, b := range byImage {
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("image %s: %w", img, err)
		}
		m.byImage[img] = newSampler(b)
	}
	return m, nil
}

// MustModel is NewModel for literals known to be valid; it panics on an invalid Behaviour.
func MustModel(def Behaviour, byImage map[string]Behaviour) *Model {
	m, err := NewModel(def, byImage)
	if err != nil {
		panic(err)
	}
	return m
}

// With returns a copy of m where image behaves as b. A nil or zero Model behaves as
// DefaultBehaviour for every image.
func (m *Model) With(image string, b Behaviour) (*Model, error) {
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	n := &Model{def: defaultSampler}
	if m != nil && m.def != nil {
		n.def, n.byImage = m.def, maps.Clone(m.byImage)
	}
	if n.byImage == nil {
		n.byImage = map[string]*sampler{}
	}
	n.byImage[image] = newSampler(b)
	return n, nil
}

// Behaviour returns how pods running image answer.
func (m *Model) Behaviour(image string) Behaviour { return m.sampler(image).b }

func (m *Model) sampler(image string) *sampler {
	if m == nil || m.def == nil {
		return defaultSampler
	}
	if s, ok := m.byImage[image]; ok {
		return s
	}
	return m.def
}

var defaultSampler = newSampler(DefaultBehaviour)

// samplerFor returns the sampler of an endpoint: the first of its images with a Behaviour,
// else the default.
func (m *Model) samplerFor(images []string) *sampler {
	if m == nil || m.def == nil {
		return defaultSampler
	}
	for _, img := range images {
		if s, ok := m.byImage[img]; ok {
			return s
		}
	}
	return m.def
}
