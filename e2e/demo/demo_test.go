package demo

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// TestStory runs the demo end to end, with short pauses, and checks its outcome and output.
func TestStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := Run(ctx, &out, Options{StepPause: time.Second, Replicas: 3})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome["v2"] != rampv1.PhaseSucceeded || res.Outcome["v3"] != rampv1.PhaseFailed {
		t.Fatalf("outcomes %v: want v2 Succeeded, v3 Failed", res.Outcome)
	}
	var v2 []int32
	for _, r := range res.Rows {
		if r.Release == "v2" && (len(v2) == 0 || v2[len(v2)-1] != r.Weight) {
			v2 = append(v2, r.Weight)
		}
	}
	if got := weights(v2); got != "0 5 25 100 0" {
		t.Errorf("v2 weights %q, want 0 5 25 100 0", got)
	}
	for _, want := range []string{"Summary", "VirtualService stable  95% / canary   5%", "v3 rolled back"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func weights(ws []int32) string {
	return strings.Trim(fmt.Sprint(ws), "[]")
}
