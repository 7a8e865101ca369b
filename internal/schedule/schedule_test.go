package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func pw(schedule string, d time.Duration, zone string) rampv1.PromotionWindow {
	return rampv1.PromotionWindow{Schedule: schedule, Duration: metav1.Duration{Duration: d}, TimeZone: zone}
}

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return v
}

func mustParse(t testing.TB, ws ...rampv1.PromotionWindow) *Windows {
	t.Helper()
	w, err := Parse(ws)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return w
}

type probe struct {
	now    string
	open   bool
	opens  string // RFC 3339; "" for zero
	closes string // RFC 3339; "" for zero
}

func checkProbes(t *testing.T, w *Windows, probes []probe) {
	t.Helper()
	for _, p := range probes {
		got := w.At(ts(t, p.now))
		want := State{Open: p.open}
		if p.opens != "" {
			want.OpensAt = ts(t, p.opens)
		}
		if p.closes != "" {
			want.ClosesAt = ts(t, p.closes)
		}
		if got.Open != want.Open || !got.OpensAt.Equal(want.OpensAt) || !got.ClosesAt.Equal(want.ClosesAt) {
			t.Errorf("At(%s) = %s, want %s", p.now, fmtState(got), fmtState(want))
		}
		for _, v := range []time.Time{got.OpensAt, got.ClosesAt} {
			if !v.IsZero() && v.Location() != time.UTC {
				t.Errorf("At(%s) returned %v not in UTC", p.now, v)
			}
		}
	}
}

func fmtState(s State) string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	return "{Open:" + map[bool]string{true: "true", false: "false"}[s.Open] + " OpensAt:" + f(s.OpensAt) + " ClosesAt:" + f(s.ClosesAt) + "}"
}

func TestAt(t *testing.T) {
	const h = time.Hour
	tests := []struct {
		name    string
		windows []rampv1.PromotionWindow
		probes  []probe
	}{{
		name: "empty list is always open",
		probes: []probe{
			{now: "2026-11-23T08:59:00Z", open: true},
			{now: "1970-01-01T00:00:00Z", open: true},
			{now: "2262-04-11T23:47:16Z", open: true},
		},
	}, {
		// 2026-11-23 is a Monday, 2026-11-28 a Saturday.
		name:    "weekdays 09:00 for 8h",
		windows: []rampv1.PromotionWindow{pw("0 9 * * 1-5", 8*h, "")},
		probes: []probe{
			{now: "2026-11-23T08:59:00Z", opens: "2026-11-23T09:00:00Z"},
			{now: "2026-11-23T08:59:59.999999999Z", opens: "2026-11-23T09:00:00Z"},
			{now: "2026-11-23T09:00:00Z", open: true, closes: "2026-11-23T17:00:00Z"},
			{now: "2026-11-23T16:59:00Z", open: true, closes: "2026-11-23T17:00:00Z"},
			{now: "2026-11-23T16:59:59.999999999Z", open: true, closes: "2026-11-23T17:00:00Z"},
			{now: "2026-11-23T17:00:00Z", opens: "2026-11-24T09:00:00Z"},
			{now: "2026-11-27T17:00:00Z", opens: "2026-11-30T09:00:00Z"},
			{now: "2026-11-28T12:00:00Z", opens: "2026-11-30T09:00:00Z"},
			{now: "2026-11-29T23:59:00Z", opens: "2026-11-30T09:00:00Z"},
		},
	}, {
		name:    "descriptor",
		windows: []rampv1.PromotionWindow{pw("@daily", 2*h, "")},
		probes: []probe{
			{now: "2026-11-23T01:00:00Z", open: true, closes: "2026-11-23T02:00:00Z"},
			{now: "2026-11-23T02:00:00Z", opens: "2026-11-24T00:00:00Z"},
		},
	}, {
		name:    "now in another zone",
		windows: []rampv1.PromotionWindow{pw("0 9 * * 1-5", 8*h, "")},
		probes: []probe{
			{now: "2026-11-23T09:59:00+01:00", opens: "2026-11-23T09:00:00Z"},
			{now: "2026-11-23T10:00:00+01:00", open: true, closes: "2026-11-23T17:00:00Z"},
		},
	}, {
		// Paris is UTC+1 in November.
		name:    "CRON_TZ prefix",
		windows: []rampv1.PromotionWindow{pw("CRON_TZ=Europe/Paris 0 9 * * 1-5", 8*h, "")},
		probes: []probe{
			{now: "2026-11-23T07:59:00Z", opens: "2026-11-23T08:00:00Z"},
			{now: "2026-11-23T08:00:00Z", open: true, closes: "2026-11-23T16:00:00Z"},
			{now: "2026-11-28T08:00:00Z", opens: "2026-11-30T08:00:00Z"},
		},
	}, {
		name:    "TZ prefix",
		windows: []rampv1.PromotionWindow{pw("TZ=Europe/Paris 0 9 * * 1-5", 8*h, "")},
		probes: []probe{
			{now: "2026-11-23T07:59:00Z", opens: "2026-11-23T08:00:00Z"},
			{now: "2026-11-23T08:00:00Z", open: true, closes: "2026-11-23T16:00:00Z"},
		},
	}, {
		name:    "timeZone field",
		windows: []rampv1.PromotionWindow{pw("0 9 * * 1-5", 8*h, "Europe/Paris")},
		probes: []probe{
			{now: "2026-11-23T07:59:00Z", opens: "2026-11-23T08:00:00Z"},
			{now: "2026-11-23T08:00:00Z", open: true, closes: "2026-11-23T16:00:00Z"},
			// Summer time: UTC+2.
			{now: "2026-06-15T06:59:00Z", opens: "2026-06-15T07:00:00Z"},
			{now: "2026-06-15T07:00:00Z", open: true, closes: "2026-06-15T15:00:00Z"},
		},
	}, {
		name:    "timeZone field and the same CRON_TZ prefix",
		windows: []rampv1.PromotionWindow{pw("CRON_TZ=Europe/Paris 0 9 * * 1-5", 8*h, "Europe/Paris")},
		probes: []probe{
			{now: "2026-11-23T08:00:00Z", open: true, closes: "2026-11-23T16:00:00Z"},
		},
	}, {
		// 2026-03-29: Paris jumps from 02:00 CET to 03:00 CEST (01:00Z); 02:30 does not
		// exist, so the window opens at the jump.
		name:    "DST spring forward, 02:30 daily in Paris",
		windows: []rampv1.PromotionWindow{pw("30 2 * * *", h, "Europe/Paris")},
		probes: []probe{
			{now: "2026-03-28T01:30:00Z", open: true, closes: "2026-03-28T02:30:00Z"},
			{now: "2026-03-28T02:30:00Z", opens: "2026-03-29T01:00:00Z"},
			{now: "2026-03-29T00:59:59Z", opens: "2026-03-29T01:00:00Z"},
			{now: "2026-03-29T01:00:00Z", open: true, closes: "2026-03-29T02:00:00Z"},
			{now: "2026-03-29T01:59:00Z", open: true, closes: "2026-03-29T02:00:00Z"},
			{now: "2026-03-29T02:00:00Z", opens: "2026-03-30T00:30:00Z"},
			{now: "2026-03-30T00:30:00Z", open: true, closes: "2026-03-30T01:30:00Z"},
		},
	}, {
		// 2026-10-25: Paris goes back from 03:00 CEST to 02:00 CET (01:00Z); 02:30 happens
		// at 00:30Z and again at 01:30Z. With a one-hour window the two abut.
		name:    "DST fall back, 02:30 daily in Paris for 1h",
		windows: []rampv1.PromotionWindow{pw("30 2 * * *", h, "Europe/Paris")},
		probes: []probe{
			{now: "2026-10-24T00:30:00Z", open: true, closes: "2026-10-24T01:30:00Z"},
			{now: "2026-10-25T00:29:00Z", opens: "2026-10-25T00:30:00Z"},
			{now: "2026-10-25T00:30:00Z", open: true, closes: "2026-10-25T02:30:00Z"},
			{now: "2026-10-25T01:45:00Z", open: true, closes: "2026-10-25T02:30:00Z"},
			{now: "2026-10-25T02:30:00Z", opens: "2026-10-26T01:30:00Z"},
		},
	}, {
		name:    "DST fall back, 02:30 daily in Paris for 30m",
		windows: []rampv1.PromotionWindow{pw("30 2 * * *", 30*time.Minute, "Europe/Paris")},
		probes: []probe{
			{now: "2026-10-25T00:45:00Z", open: true, closes: "2026-10-25T01:00:00Z"},
			{now: "2026-10-25T01:00:00Z", opens: "2026-10-25T01:30:00Z"},
			{now: "2026-10-25T01:30:00Z", open: true, closes: "2026-10-25T02:00:00Z"},
			{now: "2026-10-25T02:00:00Z", opens: "2026-10-26T01:30:00Z"},
		},
	}, {
		// 2026-09-06: Santiago skips midnight (00:00 -04 becomes 01:00 -03).
		name:    "midnight DST change in Santiago",
		windows: []rampv1.PromotionWindow{pw("0 12 * * 0", h, "America/Santiago")},
		probes: []probe{
			{now: "2026-09-04T12:00:00Z", opens: "2026-09-06T15:00:00Z"},
			{now: "2026-09-06T15:30:00Z", open: true, closes: "2026-09-06T16:00:00Z"},
		},
	}, {
		name:    "hourly for 90m is always open",
		windows: []rampv1.PromotionWindow{pw("0 * * * *", 90*time.Minute, "")},
		probes: []probe{
			{now: "2026-11-23T00:00:00Z", open: true},
			{now: "2026-11-23T00:59:59Z", open: true},
			{now: "2026-11-23T10:15:00Z", open: true},
			{now: "2026-11-28T23:59:59Z", open: true},
		},
	}, {
		name:    "every minute for an hour is always open",
		windows: []rampv1.PromotionWindow{pw("* * * * *", h, "")},
		probes: []probe{
			{now: "2026-11-23T10:15:30Z", open: true},
		},
	}, {
		// Many activations inside one duration: At bisects for the latest.
		name:    "many activations per duration",
		windows: []rampv1.PromotionWindow{pw("*/5 9-10 * * *", 3*h, "")},
		probes: []probe{
			{now: "2026-11-23T08:59:00Z", opens: "2026-11-23T09:00:00Z"},
			{now: "2026-11-23T11:30:00Z", open: true, closes: "2026-11-23T13:55:00Z"},
			{now: "2026-11-23T13:54:59Z", open: true, closes: "2026-11-23T13:55:00Z"},
			{now: "2026-11-23T13:55:00Z", opens: "2026-11-24T09:00:00Z"},
		},
	}, {
		name:    "minute-long openings every minute chain until the last",
		windows: []rampv1.PromotionWindow{pw("* 9-16 * * *", time.Minute, "")},
		probes: []probe{
			{now: "2026-11-23T09:00:30Z", open: true, closes: "2026-11-23T17:00:00Z"},
			{now: "2026-11-23T17:00:00Z", opens: "2026-11-24T09:00:00Z"},
		},
	}, {
		name:    "midnight that does not exist opens at the change",
		windows: []rampv1.PromotionWindow{pw("0 0 * * *", time.Hour, "America/Santiago")},
		probes: []probe{
			{now: "2026-09-05T12:00:00Z", opens: "2026-09-06T04:00:00Z"},
			{now: "2026-09-06T04:00:00Z", open: true, closes: "2026-09-06T05:00:00Z"},
		},
	}, {
		// One more activation in range than At walks before it bisects.
		name:    "nine activations per duration",
		windows: []rampv1.PromotionWindow{pw("0-8 12 * * *", time.Hour, "")},
		probes: []probe{
			{now: "2026-11-23T12:30:00Z", open: true, closes: "2026-11-23T13:08:00Z"},
			{now: "2026-11-23T13:07:00Z", open: true, closes: "2026-11-23T13:08:00Z"},
		},
	}, {
		name: "overlapping windows: the latest close wins",
		windows: []rampv1.PromotionWindow{
			pw("0 9 * * *", 8*h, ""),
			pw("0 12 * * *", 8*h, ""),
		},
		probes: []probe{
			{now: "2026-11-23T08:00:00Z", opens: "2026-11-23T09:00:00Z"},
			{now: "2026-11-23T13:00:00Z", open: true, closes: "2026-11-23T20:00:00Z"},
			// Only the first is open, but the second opens before it closes.
			{now: "2026-11-23T10:00:00Z", open: true, closes: "2026-11-23T20:00:00Z"},
			{now: "2026-11-23T18:00:00Z", open: true, closes: "2026-11-23T20:00:00Z"},
			{now: "2026-11-23T20:00:00Z", opens: "2026-11-24T09:00:00Z"},
		},
	}, {
		name: "overlapping windows, latest close listed first",
		windows: []rampv1.PromotionWindow{
			pw("0 12 * * *", 8*h, ""),
			pw("0 9 * * *", 8*h, ""),
		},
		probes: []probe{
			{now: "2026-11-23T13:00:00Z", open: true, closes: "2026-11-23T20:00:00Z"},
		},
	}, {
		name: "abutting windows chain",
		windows: []rampv1.PromotionWindow{
			pw("0 9 * * *", 2*h, ""),
			pw("0 11 * * *", 2*h, ""),
		},
		probes: []probe{
			{now: "2026-11-23T10:00:00Z", open: true, closes: "2026-11-23T13:00:00Z"},
			{now: "2026-11-23T11:00:00Z", open: true, closes: "2026-11-23T13:00:00Z"},
		},
	}, {
		name: "separate windows: earliest next opening",
		windows: []rampv1.PromotionWindow{
			pw("0 14 * * *", h, ""),
			pw("0 9 * * *", 2*h, ""),
		},
		probes: []probe{
			{now: "2026-11-23T10:00:00Z", open: true, closes: "2026-11-23T11:00:00Z"},
			{now: "2026-11-23T11:30:00Z", opens: "2026-11-23T14:00:00Z"},
			{now: "2026-11-23T15:00:00Z", opens: "2026-11-24T09:00:00Z"},
		},
	}, {
		name:    "activation exactly at now",
		windows: []rampv1.PromotionWindow{pw("30 14 * * *", time.Minute, "")},
		probes: []probe{
			{now: "2026-11-23T14:29:59.999999999Z", opens: "2026-11-23T14:30:00Z"},
			{now: "2026-11-23T14:30:00Z", open: true, closes: "2026-11-23T14:31:00Z"},
			{now: "2026-11-23T14:30:59.999999999Z", open: true, closes: "2026-11-23T14:31:00Z"},
			{now: "2026-11-23T14:31:00Z", opens: "2026-11-24T14:30:00Z"},
		},
	}, {
		name:    "sub-minute duration",
		windows: []rampv1.PromotionWindow{pw("0 12 * * *", 10*time.Second, "")},
		probes: []probe{
			{now: "2026-11-23T12:00:09Z", open: true, closes: "2026-11-23T12:00:10Z"},
			{now: "2026-11-23T12:00:10Z", opens: "2026-11-24T12:00:00Z"},
		},
	}, {
		name:    "window longer than the gap between openings",
		windows: []rampv1.PromotionWindow{pw("0 9 * * 1", 10*24*h, "")},
		probes: []probe{
			{now: "2026-11-28T12:00:00Z", open: true},
		},
	}, {
		name:    "leap day only",
		windows: []rampv1.PromotionWindow{pw("0 0 29 2 *", 24*h, "")},
		probes: []probe{
			{now: "2026-11-23T12:00:00Z", opens: "2028-02-29T00:00:00Z"},
			{now: "2028-02-29T23:00:00Z", open: true, closes: "2028-03-01T00:00:00Z"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProbes(t, mustParse(t, tt.windows...), tt.probes)
		})
	}
}

func TestNilWindows(t *testing.T) {
	var w *Windows
	if got := w.At(time.Now()); got != (State{Open: true}) {
		t.Errorf("nil.At = %+v", got)
	}
	if got := (&Windows{}).At(time.Now()); got != (State{Open: true}) {
		t.Errorf("zero.At = %+v", got)
	}
	if w.Len() != 0 {
		t.Errorf("nil.Len = %d", w.Len())
	}
}

func TestParseErrors(t *testing.T) {
	const h = time.Hour
	tests := []struct {
		name    string
		windows []rampv1.PromotionWindow
		want    []string // substrings of the error, in order of appearance per field error
	}{
		{"4 fields", []rampv1.PromotionWindow{pw("0 9 * * 1", h, ""), pw("* * * *", h, "")},
			[]string{`spec.promotionWindows[1].schedule: expected exactly 5 fields, found 4: "* * * *"`}},
		{"6 fields", []rampv1.PromotionWindow{pw("0 0 9 * * 1", h, "")},
			[]string{`spec.promotionWindows[0].schedule: expected exactly 5 fields, found 6`, "seconds are not supported"}},
		{"minute 61", []rampv1.PromotionWindow{pw("61 9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: minute field "61"`, "above maximum (59)"}},
		{"hour 24", []rampv1.PromotionWindow{pw("0 24 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: hour field "24"`, "above maximum (23)"}},
		{"day of month 0", []rampv1.PromotionWindow{pw("0 9 0 * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: day-of-month field "0"`, "below minimum (1)"}},
		{"month 13", []rampv1.PromotionWindow{pw("0 9 1 13 *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: month field "13"`, "above maximum (12)"}},
		{"day of week 7", []rampv1.PromotionWindow{pw("0 9 * * 7", h, "")},
			[]string{`spec.promotionWindows[0].schedule: day-of-week field "7"`, "above maximum (6)"}},
		{"reversed range", []rampv1.PromotionWindow{pw("0 17-9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: hour field "17-9"`, "beyond end of range"}},
		{"zero step", []rampv1.PromotionWindow{pw("*/0 9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: minute field "*/0"`, "step"}},
		{"garbage", []rampv1.PromotionWindow{pw("every day at nine", h, "")},
			[]string{`spec.promotionWindows[0].schedule: expected exactly 5 fields, found 4`}},
		{"garbage field", []rampv1.PromotionWindow{pw("0 9 * * monday", h, "")},
			[]string{`spec.promotionWindows[0].schedule: day-of-week field "monday"`, "failed to parse int"}},
		{"empty schedule", []rampv1.PromotionWindow{pw("  ", h, "")},
			[]string{`spec.promotionWindows[0].schedule: must not be empty`}},
		{"never activates", []rampv1.PromotionWindow{pw("0 9 30 2 *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: "0 9 30 2 *" never activates`}},
		{"@everyday", []rampv1.PromotionWindow{pw("@everyday", h, "")},
			[]string{`spec.promotionWindows[0].schedule: unknown descriptor "@everyday"`}},
		{"@every", []rampv1.PromotionWindow{pw("@every 1h", h, "")},
			[]string{`spec.promotionWindows[0].schedule: @every is not supported`}},
		{"@every with prefix", []rampv1.PromotionWindow{pw("CRON_TZ=UTC @every 1h", h, "")},
			[]string{`spec.promotionWindows[0].schedule: @every is not supported`}},
		{"unknown descriptor", []rampv1.PromotionWindow{pw("@fortnightly", h, "")},
			[]string{`spec.promotionWindows[0].schedule: unknown descriptor "@fortnightly"`}},
		{"descriptor with arguments", []rampv1.PromotionWindow{pw("@daily 9", h, "")},
			[]string{`spec.promotionWindows[0].schedule: a descriptor takes no arguments`}},
		{"unknown time zone", []rampv1.PromotionWindow{pw("0 9 * * *", h, "Mars/Base")},
			[]string{`spec.promotionWindows[0].timeZone: unknown time zone "Mars/Base"`}},
		{"Local time zone", []rampv1.PromotionWindow{pw("0 9 * * *", h, "Local")},
			[]string{`spec.promotionWindows[0].timeZone: time zone "Local" is not allowed`}},
		{"unknown CRON_TZ", []rampv1.PromotionWindow{pw("CRON_TZ=Mars/Base 0 9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: unknown time zone "Mars/Base"`}},
		{"CRON_TZ without zone", []rampv1.PromotionWindow{pw("CRON_TZ= 0 9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: CRON_TZ= must be followed by a time zone name`}},
		{"CRON_TZ without expression", []rampv1.PromotionWindow{pw("CRON_TZ=Europe/Paris", h, "")},
			[]string{`spec.promotionWindows[0].schedule: missing cron expression after CRON_TZ=Europe/Paris`}},
		{"TZ without expression", []rampv1.PromotionWindow{pw("TZ=UTC", h, "")},
			[]string{`spec.promotionWindows[0].schedule: missing cron expression after TZ=UTC`}},
		{"two prefixes", []rampv1.PromotionWindow{pw("CRON_TZ=UTC TZ=UTC 0 9 * * *", h, "")},
			[]string{`spec.promotionWindows[0].schedule: more than one time zone prefix`}},
		{"prefix conflicts with timeZone", []rampv1.PromotionWindow{pw("CRON_TZ=Europe/Paris 0 9 * * *", h, "Europe/Berlin")},
			[]string{`spec.promotionWindows[0].timeZone: "Europe/Berlin" conflicts with the schedule's time zone prefix "Europe/Paris"`}},
		{"duration 0", []rampv1.PromotionWindow{pw("0 9 * * *", 0, "")},
			[]string{`spec.promotionWindows[0].duration: must be positive, got "0s"`}},
		{"negative duration", []rampv1.PromotionWindow{pw("0 9 * * *", -h, "")},
			[]string{`spec.promotionWindows[0].duration: must be positive, got "-1h0m0s"`}},
		{"every error is reported", []rampv1.PromotionWindow{
			pw("0 9 * * *", 0, "Mars/Base"),
			pw("0 9 * * *", h, ""),
			pw("0 9 * *", h, ""),
		}, []string{
			`spec.promotionWindows[0].duration: must be positive`,
			`spec.promotionWindows[0].timeZone: unknown time zone "Mars/Base"`,
			`spec.promotionWindows[2].schedule: expected exactly 5 fields, found 4`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Parse(tt.windows)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", w)
			}
			if w != nil {
				t.Errorf("Parse returned windows with an error")
			}
			msg := err.Error()
			rest := msg
			for _, want := range tt.want {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("error %q does not contain %q (in order)", msg, want)
				}
				rest = rest[i+len(want):]
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *FieldError", err)
			} else if !strings.HasPrefix(msg, fe.Field+": ") {
				t.Errorf("error %q does not start with its field %q", msg, fe.Field)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans lines", msg)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, s := range []string{
		"0 9 * * 1-5",
		"  0   9\t* *  MON-FRI ",
		"0 9 * jan-mar,oct mon,wed",
		"*/15 9-17 1,15 * ?",
		"0 0 29 2 *",
		"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
		"CRON_TZ=America/New_York 0 9 * * *",
		"TZ=Asia/Kolkata @daily",
		"CRON_TZ=UTC 0 9 * * *",
	} {
		if _, err := Parse([]rampv1.PromotionWindow{pw(s, time.Hour, "")}); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
	if _, err := Parse([]rampv1.PromotionWindow{pw("0 9 * * *", time.Hour, "UTC")}); err != nil {
		t.Errorf("timeZone UTC: %v", err)
	}
	if w, err := Parse(nil); err != nil || w.Len() != 0 {
		t.Errorf("Parse(nil) = %v, %v", w, err)
	}
}

func TestMessage(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		s    State
		want string
	}{
		{State{OpensAt: time.Date(2026, 11, 24, 10, 0, 0, 0, paris)}, "outside promotion windows; next window opens at 2026-11-24T09:00:00Z"},
		{State{}, "outside promotion windows; no window opens in the next five years"},
		{State{Open: true, ClosesAt: time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC)}, "inside a promotion window until 2026-11-24T17:00:00Z"},
		{State{Open: true}, "promotion windows allow promotion at this time"},
	} {
		if got := tt.s.Message(); got != tt.want {
			t.Errorf("Message() = %q, want %q", got, tt.want)
		}
	}
}

// TestNextMatchesBruteForce checks next against a minute-by-minute scan of wall clocks around
// daylight-saving changes, with the documented rules: a local time that occurs twice
// activates twice; local times a forward change skips activate at the change.
func TestNextMatchesBruteForce(t *testing.T) {
	zones := []struct {
		zone       string
		from, till string
	}{
		{"Europe/Paris", "2026-03-27T00:00:00Z", "2026-04-01T00:00:00Z"},
		{"Europe/Paris", "2026-10-23T00:00:00Z", "2026-10-28T00:00:00Z"},
		{"America/Santiago", "2026-09-03T00:00:00Z", "2026-09-09T00:00:00Z"},
		{"America/Santiago", "2026-04-02T00:00:00Z", "2026-04-07T00:00:00Z"},
		{"Australia/Lord_Howe", "2026-10-02T00:00:00Z", "2026-10-06T00:00:00Z"}, // 30-minute change
		{"Asia/Kathmandu", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"},      // +05:45
		{"UTC", "2026-02-26T00:00:00Z", "2026-03-03T00:00:00Z"},
		// After 2037 zones follow their rule; 2056 is a leap year.
		{"America/Santiago", "2056-12-28T00:00:00Z", "2057-01-04T00:00:00Z"},
		{"Europe/Paris", "2056-12-28T00:00:00Z", "2057-01-04T00:00:00Z"},
		{"Europe/Paris", "2056-03-24T00:00:00Z", "2056-03-28T00:00:00Z"},
	}
	schedules := []string{"30 2 * * *", "0 * * * *", "*/20 0-3 * * *", "0 12 * * 0", "15 2 25 10 *", "0 0 * * *", "45 1 * * 0,6", "@hourly", "0 0 1 1 0"}
	for _, z := range zones {
		loc, err := time.LoadLocation(z.zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range schedules {
			w := mustParse(t, pw(s, time.Hour, z.zone)).windows[0]
			from, till := ts(t, z.from), ts(t, z.till)

			var want []time.Time
			for m := from; m.Before(till); m = m.Add(time.Minute) {
				l := m.In(loc)
				if matches(&w, l) {
					want = append(want, m)
					continue
				}
				// A forward change at m: the skipped local times activate at m.
				_, off := l.Zone()
				_, prev := m.Add(-time.Second).In(loc).Zone()
				if off > prev {
					start := m.In(time.FixedZone("", prev))
					for k := time.Duration(0); k < time.Duration(off-prev)*time.Second; k += time.Minute {
						if matches(&w, start.Add(k)) {
							want = append(want, m)
							break
						}
					}
				}
			}

			var got []time.Time
			for n := w.next(from.Add(-time.Nanosecond)); !n.IsZero() && n.Before(till); n = w.next(n) {
				got = append(got, n)
			}
			if len(got) != len(want) {
				t.Errorf("%s in %s: got %d activations, want %d\ngot  %v\nwant %v", s, z.zone, len(got), len(want), got, want)
				continue
			}
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Errorf("%s in %s: activation %d = %v, want %v", s, z.zone, i, got[i], want[i])
				}
			}
		}
	}
}

// matches reports whether wall clock l matches the schedule, per cron's rules.
func matches(w *window, l time.Time) bool {
	s := &w.spec
	bit := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	if l.Second() != 0 || !bit(s.Minute, l.Minute()) || !bit(s.Hour, l.Hour()) || !bit(s.Month, int(l.Month())) {
		return false
	}
	dom, dow := bit(s.Dom, l.Day()), bit(s.Dow, int(l.Weekday()))
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// TestInvariants checks, over many times, that At agrees with itself: a window reported to
// open at OpensAt is open then and closed just before; a stretch reported to close at
// ClosesAt is closed then and open just before.
func TestInvariants(t *testing.T) {
	w := mustParse(t,
		pw("30 2 * * *", 45*time.Minute, "Europe/Paris"),
		pw("0 9-17/4 * * 1-5", 3*time.Hour, "America/New_York"),
		pw("*/10 3 * * 0", 5*time.Minute, "Australia/Lord_Howe"),
	)
	start := ts(t, "2026-03-01T00:00:00Z")
	for now := start; now.Before(start.Add(300 * 24 * time.Hour)); now = now.Add(37*time.Minute + 13*time.Second) {
		checkInvariants(t, w, now)
	}
}

func checkInvariants(t testing.TB, w *Windows, now time.Time) {
	t.Helper()
	s := w.At(now)
	switch {
	case s.Open:
		if !s.OpensAt.IsZero() {
			t.Fatalf("At(%v) open with OpensAt %v", now, s.OpensAt)
		}
		if !s.ClosesAt.IsZero() {
			if !s.ClosesAt.After(now) {
				t.Fatalf("At(%v): ClosesAt %v not after now", now, s.ClosesAt)
			}
			if w.At(s.ClosesAt).Open {
				t.Fatalf("At(%v): still open at ClosesAt %v", now, s.ClosesAt)
			}
			if !w.At(s.ClosesAt.Add(-time.Nanosecond)).Open {
				t.Fatalf("At(%v): closed before ClosesAt %v", now, s.ClosesAt)
			}
		}
	case !s.OpensAt.IsZero():
		if !s.ClosesAt.IsZero() {
			t.Fatalf("At(%v) closed with ClosesAt %v", now, s.ClosesAt)
		}
		if !s.OpensAt.After(now) {
			t.Fatalf("At(%v): OpensAt %v not after now", now, s.OpensAt)
		}
		if !w.At(s.OpensAt).Open {
			t.Fatalf("At(%v): not open at OpensAt %v", now, s.OpensAt)
		}
		if before := s.OpensAt.Add(-time.Nanosecond); w.At(before).Open {
			t.Fatalf("At(%v): already open before OpensAt %v", now, s.OpensAt)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"0 9 * * 1-5", "CRON_TZ=Europe/Paris 30 2 * * *", "TZ=America/Santiago 0 0 * * 0", "@daily",
		"@every 1h", "* * * *", "61 * * * *", "0 0 29 2 *", "*/7 */5 */3 */2 */4", "CRON_TZ=", "TZ=UTC",
		"0 0 31 2 *", "1-2-3 * * * *", "0/0 * * * *", "CRON_TZ=UTC TZ=UTC * * * * *", "\t@hourly\n",
	} {
		f.Add(s, uint8(0), int64(60), int64(1795000000))
	}
	f.Add("0 9 * * *", uint8(1), int64(-5), int64(0))
	f.Add("0 0 1 1 0", uint8(3), int64(129), int64(1794999953)) // Santiago, leap year after 2037
	f.Add("* * * * *", uint8(2), int64(1<<40), int64(-1))
	zones := []string{"", "UTC", "Europe/Paris", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "Mars/Base"}
	f.Fuzz(func(t *testing.T, schedule string, zone uint8, minutes int64, unix int64) {
		tz := zones[int(zone)%len(zones)]
		d := time.Duration(minutes) * time.Minute
		if minutes > 1<<20 || minutes < -(1<<20) { // keep clear of overflow: at most ~2 years
			d = time.Duration(minutes % (1 << 20) * int64(time.Minute))
		}
		w, err := Parse([]rampv1.PromotionWindow{pw(schedule, d, tz)})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "spec.promotionWindows[0].") {
				t.Fatalf("error %q does not name its field", err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("Parse accepted duration %v", d)
		}
		// Times between 2000 and 2100.
		base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(uint64(unix)%uint64(100*365*24*time.Hour/time.Second)) * time.Second)
		for _, now := range []time.Time{base, base.Add(7*time.Hour + 30*time.Minute), base.Add(183 * 24 * time.Hour)} {
			checkInvariants(t, w, now)
			s := w.At(now)
			if !s.Open && s.OpensAt.IsZero() && now.Year() < 2090 {
				t.Fatalf("At(%v) closed and never opens for %q", now, schedule)
			}
		}
	})
}

func BenchmarkAt(b *testing.B) {
	for _, bb := range []struct {
		name    string
		windows []rampv1.PromotionWindow
	}{
		{"weekdays-utc", []rampv1.PromotionWindow{pw("0 9 * * 1-5", 8*time.Hour, "")}},
		{"weekdays-paris", []rampv1.PromotionWindow{pw("0 9 * * 1-5", 8*time.Hour, "Europe/Paris")}},
		{"three-windows", []rampv1.PromotionWindow{
			pw("0 9 * * 1-5", 8*time.Hour, "Europe/Paris"),
			pw("0 14 * * 1-5", 2*time.Hour, "America/New_York"),
			pw("30 2 * * 6", time.Hour, "Asia/Tokyo"),
		}},
		{"hourly-90m-always-open", []rampv1.PromotionWindow{pw("0 * * * *", 90*time.Minute, "")}},
		{"every-minute-1h-always-open", []rampv1.PromotionWindow{pw("* * * * *", time.Hour, "Europe/Paris")}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			w := mustParse(b, bb.windows...)
			now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w.At(now.Add(time.Duration(i%(7*24*60)) * time.Minute))
				i++
			}
		})
	}
}
