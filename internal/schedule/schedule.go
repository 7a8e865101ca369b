// Package schedule evaluates a Rollout's promotion windows (spec.promotionWindows).
//
// It is pure: Parse validates the spec once, and Windows.At answers for a time the caller
// passes in, so it reads no clock and every case is testable with fixed times. The only
// outside input is the time zone database, read by Parse; the package embeds a copy
// (time/tzdata) so results don't depend on the image's /usr/share/zoneinfo.
//
// # Semantics
//
// A window opens at each activation of its cron schedule and stays open for its duration:
// now is inside when some activation t satisfies t <= now < t+duration. An activation exactly
// at now is open; the instant t+duration is closed. Windows may overlap: the rollout may
// promote when any of them is open.
//
// Schedules are standard five-field cron (minute hour day-of-month month day-of-week, with
// names, ranges, lists and steps as in github.com/robfig/cron/v3) or one of the descriptors
// @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly. @every is rejected: a
// window opens at calendar times, not at intervals from whenever the controller started.
// Cron has minute resolution: activations fall on whole minutes of the schedule's zone.
//
// The time zone is the window's timeZone, or a CRON_TZ=<zone> (or TZ=<zone>) prefix of the
// schedule, or UTC. Setting both is allowed only when they name the same zone.
//
// Daylight-saving changes follow ISC cron for skipped times and robfig/cron (as Kubernetes
// CronJobs do) for repeated ones:
//   - an activation whose local time is skipped when clocks go forward happens at the
//     moment of the change (a 02:30 window opens at 03:00 on the day Paris jumps from 02:00
//     to 03:00), so no day loses its window;
//   - an activation whose local time occurs twice when clocks go back happens both times, so
//     that night the window opens twice, an hour apart (in Paris).
package schedule

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zone names must resolve the same in every image
	"unicode"

	"github.com/robfig/cron/v3"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// fieldPath is where promotion windows live in a Rollout.
const fieldPath = "spec.promotionWindows"

// Limits of the search for the end of an open stretch (State.ClosesAt).
const (
	// maxChain is how many window openings At follows past now while windows overlap or
	// abut before it gives up and reports the stretch as open without end.
	maxChain = 1024
	// maxLookahead is how far past now At follows an open stretch.
	maxLookahead = 14 * 24 * time.Hour
)

// linearSteps is how many openings current walks one by one before it bisects.
const linearSteps = 8

// maxZoneIntervals bounds how many constant-offset stretches of a time zone next crosses
// looking for an opening (two per year in zones with daylight saving time).
const maxZoneIntervals = 64

// starBit is set by robfig/cron in a field written as * or ?.
const starBit = 1 << 63

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Windows is a parsed, validated list of promotion windows. The zero value and nil have no
// windows (always open). It is immutable and safe for concurrent use.
type Windows struct {
	windows []window
}

type window struct {
	spec     cron.SpecSchedule // Location is unused: next evaluates it in fixed offsets
	loc      *time.Location
	duration time.Duration
}

// FieldError is a validation error of one field of a promotion window.
type FieldError struct {
	// Field is the path of the field, e.g. spec.promotionWindows[1].schedule.
	Field string
	// Detail says what is wrong.
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// Errors is every FieldError Parse found, in spec order.
type Errors []*FieldError

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.As find each FieldError.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, fe := range e {
		errs[i] = fe
	}
	return errs
}

// Parse validates every window and returns them ready for At. On failure the error is a
// *FieldError, or Errors when several fields are wrong; each message starts with the field's
// path, e.g.
//
//	spec.promotionWindows[1].schedule: expected exactly 5 fields, found 4: "* * * *"
//	spec.promotionWindows[0].timeZone: unknown time zone "Mars/Base"
func Parse(ws []rampv1.PromotionWindow) (*Windows, error) {
	out := &Windows{windows: make([]window, 0, len(ws))}
	var errs Errors
	for i, pw := range ws {
		w, fes := parseWindow(i, pw)
		if len(fes) > 0 {
			errs = append(errs, fes...)
			continue
		}
		out.windows = append(out.windows, w)
	}
	switch len(errs) {
	case 0:
		return out, nil
	case 1:
		return nil, errs[0]
	default:
		return nil, errs
	}
}

func parseWindow(i int, pw rampv1.PromotionWindow) (window, []*FieldError) {
	path := fmt.Sprintf("%s[%d]", fieldPath, i)
	var errs []*FieldError
	fail := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: path + "." + field, Detail: fmt.Sprintf(format, args...)})
	}

	w := window{duration: pw.Duration.Duration}
	if w.duration <= 0 {
		fail("duration", "must be positive, got %q", pw.Duration.Duration.String())
	}

	var zoneLoc *time.Location
	if pw.TimeZone != "" {
		loc, err := loadZone(pw.TimeZone)
		if err != nil {
			fail("timeZone", "%v", err)
		} else {
			zoneLoc = loc
		}
	}

	expr, prefixZone, hasPrefix, detail := splitZonePrefix(pw.Schedule)
	if detail != "" {
		fail("schedule", "%s", detail)
		return w, errs
	}
	var prefixLoc *time.Location
	if hasPrefix {
		loc, err := loadZone(prefixZone)
		if err != nil {
			fail("schedule", "%v (in the CRON_TZ= prefix)", err)
		} else {
			prefixLoc = loc
		}
		if pw.TimeZone != "" && pw.TimeZone != prefixZone {
			fail("timeZone", "%q conflicts with the schedule's time zone prefix %q: set the zone in one place", pw.TimeZone, prefixZone)
		}
	}

	spec, detail := parseExpr(expr)
	if detail != "" {
		fail("schedule", "%s", detail)
	}

	if len(errs) > 0 {
		return w, errs
	}
	w.spec = *spec
	switch {
	case prefixLoc != nil:
		w.loc = prefixLoc
	case zoneLoc != nil:
		w.loc = zoneLoc
	default:
		w.loc = time.UTC
	}
	return w, nil
}

// loadZone resolves an IANA time zone name. "Local" is refused: it would be the controller
// machine's zone, not anything the Rollout's author can see.
func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf("time zone %q is not allowed: name an IANA zone such as Europe/Paris, or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil || loc == time.Local {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}

// splitZonePrefix splits "CRON_TZ=<zone> <expr>" (or TZ=) into its parts. detail is set when
// the schedule is malformed.
func splitZonePrefix(schedule string) (expr, zone string, hasPrefix bool, detail string) {
	s := strings.TrimSpace(schedule)
	if s == "" {
		return "", "", false, "must not be empty"
	}
	var prefix string
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if strings.HasPrefix(s, p) {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return s, "", false, ""
	}
	rest := s[len(prefix):]
	end := strings.IndexFunc(rest, unicode.IsSpace)
	if end < 0 {
		end = len(rest)
	}
	zone, expr = rest[:end], strings.TrimSpace(rest[end:])
	switch {
	case zone == "":
		return "", "", false, fmt.Sprintf("%s must be followed by a time zone name, as in %sEurope/Paris 0 9 * * 1-5", prefix, prefix)
	case expr == "":
		return "", "", false, fmt.Sprintf("missing cron expression after %s%s", prefix, zone)
	case strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ="):
		return "", "", false, "more than one time zone prefix"
	}
	return expr, zone, true, ""
}

var fieldNames = [5]string{"minute", "hour", "day-of-month", "month", "day-of-week"}

// parseExpr parses a cron expression without time zone prefix. detail is set when it is
// invalid.
func parseExpr(expr string) (*cron.SpecSchedule, string) {
	fields := strings.Fields(expr)
	if strings.HasPrefix(expr, "@") {
		if fields[0] == "@every" {
			return nil, fmt.Sprintf("@every is not supported: a promotion window opens at calendar times, so use a cron expression such as \"0 */2 * * *\" (got %q)", expr)
		}
		if len(fields) != 1 {
			return nil, fmt.Sprintf("a descriptor takes no arguments: %q", expr)
		}
	} else if len(fields) != 5 {
		detail := fmt.Sprintf("expected exactly 5 fields, found %d: %q", len(fields), expr)
		if len(fields) == 6 {
			detail += " (fields are minute hour day-of-month month day-of-week; seconds are not supported)"
		}
		return nil, detail
	}

	sched, err := parser.Parse(strings.Join(fields, " "))
	if err != nil {
		if strings.HasPrefix(expr, "@") {
			return nil, fmt.Sprintf("unknown descriptor %q (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", expr)
		}
		// robfig/cron does not say which field is wrong: find it by parsing each alone.
		for i, f := range fields {
			alone := []string{"*", "*", "*", "*", "*"}
			alone[i] = f
			if _, ferr := parser.Parse(strings.Join(alone, " ")); ferr != nil {
				return nil, fmt.Sprintf("%s field %q: %v", fieldNames[i], f, ferr)
			}
		}
		return nil, fmt.Sprintf("%q: %v", expr, err)
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Sprintf("unsupported schedule %q", expr)
	}
	if !fires(spec) {
		return nil, fmt.Sprintf("%q never activates: no selected month has the selected day of month", expr)
	}
	return spec, ""
}

// fires reports whether a schedule has at least one activation. Only a day-of-month list
// that no selected month contains (0 0 30 2 *) has none.
func fires(s *cron.SpecSchedule) bool {
	if s.Dom&starBit != 0 || s.Dow&starBit == 0 {
		// Day of month is *, so any weekday matches some day of every month; or both day
		// fields are restricted and cron matches either, and every month has every weekday.
		return true
	}
	daysIn := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if s.Month&(1<<uint(m)) == 0 {
			continue
		}
		for d := 1; d <= daysIn[m]; d++ {
			if s.Dom&(1<<uint(d)) != 0 {
				return true
			}
		}
	}
	return false
}

// State is whether promotion windows allow promotion at a given time.
type State struct {
	// Open is true inside a window, and always when there are no windows.
	Open bool
	// OpensAt is when the next window opens; zero when Open, or when no window opens in
	// the next five years.
	OpensAt time.Time
	// ClosesAt is when the open stretch around now ends: windows that overlap or abut are
	// followed to the first moment no window is open. Zero when not Open, when there are no
	// windows, and when following openings that overlap or abut goes more than 14 days (or
	// 1024 openings) past now, as with a 90-minute window every hour: treat that as always
	// open.
	ClosesAt time.Time
}

// Message describes the state for a condition message, times in RFC 3339 UTC.
func (s State) Message() string {
	switch {
	case s.Open && !s.ClosesAt.IsZero():
		return "inside a promotion window until " + s.ClosesAt.UTC().Format(time.RFC3339)
	case s.Open:
		return "promotion windows allow promotion at this time"
	case !s.OpensAt.IsZero():
		return "outside promotion windows; next window opens at " + s.OpensAt.UTC().Format(time.RFC3339)
	default:
		return "outside promotion windows; no window opens in the next five years"
	}
}

// Len is the number of windows.
func (w *Windows) Len() int {
	if w == nil {
		return 0
	}
	return len(w.windows)
}

// At reports whether now is inside a window (always true without windows); when it is, until
// when; when it is not, when the next window opens. Returned times are in UTC.
func (w *Windows) At(now time.Time) State {
	if w.Len() == 0 {
		return State{Open: true}
	}
	now = now.Round(0) // wall clock only

	var end time.Time // end of the open stretch so far
	for i := range w.windows {
		win := &w.windows[i]
		if t, ok := win.current(now); ok {
			if e := t.Add(win.duration); e.After(end) {
				end = e
			}
		}
	}

	if end.IsZero() {
		var opens time.Time
		for i := range w.windows {
			if t := w.windows[i].next(now); !t.IsZero() && (opens.IsZero() || t.Before(opens)) {
				opens = t
			}
		}
		if opens.IsZero() {
			return State{}
		}
		return State{OpensAt: opens.UTC()}
	}

	// Follow openings after now while they start before the stretch ends.
	cursors := make([]time.Time, len(w.windows))
	for i := range w.windows {
		cursors[i] = w.windows[i].next(now)
	}
	limit := now.Add(maxLookahead)
	for steps := 0; ; steps++ {
		first := -1
		for i, c := range cursors {
			if !c.IsZero() && (first < 0 || c.Before(cursors[first])) {
				first = i
			}
		}
		if first < 0 || cursors[first].After(end) {
			return State{Open: true, ClosesAt: end.UTC()}
		}
		if steps >= maxChain {
			return State{Open: true}
		}
		win := &w.windows[first]
		if e := cursors[first].Add(win.duration); e.After(end) {
			end = e
			if end.After(limit) {
				return State{Open: true}
			}
		}
		cursors[first] = win.next(cursors[first])
	}
}

// current returns the latest activation in (t-duration, t], that is the opening of this
// window's occurrence that is open at t and closes last.
func (w *window) current(t time.Time) (time.Time, bool) {
	a := w.next(t.Add(-w.duration))
	if a.IsZero() || a.After(t) {
		return time.Time{}, false
	}
	// Usually the first activation in range is the only one; with a duration longer than
	// the schedule's period there are several: walk a few, then bisect.
	for range linearSteps {
		b := w.next(a)
		if b.IsZero() || b.After(t) {
			return a, true
		}
		a = b
	}
	// Invariant: next(lo) <= t < next(hi). Activations fall on whole seconds, so once
	// hi-lo is within a second next(lo) is the last activation at or before t.
	lo, hi := a.Add(-time.Nanosecond), t
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if n := w.next(mid); !n.IsZero() && !n.After(t) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return w.next(lo), true
}

// next returns the first activation strictly after t, or zero when there is none within
// about five years.
//
// robfig/cron's own Next drops activations whose local time a daylight-saving change skips,
// and steps through days with time.Date, whose result for a local time that does not exist
// is unspecified. So next walks the zone's stretches of constant UTC offset and asks cron
// about each in that fixed offset, where wall clocks have no gaps, and puts the activations a
// forward change skips at the moment of the change.
func (w *window) next(t time.Time) time.Time {
	from, at := t, t
	spec := w.spec
	for range maxZoneIntervals {
		local := at.In(w.loc)
		name, offset := local.Zone()
		_, end := local.ZoneBounds()
		if !end.IsZero() && !end.After(at) {
			// Past its table a zone follows a rule, and ZoneBounds then ends years after
			// 365 days: in leap years a day early, and again at that end. The offset
			// holds until the real start of the next (UTC) year.
			end = time.Date(at.UTC().Year()+1, time.January, 1, 0, 0, 0, 0, time.UTC)
		}
		spec.Location = time.FixedZone(name, offset)
		n := spec.Next(from)
		if end.IsZero() || (!n.IsZero() && n.Before(end)) {
			return n
		}
		if _, offset2 := end.In(w.loc).Zone(); offset2 > offset {
			// Clocks go forward at end: local times in [end, end+gap) of the old offset
			// never happen; an activation among them happens at end.
			gapEnd := end.Add(time.Duration(offset2-offset) * time.Second)
			if g := spec.Next(end.Add(-time.Nanosecond)); !g.IsZero() && g.Before(gapEnd) {
				return end
			}
		}
		if end.Sub(t) > 5*366*24*time.Hour {
			return time.Time{}
		}
		from, at = end.Add(-time.Nanosecond), end
	}
	return time.Time{}
}
