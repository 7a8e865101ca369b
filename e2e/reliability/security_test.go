package reliability_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/yaml"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/credentials"
	rampmanager "github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/notify"
)

// grant is one verb on one resource ("" group: core; name: a resourceNames entry).
type grant struct{ group, resource, name, verb string }

func (g grant) String() string {
	s := g.group + "/" + g.resource
	if g.name != "" {
		s += "[" + g.name + "]"
	}
	return s + ":" + g.verb
}

func grantsOf(t *testing.T, what string, rules []rbacv1.PolicyRule) []grant {
	t.Helper()
	var out []grant
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("%s grants non-resource URLs %v", what, r.NonResourceURLs)
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
			if slices.Contains(list, "*") || slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, "*") }) {
				t.Errorf("%s uses a wildcard: %+v", what, r)
			}
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						out = append(out, grant{g, res, n, v})
					}
				}
			}
		}
	}
	return out
}

func readManifests(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	out := map[string][]byte{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var meta struct{ Kind string }
		must(t, yaml.Unmarshal([]byte(doc), &meta))
		if meta.Kind != "" {
			out[meta.Kind] = []byte(doc)
		}
	}
	return out
}

func managerRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	cr := &rbacv1.ClusterRole{}
	must(t, yaml.Unmarshal(readManifests(t, "../../config/rbac/role.yaml")["ClusterRole"], cr))
	return cr
}

func leaderElectionRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	r := &rbacv1.Role{}
	must(t, yaml.Unmarshal(readManifests(t, "../../config/rbac/leader_election_role.yaml")["Role"], r))
	return r
}

// docGrants reads the grants of the table under heading in docs/rbac.md.
func docGrants(t *testing.T, heading string) []grant {
	t.Helper()
	b, err := os.ReadFile("../../docs/rbac.md")
	must(t, err)
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/rbac.md has no %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	tick := regexp.MustCompile("`([^`]*)`")
	var out []grant
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.Contains(cells[1], "`") {
			continue
		}
		ticked := func(cell string) []string {
			var s []string
			for _, m := range tick.FindAllStringSubmatch(cell, -1) {
				s = append(s, strings.Trim(m[1], `"`))
			}
			return s
		}
		group, res, verb := ticked(cells[1]), ticked(cells[2]), ticked(cells[3])
		if len(group) != 1 || len(res) == 0 || len(verb) != 1 {
			t.Fatalf("docs/rbac.md: unreadable row %q", line)
		}
		g := grant{group: group[0], resource: res[0], verb: verb[0]}
		if len(res) > 1 {
			g.name = res[1]
		}
		out = append(out, g)
	}
	return out
}

func sameGrants(t *testing.T, what string, got, want []grant) {
	t.Helper()
	key := func(gs []grant) []string {
		var s []string
		for _, g := range gs {
			s = append(s, g.String())
		}
		slices.Sort(s)
		return slices.Compact(s)
	}
	g, w := key(got), key(want)
	for _, x := range g {
		if !slices.Contains(w, x) {
			t.Errorf("%s: %s is granted but not in the list", what, x)
		}
	}
	for _, x := range w {
		if !slices.Contains(g, x) {
			t.Errorf("%s: %s is listed but not granted", what, x)
		}
	}
}

func allow(group, resource string, verbs ...string) []grant {
	var out []grant
	for _, v := range verbs {
		out = append(out, grant{group: group, resource: resource, verb: v})
	}
	return out
}

// The roles ramp ships grant nothing beyond a fixed allow-list, without wildcards, and
// docs/rbac.md documents exactly what they grant.
func TestRBACIsAllowListed(t *testing.T) {
	rw := []string{"get", "list", "watch", "create", "patch", "delete"}
	allowManager := slices.Concat(
		allow("ramp.dev", "rollouts", "get", "list", "watch", "update"),
		allow("ramp.dev", "rollouts/status", "patch"),
		allow("ramp.dev", "rollouts/finalizers", "update"),
		allow("ramp.dev", "clustermetrictemplates", "get", "list", "watch"),
		allow("ramp.dev", "metrictemplates", "get", "list", "watch"),
		allow("apps", "deployments", rw...),
		allow("apps", "replicasets", "get", "list", "watch"),
		allow("networking.istio.io", "virtualservices", rw...),
		allow("networking.istio.io", "destinationrules", rw...),
		allow("", "secrets", "get"),
		// The Gateway API router creates the Services <service>-stable and <service>-canary.
		allow("", "services", rw...),
		allow("gateway.networking.k8s.io", "httproutes", rw...),
		allow("", "events", "create", "patch"),
	)
	// Every Lease of ramp's own namespace: a shard elects on a Lease named from its selector.
	allowLeader := slices.Concat(
		allow("coordination.k8s.io", "leases", "get", "create", "update"),
		allow("", "events", "create", "patch"),
	)

	manager := grantsOf(t, "ClusterRole", managerRole(t).Rules)
	leader := grantsOf(t, "leader election Role", leaderElectionRole(t).Rules)
	for _, g := range manager {
		if !slices.Contains(allowManager, g) {
			t.Errorf("role.yaml grants %s, beyond the allow-list", g)
		}
		switch {
		case g.resource == "secrets" && g.verb != "get":
			t.Errorf("role.yaml grants %s: ramp reads the Secrets it is pointed at, one get each", g)
		case g.resource == "replicasets" && !slices.Contains([]string{"get", "list", "watch"}, g.verb):
			t.Errorf("role.yaml grants %s: ramp only reads %s", g, g.resource)
		}
	}
	for _, g := range leader {
		if !slices.Contains(allowLeader, g) {
			t.Errorf("leader_election_role.yaml grants %s, beyond the allow-list", g)
		}
	}
	sameGrants(t, "docs/rbac.md, ClusterRole", docGrants(t, "## ClusterRole `ramp-manager-role`"), manager)
	sameGrants(t, "docs/rbac.md, leader election Role", docGrants(t, "## Role `ramp-leader-election-role` (namespace `ramp-system`)"), leader)

	// The harness elects on the Lease cmd/manager uses when it is not a shard.
	if got := rampmanager.LeaderElectionID(""); got != leaderElectionID {
		t.Errorf("cmd/manager elects with the Lease %q, the harness with %q", got, leaderElectionID)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	_, err := rand.Read(b)
	must(t, err)
	return hex.EncodeToString(b)
}

// ramp runs a whole rollout — analysis with Prometheus credentials, Slack notifications,
// leader election — and the Rollout's deletion as a user bound to exactly the roles it ships,
// and the credentials it handles never show in its logs, Events or status, not even when
// Prometheus echoes them back in an error.
func TestRampUnderItsOwnRBAC(t *testing.T) {
	e := cluster(t)
	t.Parallel()
	ctx := context.Background()
	ns := e.Namespace(t)
	app(t, ns, 2, "podinfo:1")
	tl := cluster(t).RecordTimeline(t, ns) // every version of the Rollout's status, and of ramp's objects

	// The shipped roles, bound to a user of this test.
	user := "ramp-e2e-" + ns
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	cr := managerRole(t)
	cr.Name = "ramp-manager-" + ns
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: cr.Name}, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name}}
	lr := leaderElectionRole(t)
	lr.Namespace = ns
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: lr.Name, Namespace: ns}, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: lr.Name}}
	for _, o := range []client.Object{cr, crb, lr, rb} {
		must(t, e.Client.Create(ctx, o))
	}
	t.Cleanup(func() {
		_ = e.Client.Delete(context.Background(), crb)
		_ = e.Client.Delete(context.Background(), cr)
	})
	asRamp := rest.CopyConfig(e.Config)
	asRamp.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(asRamp, client.Options{Scheme: e.Scheme})
	must(t, err)
	if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets as %s: %v, want Forbidden", user, err)
	}

	// Credentials: a Prometheus bearer token and a Slack webhook URL, both random.
	token, hook := "prom-"+randomHex(t), randomHex(t)
	var promAuthorized, promEchoed atomic.Int32
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		promAuthorized.Add(1)
		if promEchoed.Add(1) == 1 { // a proxy that echoes the request's credentials in its error
			http.Error(w, "upstream failed for "+r.Header.Get("Authorization"), http.StatusBadGateway)
			return
		}
		v := "0.1"
		if strings.HasPrefix(r.FormValue("query"), "sum(") { // the request count; the error rate is 100 * ...
			v = "1000"
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(vector(v)))
	}))
	t.Cleanup(prom.Close)
	var slackCalls, slackOK atomic.Int32
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/services/T000/B000/"+hook {
			http.NotFound(w, r)
			return
		}
		if slackCalls.Add(1) == 1 {
			http.Error(w, "no_team "+r.URL.String(), http.StatusForbidden) // echoes the URL
			return
		}
		slackOK.Add(1)
	}))
	t.Cleanup(slack.Close)
	webhook := slack.URL + "/services/T000/B000/" + hook
	for name, data := range map[string]map[string]string{"prom-creds": {"token": token}, "slack-webhook": {"address": webhook}} {
		must(t, e.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{credentials.Label: "true"}}, StringData: data}))
	}

	sender := notify.NewSender(100, ctrl.Log.WithName("rbac-slack"))
	sender.Backoff = 50 * time.Millisecond
	startManager(t, mgrOptions{name: "rbac", ns: ns, restConfig: asRamp, leaderElection: true, relaxedLease: true,
		notifier: sender, runnables: []crmanager.Runnable{sender}})
	ro := withAnalysis(canaryRollout(ns, "web", rampv1.CanaryStep{SetWeight: 10}, rampv1.CanaryStep{SetWeight: 100}), prom.URL, 3)
	ro.Spec.Analysis.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: "prom-creds"}
	ro.Spec.Analysis.Metrics[0].MinRequests = ptr.To[int32](10)
	ro.Spec.Notifications = &rampv1.Notifications{Slack: &rampv1.SlackNotification{SecretRef: rampv1.SecretKeyReference{Name: "slack-webhook"}}}
	must(t, e.Client.Create(ctx, ro))
	waitFor(t, 30*time.Second, "adoption", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseIdle)(ctx, ro) })
	setImage(t, ns, "podinfo:2")
	waitFor(t, 60*time.Second, "Succeeded", func(ctx context.Context) (bool, error) { return settled(rampv1.PhaseSucceeded)(ctx, ro) })
	waitFor(t, 10*time.Second, "Slack notifications", func(context.Context) (bool, error) { return slackOK.Load() >= 2, nil })
	if promAuthorized.Load() < 2 {
		t.Errorf("Prometheus saw the token %d times", promAuthorized.Load())
	}

	// Deletion: ramp deletes what it owns and hands the target back.
	must(t, e.Client.Delete(ctx, ro))
	waitFor(t, 30*time.Second, "the Rollout deleted", func(ctx context.Context) (bool, error) {
		err := e.Client.Get(ctx, client.ObjectKeyFromObject(ro), &rampv1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	target, err := getDeployment(ctx, ns, "web")
	must(t, err)
	if target.Spec.Paused {
		t.Errorf("the target is still paused after the Rollout's deletion")
	}
	for _, kind := range []string{istio.KindVirtualService, istio.KindDestinationRule} {
		if u, err := env.IstioObject(ctx, ns, kind, "web"); err != nil || u != nil {
			t.Errorf("%s left behind (err %v)", kind, err)
		}
	}

	// Where the credentials must not be.
	var events corev1.EventList
	must(t, e.Client.List(ctx, &events, client.InNamespace(ns)))
	reasons := map[string]bool{}
	for _, ev := range events.Items {
		reasons[ev.Reason] = true
	}
	for _, r := range []string{"Promoted", "AnalysisInconclusive"} {
		if !reasons[r] {
			t.Errorf("no %s Event: ramp's Events were not recorded (%v)", r, reasons)
		}
	}
	var versions []any
	for _, e := range tl.Versions() {
		versions = append(versions, e.Object)
	}
	written, err := json.Marshal(versions)
	must(t, err)
	evs, err := json.Marshal(events)
	must(t, err)
	for where, text := range map[string]string{"logs": logs.String(), "Events": string(evs),
		"the Rollout's status, the VirtualService, DestinationRule and Deployments (every version)": string(written)} {
		for what, secret := range map[string]string{"the Prometheus token": token, "the Slack webhook": hook} {
			if strings.Contains(text, secret) {
				i := strings.Index(text, secret)
				t.Errorf("%s found in %s: …%s…", what, where, text[max(0, i-200):min(len(text), i+len(secret)+50)])
			}
		}
	}
	if !strings.Contains(logs.String(), `"namespace":"`+ns+`"`) {
		t.Errorf("the manager's logs were not captured")
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, user) || (strings.Contains(line, ns) && strings.Contains(strings.ToLower(line), "forbidden")) {
			t.Errorf("forbidden under the shipped RBAC: %s", line)
		}
	}
}
