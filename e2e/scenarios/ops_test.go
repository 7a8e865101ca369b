package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	"github.com/ramp-dev/ramp/internal/plugin"
)

// A promotion window that opens in 35-95s: the rollout holds before its 100% step
// (WaitingForWindow) and is promoted once the window opens.
func TestPromotionWindowWait(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 100}}
	}})
	// The window is set once the app is up, however long that took. Cron is minute-grained:
	// the next minute boundary at least 35s away, in UTC.
	now := time.Now().UTC()
	open := now.Truncate(time.Minute).Add(time.Minute)
	if open.Sub(now) < 35*time.Second {
		open = open.Add(time.Minute)
	}
	ro := a.get()
	base := ro.DeepCopy()
	ro.Spec.PromotionWindows = []rampv1.PromotionWindow{{
		Schedule: fmt.Sprintf("%d %d * * *", open.Minute(), open.Hour()),
		Duration: metav1.Duration{Duration: time.Hour},
		TimeZone: "UTC",
	}}
	if err := a.c.Patch(context.Background(), ro, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	a.waitPhase("the window observed", time.Minute, func(r *rampv1.Rollout) bool {
		return r.Status.ObservedGeneration >= ro.Generation
	})
	rec := a.record()
	a.setImage(imgV2)
	a.waitPhase("WaitingForWindow", time.Until(open), func(r *rampv1.Rollout) bool {
		return r.Status.Phase == rampv1.PhaseWaitingForWindow
	})
	if w, _ := a.vsState(context.Background()); w != 10 {
		t.Errorf("canary weight %d while waiting for the window, want 10", w)
	}
	t.Logf("waiting for the window opening at %s", open.Format(time.TimeOnly))
	ro = a.waitEnd(time.Until(open) + 2*time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	if time.Now().Before(open) {
		t.Errorf("promoted before the window opened (%s)", open.Format(time.TimeOnly))
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 100 0]" {
		t.Errorf("weights %s, want 0 10 100 0", got)
	}
	if !strings.Contains(fmt.Sprint(rec.Phases(appName)), rampv1.PhaseWaitingForWindow+" ") {
		t.Errorf("phases %q lack WaitingForWindow before the promotion", fmt.Sprint(rec.Phases(appName)))
	}
}

// kubectl ramp promote releases a step paused until promoted; kubectl ramp abort rolls back
// a rollout in progress.
func TestPluginPromoteAbort(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{rollout: func(ro *rampv1.Rollout) {
		ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 10, Pause: &rampv1.Pause{}}, {SetWeight: 100}}
	}})
	rec := a.record()
	a.setImage(imgV2)
	a.waitWeight(10, 2*time.Minute)
	// Held: analysis passes but the pause has no end.
	holdUntil(time.Now().Add(3 * interval))
	if ro := a.get(); ro.Status.CanaryWeight != 10 || ro.Status.Phase == rampv1.PhaseSucceeded {
		t.Fatalf("the pause did not hold: phase %s weight %d", ro.Status.Phase, ro.Status.CanaryWeight)
	}
	kubectlRamp(t, a.ns, "promote", appName)
	ro := a.waitEnd(2 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("after promote: phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 100 0]" {
		t.Errorf("weights %s, want 0 10 100 0", got)
	}

	rec = a.record()
	a.setImage(imgV3)
	a.waitWeight(10, 2*time.Minute)
	kubectlRamp(t, a.ns, "abort", appName)
	ro = a.waitEnd(2 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("after abort: phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 0]" {
		t.Errorf("weights %s, want [0 10 0] (aborted at the 10%% step)", got)
	}
	t.Logf("aborted: %s", ro.Status.Message)
}

func kubectlRamp(t *testing.T, ns string, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := plugin.NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append(args, "--kubeconfig", env.Kubeconfig, "-n", ns))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	t.Logf("kubectl ramp %s → exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), plugin.ExitCode(err), out.String(), errOut.String())
	if err != nil {
		t.Fatalf("kubectl ramp %s: %v", strings.Join(args, " "), err)
	}
}

// Slack: a healthy release posts started, step and promoted messages; a failing one posts
// the rollback with the failing metric. Every message is Block Kit.
func TestSlackMessages(t *testing.T) {
	t.Parallel()
	rcv := &slackReceiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	a := newApp(t, appOptions{
		rollout: func(ro *rampv1.Rollout) {
			ro.Spec.Strategy.Canary.Steps = []rampv1.CanaryStep{{SetWeight: 10}, {SetWeight: 100}}
			ro.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "slack"}}}
		},
		before: func(ns string) {
			if err := env.Client.Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: ns, Labels: map[string]string{credentials.Label: "true"}},
				StringData: map[string]string{"address": srv.URL + "/services/T0/B0/SECRET"},
			}); err != nil {
				t.Fatal(err)
			}
		},
	})
	prefix := a.ns + "/" + appName + ": "
	a.setImage(imgV2)
	if ro := a.waitEnd(3 * time.Minute); ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("v2: phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	rcv.wait(t, prefix, "Rollout started", "Step started", "Promoted")

	a.setImage(imgErrors)
	if ro := a.waitEnd(3 * time.Minute); ro.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("bad release: phase %s: %s", ro.Status.Phase, ro.Status.Message)
	}
	rcv.wait(t, prefix, "Rolled back")
	if b := rcv.text("Rolled back"); !strings.Contains(b, "error-rate") {
		t.Errorf("the rollback message lacks the failing metric: %s", b)
	}
	if bad := rcv.malformed(); len(bad) > 0 {
		t.Errorf("messages without Block Kit shape: %v", bad)
	}
	t.Logf("received:\n%s", strings.Join(rcv.headerList(), "\n"))
}

// slackReceiver is a local Slack incoming webhook.
type slackReceiver struct {
	mu     sync.Mutex
	bodies []string
}

type blockKit struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Text string `json:"text"`
		} `json:"fields"`
		Elements []json.RawMessage `json:"elements"`
	} `json:"blocks"`
}

func (s *slackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

// headerList returns each message's header block text (or its fallback text).
func (s *slackReceiver) headerList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.bodies {
		var m blockKit
		_ = json.Unmarshal([]byte(b), &m)
		h := m.Text
		for _, bl := range m.Blocks {
			if bl.Type == "header" && bl.Text != nil {
				h = bl.Text.Text
				break
			}
		}
		out = append(out, h)
	}
	return out
}

// text returns all the text of the first message whose header contains h.
func (s *slackReceiver) text(h string) string {
	hs := s.headerList()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range hs {
		if strings.Contains(x, h) {
			return s.bodies[i]
		}
	}
	return ""
}

// malformed lists messages that are not Block Kit: JSON with blocks, each with a type, the
// first a header.
func (s *slackReceiver) malformed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []string
	for _, b := range s.bodies {
		var m blockKit
		if err := json.Unmarshal([]byte(b), &m); err != nil || len(m.Blocks) == 0 || m.Blocks[0].Type != "header" {
			bad = append(bad, b)
			continue
		}
		for _, bl := range m.Blocks {
			if bl.Type == "" {
				bad = append(bad, b)
				break
			}
		}
	}
	return bad
}

func (s *slackReceiver) wait(t *testing.T, prefix string, headers ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := strings.Join(s.headerList(), "\n")
		missing := ""
		for _, h := range headers {
			if !strings.Contains(got, prefix+h) {
				missing = h
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Slack message %q; received:\n%s", prefix+missing, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
