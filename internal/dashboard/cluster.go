package dashboard

import (
	"context"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Cluster is what the dashboard asks of its caller, kubectl-ramp (internal/plugin): how to
// describe a Rollout, its events, and the requests its buttons make. The plugin answers them
// with the code of its own verbs, so a button does exactly what the verb does.
type Cluster interface {
	// Describe says where a Rollout is and what its timeline looks like.
	Describe(ro *rampv1.Rollout) Description
	// Events lists the events about a Rollout, oldest first.
	Events(ctx context.Context, ro *rampv1.Rollout) ([]Event, error)
	// Act runs a request verb (kubectl ramp <action> NAME -n NAMESPACE) and says how it went.
	Act(ctx context.Context, action Action, namespace, name string) Outcome
}

// Action is a request a button makes: the kubectl ramp verb of the same name.
type Action string

// The actions, as kubectl ramp's verbs.
const (
	Promote Action = "promote"
	Abort   Action = "abort"
	Retry   Action = "retry"
	Pause   Action = "pause"
	Resume  Action = "resume"
)

// Actions are all the actions, in the order the page shows their buttons.
var Actions = []Action{Promote, Pause, Resume, Abort, Retry}

// Outcome is how a request went, as the verb would have said it: its exit code (0 done, 1
// error, 2 recorded but not acknowledged in time, 3 acknowledged and ignored) and its output.
type Outcome struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Description is the plugin's reading of a Rollout, as kubectl ramp status shows it.
type Description struct {
	// Position is where the rollout is: "step 2/3", "promotion", "preview", "idle", ...
	Position string `json:"position"`
	// Strategy summarises the strategy: "canary, 3 steps, analysis every 1m".
	Strategy string `json:"strategy"`
	// Traffic is "stable 75%, canary 25%".
	Traffic string `json:"traffic"`
	// Steps is the step timeline (blue/green: preview, flip), then promotion.
	Steps []Step `json:"steps"`
	// Holds are what pauses the rollout and the requests not acknowledged yet.
	Holds []string `json:"holds,omitempty"`
	// Enabled are the actions that make sense now (the others would be ignored).
	Enabled []Action `json:"enabled"`
}

// Step is a line of the step timeline.
type Step struct {
	// State is done, current, failed or pending.
	State   string `json:"state"`
	Label   string `json:"label"`
	Traffic string `json:"traffic,omitempty"`
	Notes   string `json:"notes,omitempty"`
	// Here is the stage on the current step, "failed here" on the failed one.
	Here string `json:"here,omitempty"`
}

// Event is a Kubernetes event about a Rollout.
type Event struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count"`
	Time    time.Time `json:"time"`
}
