package charts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramp-dev/ramp/internal/release"
)

const chartDir = "ramp"

// `helm install ramp charts/ramp -n ramp-system`: the names config/default uses.
var defaultRelease = Release{Name: "ramp", Namespace: "ramp-system"}

func versionFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// render renders the chart with values given as a values file's YAML.
func render(t *testing.T, rel Release, values string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderErr(rel, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderErr(rel Release, values string) ([]*unstructured.Unstructured, error) {
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return nil, err
	}
	return Render(chartDir, rel, vals)
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && (name == "" || u.GetName() == name) {
			return u
		}
	}
	return nil
}

// as converts the one object of kind (and name, when given) in objs to T.
func as[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	u := find(objs, kind, name)
	if u == nil {
		t.Fatalf("no %s %q among %s", kind, name, kinds(objs))
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("%s %s: %v", kind, u.GetName(), err)
	}
	return out
}

func kinds(objs []*unstructured.Unstructured) string {
	var s []string
	for _, u := range objs {
		s = append(s, u.GetKind()+"/"+u.GetName())
	}
	return strings.Join(s, ", ")
}

func manager(t *testing.T, objs []*unstructured.Unstructured) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := as[appsv1.Deployment](t, objs, "Deployment", "")
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("manager pod has %d containers, want 1", n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// The chart is versioned as the release it belongs to (make chart packages any other).
func TestChartVersionIsTheVersionFile(t *testing.T) {
	ch, err := Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	v := versionFile(t)
	if ch.Metadata.Version != v || ch.Metadata.AppVersion != v {
		t.Errorf("Chart.yaml version %q appVersion %q, want both %q (the VERSION file)", ch.Metadata.Version, ch.Metadata.AppVersion, v)
	}
}

// With no values, the chart installs what `kubectl apply -k config/default` installs: the same
// objects under the same names, the same manager flags, probes, resources and security, the
// image of the VERSION file; plus a metrics Service.
func TestChartDefaultsMatchConfigDefault(t *testing.T) {
	objs := render(t, defaultRelease, "")
	config, err := release.Kustomize("../config/default")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range config {
		if c.GetKind() == "Namespace" {
			continue // helm install --create-namespace, or the namespace exists
		}
		u := find(objs, c.GetKind(), c.GetName())
		if u == nil {
			t.Errorf("config/default has %s %s, the chart not", c.GetKind(), c.GetName())
			continue
		}
		if u.GetNamespace() != c.GetNamespace() {
			t.Errorf("%s %s in namespace %q, config/default %q", c.GetKind(), c.GetName(), u.GetNamespace(), c.GetNamespace())
		}
	}
	if find(objs, "Service", "ramp-metrics") == nil {
		t.Errorf("no metrics Service: %s", kinds(objs))
	}
	if find(objs, "ServiceMonitor", "") != nil {
		t.Error("a ServiceMonitor by default: clusters without prometheus-operator refuse it")
	}

	d, c := manager(t, objs)
	cd, cc := manager(t, config)
	if want := release.ManagerImage + ":v" + versionFile(t); c.Image != want {
		t.Errorf("image %s, want %s", c.Image, want)
	}
	if !slices.Equal(c.Args, cc.Args) {
		t.Errorf("manager args\n chart  %q\n config %q", c.Args, cc.Args)
	}
	for what, pair := range map[string][2]any{
		"container securityContext": {c.SecurityContext, cc.SecurityContext},
		"pod securityContext":       {d.Spec.Template.Spec.SecurityContext, cd.Spec.Template.Spec.SecurityContext},
		"resources":                 {c.Resources, cc.Resources},
		"liveness probe":            {c.LivenessProbe, cc.LivenessProbe},
		"readiness probe":           {c.ReadinessProbe, cc.ReadinessProbe},
		"ports":                     {c.Ports, cc.Ports},
		"replicas":                  {d.Spec.Replicas, cd.Spec.Replicas},
		"service account":           {d.Spec.Template.Spec.ServiceAccountName, cd.Spec.Template.Spec.ServiceAccountName},
		"termination grace":         {d.Spec.Template.Spec.TerminationGracePeriodSeconds, cd.Spec.Template.Spec.TerminationGracePeriodSeconds},
	} {
		if !equality.Semantic.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s: chart %+v, config/default %+v", what, pair[0], pair[1])
		}
	}
}

// The chart's CRDs are config/crd/bases' files (make generate copies them), and the chart's
// RBAC grants what config/ grants, generated from the controllers' markers.
func TestChartCRDsAndRBACMatchConfig(t *testing.T) {
	bases, err := filepath.Glob("../config/crd/bases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inChart, err := filepath.Glob(chartDir + "/crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) == 0 || len(inChart) != len(bases) {
		t.Errorf("chart has CRD files %v, config/crd/bases %v: run make generate", inChart, bases)
	}
	for _, b := range bases {
		want, _ := os.ReadFile(b)
		got, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(b)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/crds/%s differs from %s: run make generate", chartDir, filepath.Base(b), b)
		}
	}

	objs := render(t, defaultRelease, "")
	config, err := release.Kustomize("../config/default")
	if err != nil {
		t.Fatal(err)
	}
	var crds int
	for _, c := range config {
		if c.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crds++
		u := find(objs, c.GetKind(), c.GetName())
		if u == nil {
			t.Errorf("the chart has no CRD %s", c.GetName())
			continue
		}
		if !equality.Semantic.DeepEqual(u.Object, c.Object) {
			t.Errorf("CRD %s: the chart's differs from config/crd's", c.GetName())
		}
	}
	if got := len(filter(objs, "CustomResourceDefinition")); got != crds || crds == 0 {
		t.Errorf("chart renders %d CRDs, config/default %d", got, crds)
	}

	// RBAC: each Role and ClusterRole grants the same rules (order aside), bound to the
	// manager's ServiceAccount.
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, c := range filter(config, kind) {
			want := as[rbacv1.ClusterRole](t, config, kind, c.GetName())
			got := as[rbacv1.ClusterRole](t, objs, kind, c.GetName())
			if g, w := ruleSet(got.Rules), ruleSet(want.Rules); !slices.Equal(g, w) {
				t.Errorf("%s %s rules differ from config/rbac's (update charts/ramp/templates/rbac.yaml): the chart lacks %q, grants beyond %q",
					kind, c.GetName(), minus(w, g), minus(g, w))
			}
		}
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, c := range filter(config, kind) {
			want := as[rbacv1.ClusterRoleBinding](t, config, kind, c.GetName())
			got := as[rbacv1.ClusterRoleBinding](t, objs, kind, c.GetName())
			if !equality.Semantic.DeepEqual(got.RoleRef, want.RoleRef) || !equality.Semantic.DeepEqual(got.Subjects, want.Subjects) {
				t.Errorf("%s %s binds %+v to %+v, config/rbac %+v to %+v", kind, c.GetName(), got.RoleRef, got.Subjects, want.RoleRef, want.Subjects)
			}
		}
	}
}

// minus is what a has and b has not.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func filter(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// ruleSet flattens rules to one "group/resource/name verb" string per permission, sorted, so
// that equal grants compare equal however they are grouped.
func ruleSet(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{"*"}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						out = append(out, g+"/"+res+"/"+n+" "+v)
					}
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out = append(out, u+" "+v)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// option is one value people set, and what it must change in the rendered chart.
type option struct {
	name, values string
	check        func(t *testing.T, objs []*unstructured.Unstructured)
}

var options = []option{
	{"image tag", "image: {repository: registry.example/ramp, tag: v9.9.9, pullPolicy: Always}", func(t *testing.T, objs []*unstructured.Unstructured) {
		_, c := manager(t, objs)
		if c.Image != "registry.example/ramp:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("image %s pull %s", c.Image, c.ImagePullPolicy)
		}
	}},
	{"image digest", "image: {digest: sha256:" + strings.Repeat("ab", 32) + "}", func(t *testing.T, objs []*unstructured.Unstructured) {
		if _, c := manager(t, objs); c.Image != release.ManagerImage+"@sha256:"+strings.Repeat("ab", 32) {
			t.Errorf("image %s", c.Image)
		}
	}},
	{"one replica without leader election", "replicas: 1\nleaderElection: {enabled: false}", func(t *testing.T, objs []*unstructured.Unstructured) {
		d, c := manager(t, objs)
		if *d.Spec.Replicas != 1 || !slices.Contains(c.Args, "--leader-elect=false") || hasPrefix(c.Args, "--leader-election-namespace") {
			t.Errorf("replicas %d args %q", *d.Spec.Replicas, c.Args)
		}
		if find(objs, "Role", "") != nil {
			t.Error("a leader election Role without leader election")
		}
	}},
	{"three replicas", "replicas: 3", func(t *testing.T, objs []*unstructured.Unstructured) {
		d, c := manager(t, objs)
		if *d.Spec.Replicas != 3 || !slices.Contains(c.Args, "--leader-elect=true") || !slices.Contains(c.Args, "--leader-election-namespace=ns-of-release") {
			t.Errorf("replicas %d args %q", *d.Spec.Replicas, c.Args)
		}
	}},
	{"resources", "resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {cpu: '1', memory: 1Gi}}", func(t *testing.T, objs []*unstructured.Unstructured) {
		_, c := manager(t, objs)
		if c.Resources.Limits.Cpu().String() != "1" || c.Resources.Requests.Memory().String() != "128Mi" {
			t.Errorf("resources %+v", c.Resources)
		}
	}},
	{"watch namespace", "watchNamespace: team-a", func(t *testing.T, objs []*unstructured.Unstructured) {
		if _, c := manager(t, objs); !slices.Contains(c.Args, "--watch-namespace=team-a") {
			t.Errorf("args %q", c.Args)
		}
	}},
	{"analysis allow-list and platform namespace", "analysis: {allowedEndpoints: ['http://prometheus.monitoring:9090', 'https://thanos.example/api']}\nplatformNamespace: platform", func(t *testing.T, objs []*unstructured.Unstructured) {
		_, c := manager(t, objs)
		if !slices.Contains(c.Args, "--analysis-allowed-endpoints=http://prometheus.monitoring:9090,https://thanos.example/api") ||
			!slices.Contains(c.Args, "--platform-namespace=platform") {
			t.Errorf("args %q", c.Args)
		}
	}},
	{"no analysis endpoints, platform namespace is the release's", "analysis: {allowedEndpoints: []}", func(t *testing.T, objs []*unstructured.Unstructured) {
		_, c := manager(t, objs)
		if !slices.Contains(c.Args, "--analysis-allowed-endpoints=") || !slices.Contains(c.Args, "--platform-namespace=ns-of-release") {
			t.Errorf("args %q", c.Args)
		}
	}},
	{"slack webhook Secret", "slack: {webhookSecret: {name: team-slack, key: webhook}}", func(t *testing.T, objs []*unstructured.Unstructured) {
		d, c := manager(t, objs)
		if !slices.Contains(c.Args, "--slack-webhook-file=/etc/ramp/slack/webhook-url") {
			t.Errorf("args %q", c.Args)
		}
		vols := d.Spec.Template.Spec.Volumes
		if len(vols) != 1 || vols[0].Secret == nil || vols[0].Secret.SecretName != "team-slack" ||
			len(vols[0].Secret.Items) != 1 || vols[0].Secret.Items[0].Key != "webhook" || vols[0].Secret.Items[0].Path != "webhook-url" {
			t.Errorf("volumes %+v", vols)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/ramp/slack" || !c.VolumeMounts[0].ReadOnly {
			t.Errorf("mounts %+v", c.VolumeMounts)
		}
	}},
	{"ServiceMonitor", "metrics: {port: 9090, serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}", func(t *testing.T, objs []*unstructured.Unstructured) {
		_, c := manager(t, objs)
		svc := as[corev1.Service](t, objs, "Service", "")
		sm := find(objs, "ServiceMonitor", "")
		if sm == nil {
			t.Fatal("no ServiceMonitor")
		}
		if !slices.Contains(c.Args, "--metrics-bind-address=:9090") || c.Ports[0].ContainerPort != 9090 || svc.Spec.Ports[0].Port != 9090 {
			t.Errorf("args %q ports %+v service %+v", c.Args, c.Ports, svc.Spec.Ports)
		}
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for k, v := range sel {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
			}
		}
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" || eps[0].(map[string]any)["interval"] != "15s" || sm.GetLabels()["release"] != "prom" {
			t.Errorf("ServiceMonitor %v labels %v", eps, sm.GetLabels())
		}
	}},
	{"no metrics Service", "metrics: {service: {enabled: false}}", func(t *testing.T, objs []*unstructured.Unstructured) {
		if find(objs, "Service", "") != nil {
			t.Error("a Service")
		}
	}},
	{"existing ServiceAccount", "serviceAccount: {create: false, name: platform-ramp}", func(t *testing.T, objs []*unstructured.Unstructured) {
		d, _ := manager(t, objs)
		crb := as[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "")
		if find(objs, "ServiceAccount", "") != nil || d.Spec.Template.Spec.ServiceAccountName != "platform-ramp" || crb.Subjects[0].Name != "platform-ramp" {
			t.Errorf("service account %q, bound %+v", d.Spec.Template.Spec.ServiceAccountName, crb.Subjects)
		}
	}},
	{"extra args and scheduling", `extraArgs: ["--concurrent=8", "--zap-log-level=debug"]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/name: ramp}}}}]}}
podAnnotations: {example.com/team: platform}
priorityClassName: system-cluster-critical`, func(t *testing.T, objs []*unstructured.Unstructured) {
		d, c := manager(t, objs)
		p := d.Spec.Template.Spec
		if !slices.Contains(c.Args, "--concurrent=8") || !slices.Contains(c.Args, "--zap-log-level=debug") {
			t.Errorf("args %q", c.Args)
		}
		if p.NodeSelector["kubernetes.io/os"] != "linux" || len(p.Tolerations) != 1 || p.Tolerations[0].Value != "platform" ||
			p.Affinity == nil || p.Affinity.PodAntiAffinity == nil || p.PriorityClassName != "system-cluster-critical" ||
			d.Spec.Template.Annotations["example.com/team"] != "platform" {
			t.Errorf("pod spec %+v annotations %v", p, d.Spec.Template.Annotations)
		}
	}},
	{"fullnameOverride", "fullnameOverride: delivery", func(t *testing.T, objs []*unstructured.Unstructured) {
		for _, k := range []string{"Deployment/delivery-controller", "ServiceAccount/delivery-controller", "ClusterRole/delivery-manager-role", "Service/delivery-metrics"} {
			kind, name, _ := strings.Cut(k, "/")
			if find(objs, kind, name) == nil {
				t.Errorf("no %s among %s", k, kinds(objs))
			}
		}
	}},
}

func hasPrefix(args []string, prefix string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}

// Each value people set changes what it says, and only the manager's pod keeps the restricted
// Pod Security profile whatever is set.
func TestChartOptions(t *testing.T) {
	for _, o := range options {
		t.Run(o.name, func(t *testing.T) {
			objs := render(t, Release{Name: "ramp", Namespace: "ns-of-release"}, o.values)
			o.check(t, objs)
			d, c := manager(t, objs)
			if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext %+v", sc)
			}
			if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("container securityContext %+v", sc)
			}
		})
	}
}

// Values that would install something broken are refused at `helm install`, naming the value.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"image: {tag: latest}", "tag"},
		{"image: {digest: 'sha256:nothex'}", "digest"},
		{"replicas: 2\nleaderElection: {enabled: false}", "leaderElection.enabled"},
		{"replica: 1", "replica"},
		{"analysis: {allowedEndpoints: ['http://a:9090,http://b:9090']}", "allowedEndpoints"},
		{"analysis: {allowedEndpoints: ['prometheus:9090']}", "allowedEndpoints"},
		{"watchNamespace: Team_A", "watchNamespace"},
		{"metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}", "metrics.service.enabled"},
		{"metrics: {port: 8081}", "port"},
		{"serviceAccount: {create: false}", "serviceAccount.name"},
		{"extraArgs: ['concurrent=8']", "extraArgs"},
	} {
		_, err := renderErr(defaultRelease, tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %q: error %v, want one naming %q", tc.values, err, tc.want)
		}
	}
}

// Helm is built into the chart's tooling and tests only, never into the manager.
func TestManagerBuildsWithoutHelm(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../cmd/manager").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "helm.sh/") {
			t.Errorf("cmd/manager depends on %s", p)
		}
	}
}

// make chart's package holds the chart at the version asked for, CRDs included.
func TestPackage(t *testing.T) {
	dir := t.TempDir()
	path, err := Package(chartDir, "1.2.3", dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "ramp-1.2.3.tgz" {
		t.Errorf("package %s", path)
	}
	ch, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "1.2.3" || len(ch.CRDObjects()) != 3 || ch.Schema == nil {
		t.Errorf("packaged chart %s/%s, %d CRDs, schema %t", ch.Metadata.Version, ch.Metadata.AppVersion, len(ch.CRDObjects()), ch.Schema != nil)
	}
	objs, err := Render(path, defaultRelease, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := manager(t, objs); c.Image != release.ManagerImage+":v1.2.3" {
		t.Errorf("packaged chart runs %s", c.Image)
	}
}

// A second shard is a second release in the same namespace (docs/performance.md#sharding):
// nothing it installs besides the CRDs has a name of the first release's, so neither
// overwrites the other's Deployment, service account or roles, and each manager elects on its
// own Lease there (the leader election Role names none).
func TestChartSecondShardBesideTheFirst(t *testing.T) {
	first := render(t, defaultRelease, `extraArgs: ["--watch-label-selector=!sharding.fluxcd.io/key"]`)
	second := render(t, Release{Name: "ramp-shard1", Namespace: defaultRelease.Namespace}, `extraArgs: ["--watch-label-selector=sharding.fluxcd.io/key=shard1"]`)
	for _, u := range second {
		if u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if o := find(first, u.GetKind(), u.GetName()); o != nil && o.GetNamespace() == u.GetNamespace() {
			t.Errorf("both releases install %s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		}
	}
	for _, objs := range [][]*unstructured.Unstructured{first, second} {
		role := as[rbacv1.Role](t, objs, "Role", "")
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "leases") && len(r.ResourceNames) > 0 {
				t.Errorf("Role %s limits the Leases to %v: a shard's Lease is named from its selector", role.Name, r.ResourceNames)
			}
		}
	}
	if _, c := manager(t, second); !slices.Contains(c.Args, "--watch-label-selector=sharding.fluxcd.io/key=shard1") {
		t.Errorf("the second release's manager runs %v", c.Args)
	}
}
