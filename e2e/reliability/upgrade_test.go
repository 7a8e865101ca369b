package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/release"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// previousRelease is the commit the upgrade test upgrades from. ramp has no release tag yet, so
// it is pinned to 1f4515e, the parent of cf3a877 ("Status that tells the truth", issue 12), the
// first commit that changed the status write path on 2026-11-27: a manager that writes status
// differently from this one. Once releases are tagged, pin the previous tag's commit here and
// in docs/upgrades.md.
const previousRelease = "1f4515edbe183837830b4c5768da36faf3c36a6e"

// TestUpgradeKeepsRolloutsGoing upgrades ramp in the middle of a canary step, as `helm
// upgrade` or `kubectl apply -f install.yaml` would: the previous release's CRDs and manager
// (its own binary) start the rollout; the manager is stopped (SIGTERM, as a Deployment's
// rolling update stops it) while the canary takes 10%; this release's CRDs are applied and
// its manager binary started. The rollout must finish, with the VirtualService's weights
// only moving forward along the plan and the Rollout's status never going back.
func TestUpgradeKeepsRolloutsGoing(t *testing.T) {
	e := cluster(t)
	prev := previousManager(t)
	cur := currentManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The previous release's CRDs, as the cluster had them; this release's come back when the
	// test ends whatever happens (the other tests share the cluster).
	current, err := release.Kustomize("../../config/crd")
	must(t, err)
	apply := func(ctx context.Context, objs []*unstructured.Unstructured) error {
		for _, u := range objs {
			// Apply writes the server's answer into its object: send a fresh copy each time.
			if err := e.Apply(ctx, "ramp-upgrade-test", []*unstructured.Unstructured{u.DeepCopy()}); err != nil {
				return err
			}
		}
		return nil
	}
	t.Cleanup(func() {
		if err := apply(context.Background(), current); err != nil {
			t.Errorf("restoring this release's CRDs: %v", err)
		}
	})
	var old []*unstructured.Unstructured
	files, err := filepath.Glob(filepath.Join(prev.dir, "config/crd/bases/*.yaml"))
	must(t, err)
	for _, f := range files {
		objs, err := testenv.ReadObjects(f)
		must(t, err)
		old = append(old, objs...)
	}
	if len(old) == 0 {
		t.Fatalf("no CRDs in %s", prev.dir)
	}
	must(t, apply(ctx, old))

	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := e.RecordTimeline(t, ns)
	ro := canaryRollout(ns, "web",
		rampv1.CanaryStep{SetWeight: 10, Pause: pauseFor(5 * time.Second)},
		rampv1.CanaryStep{SetWeight: 50, Pause: pauseFor(2 * time.Second)},
		rampv1.CanaryStep{SetWeight: 100})

	before := runManager(t, "previous", prev.binary, e.Kubeconfig, ns)
	must(t, e.Client.Create(ctx, ro))
	waitTimeline(ctx, t, tl, "the previous release adopts web", func() bool { return lastPhase(tl, "web") == rampv1.PhaseIdle })
	setImage(t, ns, "podinfo:2")
	waitTimeline(ctx, t, tl, "the previous release routes 10% to the canary", func() bool { return slices.Contains(tl.Weights("web"), 10) })
	before.stop(t)
	synced(t, tl)
	if w, p := tl.Weights("web"), lastPhase(tl, "web"); !slices.Equal(w, []int32{0, 10}) || p != rampv1.PhaseProgressing {
		t.Fatalf("when the previous release stopped: weights %v, phase %s; want [0 10], %s (stopped mid-step)", w, p, rampv1.PhaseProgressing)
	}

	// The upgrade: this release's CRDs, then its manager.
	must(t, apply(ctx, current))
	runManager(t, "current", cur, e.Kubeconfig, ns, "--platform-namespace="+ns)
	waitTimeline(ctx, t, tl, "this release finishes the rollout", func() bool { return lastPhase(tl, "web") == rampv1.PhaseSucceeded })
	waitFor(t, 60*time.Second, "the rollout to settle", func(ctx context.Context) (bool, error) {
		return settled(rampv1.PhaseSucceeded)(ctx, ro)
	})
	synced(t, tl)
	checkWeightsForward(t, tl, "web", []int32{0, 10, 50, 100, 0})
	checkStatusForward(t, tl, "web")
	tl.CheckCanaryServes(t, "web", ro.CanaryName(), 2)
}

func waitTimeline(ctx context.Context, t *testing.T, tl *testenv.Timeline, what string, cond func() bool) {
	t.Helper()
	if err := tl.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting until %s: %v (weights %v, phases %v)", what, err, tl.Weights("web"), tl.Phases("web"))
	}
}

func lastPhase(tl *testenv.Timeline, name string) string {
	p := tl.Phases(name)
	if len(p) == 0 {
		return ""
	}
	return p[len(p)-1]
}

// process is a manager binary running against the local cluster.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// runManager runs a manager binary as a cluster's pod runs it (leader election in its
// namespace, every other flag at its default) for the Rollouts of ns, until stop or the end of
// the test.
func runManager(t *testing.T, name, binary, kubeconfig, ns string, extra ...string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	must(t, err)
	args := append([]string{"--kubeconfig=" + kubeconfig, "--watch-namespace=" + ns,
		"--leader-elect=true", "--leader-election-namespace=" + ns,
		"--metrics-bind-address=0", "--health-probe-bind-address=0"}, extra...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	must(t, p.cmd.Start())
	go func() {
		defer close(p.done)
		p.err = p.cmd.Wait()
		_ = logf.Close()
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("last log lines of the %s manager:\n%s", name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	return p
}

// stop sends SIGTERM and waits for the manager to exit (it releases its lease on the way).
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("the %s manager did not stop within 30s of SIGTERM", p.name)
	}
}

// currentManager builds this tree's cmd/manager.
func currentManager(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "manager")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/manager").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/manager: %v\n%s", err, out)
	}
	return bin
}

type previous struct {
	binary string
	dir    string // the commit's tree (its config/crd/bases)
}

// previousManager returns the previous release's manager binary and tree, built once per
// machine into ~/.cache/ramp/upgrade/<commit> (under a lock, so parallel runs build it once).
// A clone without the commit (a shallow CI checkout) fetches it from origin first.
func previousManager(t *testing.T) previous {
	t.Helper()
	home, err := os.UserHomeDir()
	must(t, err)
	cache := filepath.Join(home, ".cache", "ramp", "upgrade", previousRelease)
	p := previous{binary: filepath.Join(cache, "manager"), dir: filepath.Join(cache, "tree")}
	must(t, os.MkdirAll(filepath.Dir(cache), 0o755))
	lock, err := os.OpenFile(cache+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	defer func() { _ = lock.Close() }()
	must(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	if _, err := os.Stat(p.binary); err == nil {
		return p
	}
	start := time.Now()
	if err := buildPrevious(cache); err != nil {
		t.Fatalf("building the previous release's manager (%s): %v", previousRelease, err)
	}
	t.Logf("built the previous release's manager (%s) in %s", previousRelease[:12], time.Since(start).Round(time.Second))
	return p
}

// buildPrevious extracts the commit's tree (git archive) and builds its cmd/manager, writing
// both into cache only once complete.
func buildPrevious(cache string) error {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return fmt.Errorf("git rev-parse --show-toplevel: %w", err)
	}
	root := strings.TrimSpace(string(top))
	git := func(args ...string) ([]byte, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	if _, err := git("cat-file", "-e", previousRelease+"^{commit}"); err != nil {
		// A shallow clone lacks the history: fetch the one commit (GitHub serves any
		// reachable commit by hash).
		if _, ferr := git("fetch", "--depth=1", "origin", previousRelease); ferr != nil {
			return errors.Join(errors.New("the commit is not in this clone (a shallow clone? .ci/run needs a full one: git fetch --unshallow)"), ferr)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(cache), "build-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	// From the top level: run in a subdirectory, git archive takes only that directory.
	archive := exec.Command("sh", "-c", `git archive "$1" | tar -x -C "$2"`, "sh", previousRelease, tree)
	archive.Dir = root
	if out, err := archive.CombinedOutput(); err != nil {
		return fmt.Errorf("git archive: %w\n%s", err, out)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(tmp, "manager"), "./cmd/manager")
	build.Dir = tree
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	if err := os.RemoveAll(cache); err != nil {
		return err
	}
	return os.Rename(tmp, cache)
}
