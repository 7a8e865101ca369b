package meshsim

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// outlierPolicy is a cluster's outlier detection as Envoy runs it. istiod enables only the
// consecutive-error detectors (it sets enforcing_success_rate to 0) and sets the healthy panic
// threshold to 0, so a cluster whose hosts are all ejected has no healthy upstream (503 UH).
type outlierPolicy struct {
	consecutive5xx     uint32 // 5xx answers (and connect failures, timeouts) in a row; 0: off
	consecutiveGateway uint32 // 502, 503, 504 (and connect failures, timeouts) in a row; 0: off
	interval           time.Duration
	baseEjection       time.Duration
	maxEjection        time.Duration // cap of baseEjection * the host's ejection count
	maxEjectionPercent uint32
	alwaysEjectOne     bool // always_eject_one_host (istiod never sets it)
}

// Envoy's defaults for what a cluster's outlier_detection leaves unset.
const (
	envoyConsecutive5xx     = 5
	envoyInterval           = 10 * time.Second
	envoyBaseEjection       = 30 * time.Second
	envoyMaxEjection        = 300 * time.Second
	envoyMaxEjectionPercent = 10
)

// outlierFromEnvoy reads a CDS cluster's outlier_detection (call it only when the cluster has
// one) with Envoy's defaults: consecutive_5xx 5, enforced unless enforcing_consecutive_5xx is
// 0; consecutive_gateway_failure 5 but not enforced unless enforcing_consecutive_gateway_failure
// is set above 0; interval 10s; base_ejection_time 30s; max_ejection_time max(300s, base);
// max_ejection_percent 10. An enforcing percentage between 1 and 99 enforces every time.
func outlierFromEnvoy(od *clusterv3.OutlierDetection) *outlierPolicy {
	p := &outlierPolicy{consecutive5xx: envoyConsecutive5xx, interval: envoyInterval, baseEjection: envoyBaseEjection,
		maxEjectionPercent: envoyMaxEjectionPercent, alwaysEjectOne: od.GetAlwaysEjectOneHost().GetValue()}
	if v := od.GetConsecutive_5Xx(); v != nil {
		p.consecutive5xx = v.GetValue()
	}
	if v := od.GetEnforcingConsecutive_5Xx(); v != nil && v.GetValue() == 0 {
		p.consecutive5xx = 0
	}
	if v := od.GetEnforcingConsecutiveGatewayFailure(); v != nil && v.GetValue() > 0 {
		p.consecutiveGateway = envoyConsecutive5xx
		if g := od.GetConsecutiveGatewayFailure(); g != nil {
			p.consecutiveGateway = g.GetValue()
		}
	}
	if d := od.GetInterval(); d != nil && d.AsDuration() > 0 {
		p.interval = d.AsDuration()
	}
	if d := od.GetBaseEjectionTime(); d != nil && d.AsDuration() > 0 {
		p.baseEjection = d.AsDuration()
	}
	p.maxEjection = max(envoyMaxEjection, p.baseEjection)
	if d := od.GetMaxEjectionTime(); d != nil && d.AsDuration() > 0 {
		p.maxEjection = d.AsDuration()
	}
	if v := od.GetMaxEjectionPercent(); v != nil {
		p.maxEjectionPercent = min(v.GetValue(), 100)
	}
	return p
}

// Outliers is the outlier detection state of the client's proxy: per cluster, each host's
// consecutive errors and ejection. It outlives Routers, as Envoy's detector outlives an xDS
// update that keeps the cluster's settings. Not safe for concurrent use (a Sim routes under
// its lock).
type Outliers struct {
	clusters map[string]*detector
	buf      []*Endpoint
}

// NewOutliers returns empty outlier detection state.
func NewOutliers() *Outliers { return &Outliers{clusters: map[string]*detector{}} }

// detector is Envoy's DetectorImpl for one cluster.
type detector struct {
	policy  outlierPolicy
	synced  *cluster  // the Router's cluster the hosts were last synced from
	sweep   time.Time // next interval timer
	hosts   map[string]*hostMonitor
	ejected int
}

type hostMonitor struct {
	consec5xx, consecGateway uint32
	ejected                  bool
	ejectedAt, unejectedAt   time.Time // unejectedAt zero: never unejected
	backoff                  int       // ejection time multiplier
}

// Ejected reports whether pod is ejected from the cluster named (outbound|PORT|SUBSET|HOST).
func (o *Outliers) Ejected(cluster, pod string) bool {
	if o == nil {
		return false
	}
	d := o.clusters[cluster]
	return d != nil && d.hosts[pod] != nil && d.hosts[pod].ejected
}

// detector returns c's detector at now, nil when c has no outlier detection: created on first
// use (or when its settings change, as Envoy builds a new cluster), hosts synced with c's
// endpoints, interval timers that fell due run.
func (o *Outliers) detector(c *cluster, now time.Time) *detector {
	if o == nil || c.outlier == nil {
		return nil
	}
	name := c.name
	if name == "" {
		name = "outbound||" + c.subset + "|" + c.host
	}
	d := o.clusters[name]
	if d == nil || d.policy != *c.outlier {
		d = &detector{policy: *c.outlier, sweep: now.Add(c.outlier.interval), hosts: map[string]*hostMonitor{}}
		o.clusters[name] = d
	}
	if d.synced != c {
		d.sync(c.endpoints)
		d.synced = c
	}
	for !d.sweep.After(now) {
		d.onInterval(d.sweep)
		d.sweep = d.sweep.Add(d.policy.interval)
	}
	return d
}

// healthy returns the endpoints not ejected, in a buffer reused by the next call.
func (o *Outliers) healthy(d *detector, eps []*Endpoint) []*Endpoint {
	if d.ejected == 0 {
		return eps
	}
	o.buf = o.buf[:0]
	for _, ep := range eps {
		if !d.hosts[ep.Pod].ejected {
			o.buf = append(o.buf, ep)
		}
	}
	return o.buf
}

// sync adds monitors for new hosts and drops those of hosts that left the cluster.
func (d *detector) sync(eps []*Endpoint) {
	keep := make(map[string]bool, len(eps))
	for _, ep := range eps {
		keep[ep.Pod] = true
		if d.hosts[ep.Pod] == nil {
			d.hosts[ep.Pod] = &hostMonitor{}
		}
	}
	for pod, h := range d.hosts {
		if !keep[pod] {
			if h.ejected {
				d.ejected--
			}
			delete(d.hosts, pod)
		}
	}
}

// record charges one attempt's outcome to its host, as Envoy's putHttpResponseCode does
// (without split_external_local_origin_errors, which istiod leaves off: a connect failure
// counts as 503, a timeout as 504).
func (d *detector) record(pod string, code int, now time.Time) {
	h := d.hosts[pod]
	if h == nil {
		return
	}
	if code < 500 || code > 599 {
		h.consec5xx, h.consecGateway = 0, 0
		return
	}
	if code == 502 || code == 503 || code == 504 {
		h.consecGateway++
		if d.policy.consecutiveGateway > 0 && h.consecGateway == d.policy.consecutiveGateway {
			d.eject(h, now)
			h.consecGateway = 0
		}
	} else {
		h.consecGateway = 0
	}
	h.consec5xx++
	if d.policy.consecutive5xx > 0 && h.consec5xx == d.policy.consecutive5xx {
		d.eject(h, now)
		h.consec5xx = 0
	}
}

// eject ejects h unless it already is or the cluster would exceed maxEjectionPercent (Envoy
// counts the host being ejected: with maxEjectionPercent 10, a cluster of fewer than ten hosts
// ejects none, unless always_eject_one_host lets the first go).
func (d *detector) eject(h *hostMonitor, now time.Time) {
	if h.ejected {
		return
	}
	if 100*(d.ejected+1) > int(d.policy.maxEjectionPercent)*len(d.hosts) && !(d.policy.alwaysEjectOne && d.ejected == 0) {
		return
	}
	h.ejected, h.ejectedAt = true, now
	d.ejected++
	if time.Duration(h.backoff)*d.policy.baseEjection < d.policy.maxEjection+d.policy.baseEjection {
		h.backoff++
	}
}

// onInterval is Envoy's interval timer: hosts ejected for min(baseEjection * backoff,
// maxEjection) come back with their counters reset; hosts healthy for an interval since they
// came back have their backoff lowered.
func (d *detector) onInterval(now time.Time) {
	for _, h := range d.hosts {
		if h.ejected && min(time.Duration(h.backoff)*d.policy.baseEjection, d.policy.maxEjection) <= now.Sub(h.ejectedAt) {
			h.ejected, h.unejectedAt = false, now
			h.consec5xx, h.consecGateway = 0, 0
			d.ejected--
		}
	}
	for _, h := range d.hosts {
		if !h.ejected && !h.unejectedAt.IsZero() && now.Sub(h.unejectedAt) >= d.policy.interval && h.backoff > 0 {
			h.backoff--
		}
	}
}
