package controllers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
)

// slackReceiver stands in for Slack: it records each message's header and fails the first
// request with a 500, so delivery has to retry.
type slackReceiver struct {
	mu      sync.Mutex
	headers []string
	bodies  []string
	failed  bool
}

func (s *slackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		s.failed = true
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var m struct {
		Blocks []struct {
			Type string `json:"type"`
			Text struct {
				Text string `json:"text"`
			} `json:"text"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Blocks) == 0 || m.Blocks[0].Type != "header" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.headers = append(s.headers, m.Blocks[0].Text.Text)
	s.bodies = append(s.bodies, string(b))
}

// body returns the first message whose header contains header.
func (s *slackReceiver) body(header string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.headers {
		if strings.Contains(h, header) {
			return s.bodies[i]
		}
	}
	return ""
}

func (s *slackReceiver) seen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.headers, "\n")
}

func TestSlackNotificationsFollowTheRollout(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	rcv := &slackReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	webhook := srv.URL + "/services/T0/B0/SECRETTOKEN"
	must(t, env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: ns, Labels: map[string]string{credentials.Label: "true"}},
		StringData: map[string]string{"address": webhook},
	}))
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "slack"}}}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)

	setImage(t, target, "podinfo:2")
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	want := []string{"Rollout started", "Step started", "Promotion started", "Promoted"}
	waitFor(t, "Slack messages", func(context.Context) (bool, error) {
		for _, w := range want {
			if !strings.Contains(rcv.seen(), ns+"/web: "+w) {
				return false, nil
			}
		}
		return true, nil
	})
	if n := strings.Count(rcv.seen(), "Step started"); n != 3 {
		t.Errorf("%d step messages, want 3:\n%s", n, rcv.seen())
	}
	if i, j := strings.Index(rcv.seen(), "Rollout started"), strings.Index(rcv.seen(), "Promoted"); i > j {
		t.Errorf("messages out of order:\n%s", rcv.seen())
	}

	// A bad revision: failed analysis and rollback reach Slack with the failing metric.
	verdicts.set(ro, rampv1.VerdictFailed)
	setImage(t, target, "podinfo:3")
	waitPhase(t, ro, rampv1.PhaseFailed)
	waitFor(t, "rollback messages", func(context.Context) (bool, error) {
		return strings.Contains(rcv.seen(), ns+"/web: Rolled back"), nil
	})
	for _, h := range []string{"Analysis failed", "Rolled back"} {
		var m struct {
			Blocks []struct{ Text struct{ Text string } }
		}
		_ = json.Unmarshal([]byte(rcv.body(h)), &m)
		var text strings.Builder
		for _, bl := range m.Blocks {
			text.WriteString(bl.Text.Text + "\n")
		}
		if b := text.String() + rcv.body(h); !strings.Contains(b, "*error-rate* 8.3 (threshold &lt;= 1)") || !strings.Contains(b, "podinfo:3") {
			t.Errorf("%q message lacks the failing metric vs threshold or the image: %s", h, b)
		}
	}

	// The webhook URL is a credential: never in status or events.
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro))
	st, _ := json.Marshal(ro.Status)
	var evs corev1.EventList
	must(t, env.Client.List(ctx, &evs, client.InNamespace(ns)))
	ev, _ := json.Marshal(evs)
	for _, b := range [][]byte{st, ev} {
		if strings.Contains(string(b), "SECRETTOKEN") {
			t.Fatal("the Slack webhook URL leaked into status or events")
		}
	}
}

func TestSlackSecretMissingIsReportedNotFatal(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	target := app(t, ns, "podinfo:1")
	ro := canaryRollout(ns)
	ro.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "nope"}}}
	must(t, env.Client.Create(ctx, ro))
	waitPhase(t, ro, rampv1.PhaseIdle)
	setImage(t, target, "podinfo:2")
	// Notifications failing never holds the rollout back.
	waitPhase(t, ro, rampv1.PhaseSucceeded)
	waitFor(t, "NotificationFailed event", func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := env.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "NotificationFailed" && strings.Contains(e.Message, `Secret "nope"`) {
				return true, nil
			}
		}
		return false, nil
	})
}
