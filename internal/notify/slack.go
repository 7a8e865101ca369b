// Package notify tells people about rollout transitions through Slack incoming webhooks.
// Delivery is asynchronous with retries: a slow or failing Slack never holds a rollout back.
package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Notification is one rollout transition.
type Notification struct {
	Rollout, Namespace string
	// Reason is the transition (the Kubernetes event reason), Message its text.
	Reason, Message string
	Warning         bool
	Phase           string
	// Step is "k/n" or empty.
	Step         string
	CanaryWeight int32
	Revision     string
	// Image is the canary's image(s), when known.
	Image string
	// Metrics are the last analysis results worth showing (failed or inconclusive first).
	Metrics []rampv1.MetricResult
	Time    time.Time
}

// Reasons that are notified: started, step advanced, paused or waiting for a window,
// promoted, analysis failed, a gate holding or failing, rolling back and rolled back.
var notified = map[string]bool{
	"GateHeld": true, "GateFailed": true,
	"RolloutStarted": true, "RolloutRestarted": true, "StepStarted": true, "Paused": true,
	"WaitingForWindow": true, "PromotionStarted": true, "Promoted": true,
	"AnalysisFailed": true, "AnalysisInconclusive": true, "ProgressDeadlineExceeded": true,
	"AbortRequested": true, "RolledBack": true, "RolloutCancelled": true,
}

// Notifies reports whether a transition with this event reason is sent.
func Notifies(reason string) bool { return notified[reason] }

// SlackPayload renders n as a Slack message with Block Kit blocks and a plain-text fallback.
func SlackPayload(n Notification) map[string]any {
	icon := ":large_blue_circle:"
	switch {
	case n.Reason == "Promoted":
		icon = ":white_check_mark:"
	case n.Warning:
		icon = ":red_circle:"
	}
	title := fmt.Sprintf("%s %s/%s: %s", icon, n.Namespace, n.Rollout, humanReason(n.Reason))
	fields := []any{
		mrkdwn("*Rollout*\n" + n.Namespace + "/" + n.Rollout),
		mrkdwn("*Phase*\n" + orDash(n.Phase)),
		mrkdwn(fmt.Sprintf("*Canary weight*\n%d%%", n.CanaryWeight)),
		mrkdwn("*Step*\n" + orDash(n.Step)),
		mrkdwn("*Revision*\n" + orDash(n.Revision)),
	}
	if n.Image != "" {
		fields = append(fields, mrkdwn("*Image*\n`"+n.Image+"`"))
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(strings.TrimSpace(strings.TrimPrefix(title, icon)), 150)}},
		map[string]any{"type": "section", "text": mrkdwn(escape(n.Message)), "fields": fields},
	}
	if len(n.Metrics) > 0 {
		var b strings.Builder
		for _, m := range n.Metrics {
			fmt.Fprintf(&b, "%s *%s* %s", verdictIcon(m.Verdict), escape(m.Name), orDash(m.Value))
			if m.Threshold != "" {
				fmt.Fprintf(&b, " (threshold %s)", escape(m.Threshold))
			}
			if m.StableValue != "" {
				fmt.Fprintf(&b, ", stable %s", m.StableValue)
			}
			if m.Message != "" {
				fmt.Fprintf(&b, ": %s", escape(m.Message))
			}
			b.WriteByte('\n')
		}
		blocks = append(blocks, map[string]any{"type": "section", "text": mrkdwn(truncate(b.String(), 2900))})
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{
		mrkdwn("ramp · " + n.Time.UTC().Format(time.RFC3339)),
	}})
	return map[string]any{"text": truncate(title+": "+n.Message, 3000), "blocks": blocks}
}

func mrkdwn(s string) map[string]any {
	return map[string]any{"type": "mrkdwn", "text": truncate(s, 2000)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// escape keeps user-controlled text from turning into Slack markup (mentions, links).
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate keeps s within n bytes (Slack's field limits) without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func verdictIcon(v string) string {
	switch v {
	case rampv1.VerdictPassed:
		return ":white_check_mark:"
	case rampv1.VerdictFailed:
		return ":x:"
	default:
		return ":grey_question:"
	}
}

func humanReason(r string) string {
	var b strings.Builder
	for i, c := range r {
		if i > 0 && c >= 'A' && c <= 'Z' {
			b.WriteByte(' ')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}
