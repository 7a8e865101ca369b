package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/testenv"
)

const kubeconfigTmpl = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: https://127.0.0.1:6443}
users:
- name: u
  user: {token: t}
contexts:
- name: dev
  context: {cluster: c, user: u%s}
- name: other
  context: {cluster: c, user: u, namespace: elsewhere}
current-context: dev
`

func writeKubeconfig(t *testing.T, namespace string) string {
	t.Helper()
	ns := ""
	if namespace != "" {
		ns = ", namespace: " + namespace
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, fmt.Appendf(nil, kubeconfigTmpl, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Outside a cluster, the Lease goes to the namespace of the kubeconfig's current context, from
// the same kubeconfig the client uses.
func TestLeaderElectionNamespace(t *testing.T) {
	withNS, withoutNS := writeKubeconfig(t, "team-a"), writeKubeconfig(t, "")
	cases := []struct {
		name           string
		flag, envVar   string
		wantNS, wantBy string
		wantErr        bool
	}{
		{name: "--kubeconfig, context with a namespace", flag: withNS, wantNS: "team-a", wantBy: `kubeconfig context "dev"`},
		{name: "--kubeconfig, context without one", flag: withoutNS, wantNS: "default", wantBy: `kubeconfig context "dev"`},
		{name: "$KUBECONFIG", envVar: withNS, wantNS: "team-a", wantBy: `kubeconfig context "dev"`},
		{name: "--kubeconfig wins over $KUBECONFIG", flag: withoutNS, envVar: withNS, wantNS: "default", wantBy: `kubeconfig context "dev"`},
		{name: "--kubeconfig missing", flag: filepath.Join(t.TempDir(), "nope"), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir()) // no ~/.kube/config
			t.Setenv("KUBECONFIG", tc.envVar)
			ns, by, err := leaderElectionNamespace(tc.flag)
			if (err != nil) != tc.wantErr || ns != tc.wantNS || by != tc.wantBy {
				t.Errorf("got %q, %q, %v; want %q, %q, error %v", ns, by, err, tc.wantNS, tc.wantBy, tc.wantErr)
			}
		})
	}
}

// The real binary, started as a developer would outside a cluster (only $KUBECONFIG, default
// flags but for free ports), elects itself leader, reconciles a Rollout and stops cleanly on
// SIGTERM, releasing its Lease.
func TestManagerRunsLocallyWithDefaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := testenv.StartT(ctx, t, testenv.Options{})

	probe, metrics := freePort(t), freePort(t)
	var logs strings.Builder
	cmd := exec.Command(bin, "--metrics-bind-address="+metrics, "--health-probe-bind-address="+probe)
	cmd.Env = []string{"KUBECONFIG=" + env.Kubeconfig, "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	// The waits below end early if the manager exits.
	running, exit := context.WithCancel(ctx)
	defer exit()
	dead := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(dead); exit() }()
	defer func() {
		select {
		case <-dead:
		default:
			_ = cmd.Process.Kill()
			<-dead
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", logs.String())
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf(format+" (manager exited: %v)", append(args, err)...)
		default:
			t.Fatalf(format, args...)
		}
	}

	// The kubeconfig's context names no namespace: the Lease is in "default".
	lease := &coordinationv1.Lease{}
	if err := testenv.WaitFor(running, time.Minute, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ramp-controller.ramp.dev"}, lease)
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", client.IgnoreNotFound(err)
	}); err != nil {
		fail("no leader Lease: %v", err)
	}
	if err := testenv.WaitFor(running, 30*time.Second, func(ctx context.Context) (bool, error) {
		res, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK, nil
	}); err != nil {
		fail("/readyz: %v", err)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "local-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// A Deployment that never rolls out (envtest runs no controllers): ramp waits to adopt it.
	labels := map[string]string{"app": "web"}
	web := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			},
		},
	}
	if err := env.Client.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, testenv.ServiceFor(web, 8080)); err != nil {
		t.Fatal(err)
	}
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "web"},
			Service:   rampv1.ServiceSpec{Port: 8080},
			Strategy:  rampv1.Strategy{Canary: &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{{SetWeight: 50}, {SetWeight: 100}}}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(running, time.Minute, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro)
		return err == nil && ro.Status.ObservedGeneration == ro.Generation && ro.Status.Phase == rampv1.PhaseInitializing, err
	}); err != nil {
		fail("the Rollout was not reconciled: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("manager exited with %v on SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("manager still running 30s after SIGTERM")
	}
	// Released on a clean stop, so a next replica takes over at once.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(lease), lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("Lease still held by %q after a clean stop", *h)
	}
}

// freePort returns a loopback address with a port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
