package plan

import (
	"fmt"
	"time"
)

// Peer is another Rollout of the same namespace that targets the same Deployment.
type Peer struct {
	Name    string
	Created time.Time
}

// FirstPeer arbitrates between Rollouts of one Deployment: the one created first (then by
// name) manages it; it returns that peer when it is not the Rollout named name, created at
// created, and nil when this one is first. A Rollout being deleted still counts until it is
// gone: its finalizer hands the target back.
func FirstPeer(name string, created time.Time, peers []Peer) *Peer {
	var first *Peer
	before := func(a, b Peer) bool {
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Name < b.Name
	}
	self := Peer{Name: name, Created: created}
	for i := range peers {
		p := peers[i]
		if p.Name != name && before(p, self) && (first == nil || before(p, *first)) {
			first = &peers[i]
		}
	}
	return first
}

func duplicateMessage(target, first string) string {
	return fmt.Sprintf("Deployment %q is already managed by Rollout %q, created first: this Rollout touches nothing; delete it or point spec.targetRef at another Deployment", target, first)
}
