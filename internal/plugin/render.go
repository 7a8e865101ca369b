package plugin

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// This file is the pure part of the plugin: Rollout (and events) in, text out. It reads no
// clock and no environment, so it is covered by golden tests.

// Event is a Kubernetes event about a Rollout, from core/v1 or events.k8s.io/v1.
type Event struct {
	UID     string
	Type    string // Normal or Warning
	Reason  string
	Message string
	Count   int32
	Time    time.Time // when it last happened
}

// maxEvents is how many events status shows.
const maxEvents = 5

// ANSI colours.
const (
	colGreen  = "32"
	colYellow = "33"
	colRed    = "31"
	colBold   = "1"
)

// painter colours text when enabled.
type painter bool

func (p painter) paint(color, s string) string {
	if !p || color == "" || s == "" {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}

func phaseColor(phase string) string {
	switch phase {
	case rampv1.PhaseSucceeded, rampv1.PhaseIdle:
		return colGreen
	case rampv1.PhaseRollingBack, rampv1.PhaseFailed:
		return colRed
	case "":
		return ""
	default:
		return colYellow
	}
}

func verdictColor(v string) string {
	switch v {
	case rampv1.VerdictPassed:
		return colGreen
	case rampv1.VerdictFailed:
		return colRed
	case rampv1.VerdictInconclusive:
		return colYellow
	}
	return ""
}

func conditionColor(c metav1.Condition) string {
	switch {
	case c.Type == "Ready" && c.Status == metav1.ConditionTrue:
		return colGreen
	case c.Type == "Stalled" && c.Status == metav1.ConditionTrue:
		return colRed
	case c.Status == metav1.ConditionTrue && c.Type == "Reconciling", c.Status != metav1.ConditionTrue && c.Type == "Ready":
		return colYellow
	}
	return ""
}

// cell is one table cell: its text and colour.
type cell struct{ text, color string }

func tc(text string) cell        { return cell{text: text} }
func cc(text, color string) cell { return cell{text: text, color: color} }
func row(cells ...cell) []cell   { return cells }
func width(s string) int         { return utf8.RuneCountInString(s) }
func pad(s string, w int) string { return s + strings.Repeat(" ", max(0, w-width(s))) }
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
func age(now time.Time, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

// table writes rows with columns aligned on the text's width (colours excluded); the last
// column is not padded.
func table(b *strings.Builder, p painter, indent string, rows [][]cell) {
	var widths []int
	for _, r := range rows {
		for i, cl := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(cl.text))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		line.WriteString(indent)
		for i, cl := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			// Colour the text only, not the padding.
			line.WriteString(p.paint(cl.color, cl.text))
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-width(cl.text)))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// InProgress reports whether a rollout is under way (promote, abort and pause apply).
func InProgress(phase string) bool {
	switch phase {
	case rampv1.PhaseProgressing, rampv1.PhasePaused, rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting:
		return true
	}
	return false
}

// promotionStage reports whether the stage is part of promotion (after the last step).
func promotionStage(stage string) bool {
	switch stage {
	case plan.StageRoutingToCanary, plan.StageUpdatingStable, plan.StageSwitchingStableSubset, plan.StageRoutingToStable:
		return true
	}
	return false
}

// Position says where a rollout is, briefly: "step 2/3", "preview", "promotion", ... It is
// used in status and in the plugin's request answers ("promoted: step 2/3 → 3/3").
func Position(ro *rampv1.Rollout) string {
	st := &ro.Status
	switch {
	case st.Phase == rampv1.PhaseRollingBack:
		return "rolling back"
	case st.Phase == rampv1.PhaseFailed:
		return "failed (rolled back)"
	case st.Phase == rampv1.PhasePromoting || promotionStage(st.Stage):
		if ro.Spec.Strategy.BlueGreen != nil {
			return "flip"
		}
		return "promotion"
	case !InProgress(st.Phase):
		return strings.ToLower(orDash(st.Phase))
	case ro.Spec.Strategy.BlueGreen != nil:
		return "preview"
	}
	return fmt.Sprintf("step %d/%d", st.CurrentStep, st.Steps)
}

// atText is where a rollout is and its status message, without saying the position twice
// ("step 3/3: 100% to canary", not "step 3/3: step 3/3: 100% to canary").
func atText(ro *rampv1.Rollout) string {
	pos := Position(ro)
	msg := strings.TrimPrefix(ro.Status.Message, pos+": ")
	if msg == "" || msg == pos {
		return pos
	}
	return pos + ": " + msg
}

// StepShort is "k/n", or "-" when no rollout runs.
func StepShort(st *rampv1.RolloutStatus) string {
	if st.Steps == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", st.CurrentStep, st.Steps)
}

// stepMark is the state of a step or of promotion in the progress view.
type stepMark int

const (
	markPending stepMark = iota
	markDone
	markCurrent
	markFailed
)

// String names the mark as the dashboard's page does: done, current, failed, pending.
func (m stepMark) String() string {
	switch m {
	case markDone:
		return "done"
	case markCurrent:
		return "current"
	case markFailed:
		return "failed"
	}
	return "pending"
}

func (m stepMark) cell() cell {
	switch m {
	case markDone:
		return cc("✔", colGreen)
	case markCurrent:
		return cc("▶", colYellow)
	case markFailed:
		return cc("✘", colRed)
	}
	return tc("·")
}

// marks says, for n steps and the promotion after them, which are done, current, failed or
// pending.
func marks(st *rampv1.RolloutStatus, n int) (steps []stepMark, promotion stepMark) {
	steps = make([]stepMark, n)
	cur := int(st.CurrentStep)
	inPromotion := st.Phase == rampv1.PhasePromoting || promotionStage(st.Stage)
	switch st.Phase {
	case rampv1.PhaseSucceeded:
		for i := range steps {
			steps[i] = markDone
		}
		return steps, markDone
	case rampv1.PhaseProgressing, rampv1.PhasePaused, rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting,
		rampv1.PhaseRollingBack, rampv1.PhaseFailed:
	default: // no rollout: the plan only
		return steps, markPending
	}
	if cur == 0 && !inPromotion {
		return steps, markPending
	}
	failed := st.Phase == rampv1.PhaseRollingBack || st.Phase == rampv1.PhaseFailed
	here := markCurrent
	if failed {
		here = markFailed
	}
	for i := range steps {
		switch {
		case inPromotion || i+1 < cur:
			steps[i] = markDone
		case i+1 == cur:
			steps[i] = here
		}
	}
	if inPromotion {
		return steps, here
	}
	return steps, markPending
}

func pauseText(p *rampv1.Pause) string {
	switch {
	case p == nil:
		return ""
	case p.Duration == nil:
		return "pause until promoted"
	}
	return "pause " + shortDuration(p.Duration.Duration)
}

// shortDuration prints 2m rather than 2m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func headerText(h *rampv1.HeaderMatch) string {
	if h == nil {
		return rampv1.DefaultPreviewHeader + ": \"true\""
	}
	switch {
	case h.Exact != nil:
		return fmt.Sprintf("%s: %q", h.Name, *h.Exact)
	case h.Prefix != nil:
		return fmt.Sprintf("%s: %q*", h.Name, *h.Prefix)
	case h.Regex != nil:
		return fmt.Sprintf("%s ~ %q", h.Name, *h.Regex)
	}
	return h.Name
}

// strategyText summarises the strategy: "canary, 3 steps, analysis every 1m".
func strategyText(spec *rampv1.RolloutSpec) string {
	var parts []string
	if bg := spec.Strategy.BlueGreen; bg != nil {
		parts = append(parts, "blue/green (preview → flip)")
	} else {
		n := len(spec.CanarySteps())
		parts = append(parts, fmt.Sprintf("canary, %d %s", n, plural(n, "step", "steps")))
		if hm := spec.Strategy.Canary; hm != nil && hm.HeaderMatch != nil {
			parts = append(parts, "header "+headerText(hm.HeaderMatch)+" always to canary")
		}
	}
	if a := spec.Analysis; a != nil && len(a.Metrics) > 0 {
		parts = append(parts, fmt.Sprintf("analysis every %s", shortDuration(a.IntervalOrDefault())))
	}
	if len(spec.PromotionWindows) > 0 {
		n := len(spec.PromotionWindows)
		parts = append(parts, fmt.Sprintf("%d %s", n, plural(n, "promotion window", "promotion windows")))
	}
	return strings.Join(parts, ", ")
}

// pendingRequests lists the request annotations the controller has not acknowledged yet.
func pendingRequests(ro *rampv1.Rollout) []string {
	h := ro.Status.HandledRequests
	var out []string
	for _, r := range []struct {
		verb, key, handled string
	}{
		{"promote", rampv1.AnnotationPromote, h.Promote},
		{"promote --full", rampv1.AnnotationPromoteFull, h.PromoteFull},
		{"abort", rampv1.AnnotationAbort, h.Abort},
		{"retry", rampv1.AnnotationRetry, h.Retry},
	} {
		if tok := ro.Annotations[r.key]; tok != "" && tok != r.handled {
			out = append(out, fmt.Sprintf("%s (%s=%s) not yet acknowledged", r.verb, r.key, tok))
		}
	}
	return out
}

// RenderStatus renders `kubectl ramp status`: where the rollout is, its steps, traffic,
// revisions, analysis, conditions and the latest events (newest last).
func RenderStatus(ro *rampv1.Rollout, events []Event, now time.Time, color bool) string {
	p := painter(color)
	st := &ro.Status
	spec := &ro.Spec
	var b strings.Builder

	head := [][]cell{
		row(tc("Rollout"), cc(ro.Namespace+"/"+ro.Name, colBold)),
		row(tc("Target"), tc("Deployment/"+spec.TargetRef.Name)),
		row(tc("Strategy"), tc(strategyText(spec))),
		row(tc("Phase"), cc(orDash(st.Phase), phaseColor(st.Phase))),
	}
	if st.Message != "" {
		head = append(head, row(tc("Message"), tc(st.Message)))
	}
	if st.Stage != "" && (InProgress(st.Phase) || st.Phase == rampv1.PhaseRollingBack) {
		s := st.Stage
		if st.StageStartedAt != nil {
			s += " for " + age(now, st.StageStartedAt.Time)
		}
		head = append(head, row(tc("Stage"), tc(s)))
	}
	head = append(head, row(tc("Traffic"), tc(trafficText(ro))))
	head = append(head, row(tc("Stable"), tc("revision "+orDash(st.StableRevision)+podHash(st.StablePodTemplateHash))))
	if st.CanaryRevision != "" {
		head = append(head, row(tc("Canary"), tc("revision "+st.CanaryRevision+" (Deployment/"+ro.CanaryName()+")")))
	}
	if a := spec.Analysis; a != nil {
		failed := fmt.Sprintf("failed %d/%d", st.FailedChecks, a.FailureLimitOrDefault())
		incon := fmt.Sprintf("inconclusive %d/%d", st.InconclusiveChecks, a.InconclusiveLimitOrDefault())
		fc, ic := "", ""
		if st.FailedChecks > 0 {
			fc = colRed
		}
		if st.InconclusiveChecks > 0 {
			ic = colYellow
		}
		head = append(head, row(tc("Checks"), cell{text: failed + ", " + incon + " (rolls back at the limit)"}))
		// Colour the two counts separately: rebuild the cell's text with paint codes only
		// when colour is on, so the plain width stays right.
		if color && (fc != "" || ic != "") {
			last := head[len(head)-1]
			last[1] = cell{text: p.paint(fc, failed) + ", " + p.paint(ic, incon) + " (rolls back at the limit)"}
		}
	}
	if g := st.Gates; g != nil {
		head = append(head, gateRows(g, now)...)
	}
	var reqs []string
	if spec.Paused {
		reqs = append(reqs, "paused by spec.paused (Git)")
	}
	if ro.Annotations[rampv1.AnnotationPaused] == "true" {
		if by := pauseWriter(ro); by == "kubectl ramp pause" {
			reqs = append(reqs, "paused by kubectl ramp pause ("+rampv1.AnnotationPaused+")")
		} else {
			reqs = append(reqs, "paused by "+by)
		}
	}
	reqs = append(reqs, pendingRequests(ro)...)
	for i, r := range reqs {
		k := ""
		if i == 0 {
			k = "Requests"
		}
		head = append(head, row(tc(k), cc(r, colYellow)))
	}
	kvTable(&b, p, head)

	b.WriteString("\nSteps:\n")
	renderSteps(&b, p, ro)

	if len(st.LastAnalysis) > 0 {
		title := "\nAnalysis"
		if st.LastAnalysisTime != nil {
			title += " (last round " + age(now, st.LastAnalysisTime.Time) + " ago)"
		}
		b.WriteString(title + ":\n")
		rows := [][]cell{row(tc("METRIC"), tc("VALUE"), tc("STABLE"), tc("THRESHOLD"), tc("VERDICT"), tc("AGE"), tc("MESSAGE"))}
		for _, m := range st.LastAnalysis {
			rows = append(rows, row(tc(m.Name), tc(orDash(m.Value)), tc(orDash(m.StableValue)), tc(orDash(m.Threshold)),
				cc(m.Verdict, verdictColor(m.Verdict)), tc(age(now, m.Time.Time)), tc(m.Message)))
		}
		table(&b, p, "  ", trimEmptyLastColumn(rows))
	}

	if len(st.Conditions) > 0 {
		b.WriteString("\nConditions:\n")
		rows := [][]cell{row(tc("TYPE"), tc("STATUS"), tc("REASON"), tc("AGE"), tc("MESSAGE"))}
		for _, cd := range st.Conditions {
			rows = append(rows, row(tc(cd.Type), cc(string(cd.Status), conditionColor(cd)), tc(cd.Reason),
				tc(age(now, cd.LastTransitionTime.Time)), tc(cd.Message)))
		}
		table(&b, p, "  ", rows)
	}

	b.WriteString("\nEvents:")
	if len(events) == 0 {
		b.WriteString(" <none>\n")
		return b.String()
	}
	b.WriteString("\n")
	events = latestEvents(events, maxEvents)
	rows := [][]cell{row(tc("AGE"), tc("TYPE"), tc("REASON"), tc("MESSAGE"))}
	for _, e := range events {
		typ := e.Type
		col := ""
		if typ == "Warning" {
			col = colYellow
		}
		a := age(now, e.Time)
		if e.Count > 1 {
			a += fmt.Sprintf(" (x%d)", e.Count)
		}
		rows = append(rows, row(tc(a), cc(typ, col), tc(e.Reason), tc(e.Message)))
	}
	table(&b, p, "  ", rows)
	return b.String()
}

// kvTable writes the head block: "Key:" then the value, aligned.
func kvTable(b *strings.Builder, p painter, rows [][]cell) {
	for i := range rows {
		if rows[i][0].text != "" {
			rows[i][0].text += ":"
		}
	}
	// The value cell may hold paint codes already (Checks); table pads only non-last cells,
	// so it is safe as the last one.
	table(b, p, "", rows)
}

func podHash(h string) string {
	if h == "" {
		return ""
	}
	return " (pod-template-hash " + h + ")"
}

func trafficText(ro *rampv1.Rollout) string {
	st := &ro.Status
	w := st.CanaryWeight
	if ro.Spec.Strategy.BlueGreen != nil && InProgress(st.Phase) && w == 0 {
		return fmt.Sprintf("stable 100%%, new version on preview header %s", headerText(ro.Spec.Strategy.BlueGreen.PreviewHeader))
	}
	if w == 0 && !InProgress(st.Phase) {
		return "stable 100%"
	}
	return fmt.Sprintf("stable %d%%, canary %d%%", 100-w, w)
}

// stepLine is one line of a rollout's step timeline: a step (blue/green: preview, flip),
// or the promotion after the steps, and its state. status renders it as text, the dashboard
// (kubectl ramp dashboard) as HTML.
type stepLine struct {
	mark    stepMark
	label   string // "2/3", "promote", "preview", "flip"
	traffic string // "25%", "mirror 5%"; "" for blue/green, whose notes say it
	notes   string // "pause 2m, no analysis"; blue/green: what the point does
	here    string // on the current line, its stage; on the failed line, "failed here"
}

// stepLines is a rollout's step timeline (blue/green: preview and flip), then promotion.
func stepLines(ro *rampv1.Rollout) []stepLine {
	st := &ro.Status
	spec := &ro.Spec
	var lines []stepLine
	if bg := spec.Strategy.BlueGreen; bg != nil {
		sm, pm := marks(st, 1)
		preview := "new version at full size on header " + headerText(bg.PreviewHeader) + ", stable keeps 100%"
		if pt := pauseText(bg.PrePromotionPause); pt != "" {
			preview += "; " + pt
		}
		lines = []stepLine{
			{mark: sm[0], label: "preview", notes: preview},
			{mark: pm, label: "flip", notes: "100% to the new version at once, then the target is updated"},
		}
	} else {
		steps := spec.CanarySteps()
		sm, pm := marks(st, len(steps))
		n := len(steps)
		for i, s := range steps {
			var notes []string
			if pt := pauseText(s.Pause); pt != "" {
				notes = append(notes, pt)
			}
			if s.SkipAnalysis && spec.Analysis != nil {
				notes = append(notes, "no analysis")
			}
			if s.FaultInjection != nil {
				notes = append(notes, "fault injection")
			}
			traffic := fmt.Sprintf("%d%%", s.SetWeight)
			if s.Mirror != nil {
				traffic = fmt.Sprintf("mirror %g%%", s.Mirror.Percentage)
			}
			lines = append(lines, stepLine{mark: sm[i], label: fmt.Sprintf("%d/%d", i+1, n), traffic: traffic, notes: strings.Join(notes, ", ")})
		}
		lines = append(lines, stepLine{mark: pm, label: "promote", traffic: "100%", notes: "then the target is updated and takes the traffic back"})
	}
	for i := range lines {
		switch lines[i].mark {
		case markFailed:
			lines[i].here = "failed here"
		case markCurrent:
			lines[i].here = st.Stage
		}
	}
	return lines
}

func renderSteps(b *strings.Builder, p painter, ro *rampv1.Rollout) {
	bg := ro.Spec.Strategy.BlueGreen != nil
	var rows [][]cell
	for _, l := range stepLines(ro) {
		r := row(l.mark.cell(), tc(l.label))
		if !bg {
			r = append(r, tc(l.traffic))
		}
		last := l.notes
		if l.here != "" {
			if last != "" {
				last += "  "
			}
			last += "← " + l.here
		}
		rows = append(rows, append(r, tc(last)))
	}
	table(b, p, "  ", rows)
}

// trimEmptyLastColumn drops the last column when only its header is set.
func trimEmptyLastColumn(rows [][]cell) [][]cell {
	for _, r := range rows[1:] {
		if r[len(r)-1].text != "" {
			return rows
		}
	}
	for i := range rows {
		rows[i] = rows[i][:len(rows[i])-1]
	}
	return rows
}

// latestEvents sorts events oldest first and keeps the last n.
func latestEvents(events []Event, n int) []Event {
	ev := append([]Event(nil), events...)
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].Time.Before(ev[j].Time) })
	if len(ev) > n {
		ev = ev[len(ev)-n:]
	}
	return ev
}

// RenderList renders `kubectl ramp list`: NAME, PHASE, WEIGHT, STEP (k/n), AGE, with a
// NAMESPACE column first for all namespaces.
func RenderList(items []rampv1.Rollout, now time.Time, allNamespaces, color bool) string {
	p := painter(color)
	if len(items) == 0 {
		return ""
	}
	items = append([]rampv1.Rollout(nil), items...)
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	head := row(tc("NAME"), tc("PHASE"), tc("WEIGHT"), tc("STEP"), tc("AGE"))
	if allNamespaces {
		head = append(row(tc("NAMESPACE")), head...)
	}
	rows := [][]cell{head}
	for _, ro := range items {
		st := &ro.Status
		r := row(tc(ro.Name), cc(orDash(st.Phase), phaseColor(st.Phase)), tc(fmt.Sprintf("%d%%", st.CanaryWeight)),
			tc(StepShort(st)), tc(age(now, ro.CreationTimestamp.Time)))
		if allNamespaces {
			r = append(row(tc(ro.Namespace)), r...)
		}
		rows = append(rows, r)
	}
	var b strings.Builder
	table(&b, p, "", rows)
	return b.String()
}

// gateRows shows the gates of the current point: those that passed, and each holding one
// with its last call's result (a status code or an error class, never a body).
func gateRows(g *rampv1.GateStatus, now time.Time) [][]cell {
	at := g.At
	if g.Step > 0 {
		at += fmt.Sprintf(" (step %d)", g.Step)
	}
	var rows [][]cell
	key := func() cell {
		if len(rows) == 0 {
			return tc("Gates")
		}
		return tc("")
	}
	if len(g.Passed) > 0 {
		rows = append(rows, row(key(), cc(at+": passed "+strings.Join(g.Passed, ", "), colGreen)))
	}
	for _, h := range g.Held {
		rows = append(rows, row(key(), cc(fmt.Sprintf("%s: %s holds (%s, %s ago)", at, h.Name, h.Result, age(now, h.At.Time)), colYellow)))
	}
	return rows
}
