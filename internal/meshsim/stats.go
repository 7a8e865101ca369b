package meshsim

import (
	"math"
	"sync"
	"time"
)

// Key identifies a group of counted reports.
type Key struct {
	Reporter string
	Route    string
	Subset   string
	Workload string
	Code     int
	Flags    string
}

// Stats counts reports. The zero value is empty and ready to Add to.
type Stats struct {
	// Window is the time the counts cover, from the start of the oldest tick counted to the
	// end of the latest (for a Sim's Stats; 0 for hand-built ones).
	Window time.Duration
	Counts map[Key]int64
}

// Add counts reports.
func (s *Stats) Add(reports []Report) {
	if s.Counts == nil {
		s.Counts = map[Key]int64{}
	}
	for i := range reports {
		r := &reports[i]
		s.Counts[Key{r.Reporter, r.Route, r.Subset, r.Workload, r.Code, r.Flags}]++
	}
}

// AddResult counts the reports of one Result.
func (s *Stats) AddResult(res *Result) {
	var buf [4]Report
	s.Add(res.Reports(buf[:0]))
}

// Sum counts the reports whose key keep accepts.
func (s Stats) Sum(keep func(Key) bool) int64 {
	var n int64
	for k, c := range s.Counts {
		if keep(k) {
			n += c
		}
	}
	return n
}

// Total counts the reports of reporter (ReporterSource: requests; ReporterDestination:
// attempts that reached a pod).
func (s Stats) Total(reporter string) int64 {
	return s.Sum(func(k Key) bool { return k.Reporter == reporter })
}

// BySubset counts reporter's reports per destination subset.
func (s Stats) BySubset(reporter string) map[string]int64 {
	return s.by(reporter, func(k Key) string { return k.Subset })
}

// ByWorkload counts reporter's reports per destination workload.
func (s Stats) ByWorkload(reporter string) map[string]int64 {
	return s.by(reporter, func(k Key) string { return k.Workload })
}

// ByRoute counts reporter's reports per HTTP route.
func (s Stats) ByRoute(reporter string) map[string]int64 {
	return s.by(reporter, func(k Key) string { return k.Route })
}

// ByCode counts reporter's reports per response code.
func (s Stats) ByCode(reporter string) map[int]int64 {
	out := map[int]int64{}
	for k, c := range s.Counts {
		if k.Reporter == reporter {
			out[k.Code] += c
		}
	}
	return out
}

func (s Stats) by(reporter string, f func(Key) string) map[string]int64 {
	out := map[string]int64{}
	for k, c := range s.Counts {
		if k.Reporter == reporter {
			out[f(k)] += c
		}
	}
	return out
}

// ErrorRate is the share (0..1) of reporter's reports for workload ("": any) that are 5xx.
// NaN when there are none.
func (s Stats) ErrorRate(reporter, workload string) float64 {
	var all, errs int64
	for k, c := range s.Counts {
		if k.Reporter != reporter || (workload != "" && k.Workload != workload) {
			continue
		}
		all += c
		if k.Code >= 500 && k.Code <= 599 {
			errs += c
		}
	}
	if all == 0 {
		return math.NaN()
	}
	return float64(errs) / float64(all)
}

// Share is the share (0..1) of reporter's reports that went to subset. NaN when there are
// none.
func (s Stats) Share(reporter, subset string) float64 {
	all := s.Total(reporter)
	if all == 0 {
		return math.NaN()
	}
	return float64(s.Sum(func(k Key) bool { return k.Reporter == reporter && k.Subset == subset })) / float64(all)
}

// statsRing keeps counts per tick for a retention period.
type statsRing struct {
	mu        sync.Mutex
	retention time.Duration
	slots     []slot // oldest first
}

// slot holds the reports of requests generated in (from, at].
type slot struct {
	from, at time.Time
	counts   map[Key]int64
}

func (r *statsRing) add(from, at time.Time, reports []Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(from, at, reports)
}

func (r *statsRing) addLocked(from, at time.Time, reports []Report) {
	if n := len(r.slots); n == 0 || !r.slots[n-1].at.Equal(at) {
		// Reuse an expired slot's map rather than growing garbage.
		var m map[Key]int64
		cut := 0
		for cut < len(r.slots) && at.Sub(r.slots[cut].at) > r.retention {
			cut++
		}
		if cut > 0 {
			m = r.slots[0].counts
			clear(m)
			r.slots = append(r.slots[:0], r.slots[cut:]...)
		}
		if m == nil {
			m = map[Key]int64{}
		}
		r.slots = append(r.slots, slot{from: from, at: at, counts: m})
	}
	m := r.slots[len(r.slots)-1].counts
	for i := range reports {
		rep := &reports[i]
		m[Key{rep.Reporter, rep.Route, rep.Subset, rep.Workload, rep.Code, rep.Flags}]++
	}
}

// merge counts reports in the latest slot (a new one at now when there is none), so slots
// stay in time order whatever the moment the reports came in.
func (r *statsRing) merge(now time.Time, reports []Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	from, at := now, now
	if n := len(r.slots); n > 0 {
		from, at = r.slots[n-1].from, r.slots[n-1].at
	}
	r.addLocked(from, at, reports)
}

// stats sums the slots that lie within the window before now; Window is the time they
// cover (so counts / Window is the rate, even if the latest tick is late).
func (r *statsRing) stats(now time.Time, window time.Duration) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Counts: map[Key]int64{}}
	start := now.Add(-window)
	for i := len(r.slots) - 1; i >= 0 && !r.slots[i].from.Before(start); i-- {
		for k, c := range r.slots[i].counts {
			s.Counts[k] += c
		}
		s.Window = r.slots[len(r.slots)-1].at.Sub(r.slots[i].from)
	}
	return s
}
