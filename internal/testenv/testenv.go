// Package testenv runs a real Kubernetes API server for ramp's integration tests, demo and e2e
// tests: controller-runtime's envtest with ramp's CRD, Istio's VirtualService and
// DestinationRule CRDs and the Gateway API's standard CRDs (HTTPRoute, ...) installed. With Options.LocalCluster it also runs
// kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods become Ready), so
// Deployments really roll out, without containers or a container runtime.
//
// With Options.Istiod (implied by LocalCluster) it runs istiod, Istio's control plane,
// against the API server with Istio's full CRD set, and registers istiod's validating webhook
// for networking.istio.io: every VirtualService and DestinationRule written to the Env is
// validated by Istio's own code at admission, as in a cluster with Istio installed.
//
// The binaries come from KUBEBUILDER_ASSETS when it holds them, otherwise from
// hack/cluster-bins.sh, which builds them once from the Go module proxy and caches them;
// istiod (pilot-discovery) and Istio's CRDs likewise from ISTIO_BINS or hack/istio-bins.sh.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	rampv1alpha1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// kwokConfig is kwok's KwokConfiguration; Start appends the cached stage files to it.
//
//go:embed kwok.yaml
var kwokConfig string

// istioCRDNames are the Istio CRDs ramp writes; without istiod they are installed from
// istio.io/api so tests run against Istio's real schema and CEL rules.
var istioCRDNames = []string{"virtualservices.networking.istio.io", "destinationrules.networking.istio.io"}

// stopGrace is how long Stop lets a component exit on SIGTERM before killing it.
const stopGrace = 10 * time.Second

// Options configure Start.
type Options struct {
	// LocalCluster also runs kube-controller-manager, kube-scheduler and kwok, and registers
	// Nodes fake nodes, so that Deployments, ReplicaSets and Pods behave as in a cluster.
	LocalCluster bool
	// Nodes is how many fake nodes a local cluster gets. Defaults to 1.
	Nodes int
	// Istiod runs istiod with its validating webhook (see Env.Istiod) and installs Istio's
	// full CRD set from the istio.io/istio module it is built from. LocalCluster implies it.
	Istiod bool
	// LogDir receives a log file per process. Defaults to a temporary directory that Stop
	// removes; set it to keep the logs.
	LogDir string
}

// Env is a running API server, and local cluster when asked for.
type Env struct {
	// Config connects as a cluster admin.
	Config *rest.Config
	// Scheme has client-go's types, ramp's v1alpha1 and Istio's networking/v1 (as ramp's
	// manager does).
	Scheme *k8sruntime.Scheme
	// Client is a controller-runtime client using Scheme.
	Client client.Client
	// Clientset is a client-go clientset, for what controller-runtime's client does not do.
	Clientset *kubernetes.Clientset
	// Kubeconfig is the path of a kubeconfig file for a cluster admin (for kubectl, or
	// processes started by the caller).
	Kubeconfig string
	// BinDir holds the Kubernetes binaries in use.
	BinDir string
	// LogDir holds the processes' logs.
	LogDir string
	// IstioBinDir holds pilot-discovery and Istio's CRDs when istiod runs.
	IstioBinDir string
	// Istiod is the running istiod, nil unless Options.Istiod or LocalCluster.
	Istiod *Istiod

	env   *envtest.Environment
	tmp   string
	logs  []*os.File
	procs []*proc
	// istiod is the istiod process among procs, when it runs.
	istiod *proc
}

// proc is a component the harness started itself.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Start starts the API server (and the local cluster) and returns when it is usable: CRDs
// established and, for a local cluster, every node Ready. ctx bounds start-up only (including
// a first build of the binaries, which takes minutes); the Env runs until Stop.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	bins, err := binDir(ctx, root, opts.LocalCluster)
	if err != nil {
		return nil, err
	}
	opts.Istiod = opts.Istiod || opts.LocalCluster
	var istioBins string
	var istio []*apiextensionsv1.CustomResourceDefinition
	if opts.Istiod {
		if istioBins, err = istioBinDir(ctx, root); err != nil {
			return nil, err
		}
		istio, err = readCRDs(filepath.Join(istioBins, istioCRDFile), nil)
	} else {
		istio, err = istioCRDs(ctx, root)
	}
	if err != nil {
		return nil, err
	}
	// The Gateway API's CRDs, installed with the others before istiod starts: istiod serves
	// HTTPRoutes (ramp's Gateway API router) only when they exist at its start.
	gateway, err := gatewayAPICRDs(ctx, root)
	if err != nil {
		return nil, err
	}

	e := &Env{BinDir: bins, LogDir: opts.LogDir, IstioBinDir: istioBins}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "ramp-testenv-"); err != nil {
		return nil, err
	}
	if e.LogDir == "" {
		e.LogDir = filepath.Join(e.tmp, "logs")
	}
	if err := os.MkdirAll(e.LogDir, 0o755); err != nil {
		return nil, err
	}

	e.Scheme = k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(e.Scheme); err != nil {
		return nil, err
	}
	if err := rampv1alpha1.AddToScheme(e.Scheme); err != nil {
		return nil, err
	}
	if err := networkingv1.AddToScheme(e.Scheme); err != nil {
		return nil, err
	}
	if err := gwapiv1.Install(e.Scheme); err != nil {
		return nil, err
	}

	apiLog, err := e.logFile("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcdLog, err := e.logFile("etcd")
	if err != nil {
		return nil, err
	}
	e.env = &envtest.Environment{
		// Explicit paths: KUBEBUILDER_ASSETS would otherwise win over the directory we chose.
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: filepath.Join(bins, "kube-apiserver"), Out: apiLog, Err: apiLog},
			Etcd:      &envtest.Etcd{Path: filepath.Join(bins, "etcd"), Out: etcdLog, Err: etcdLog},
		},
		Scheme:                e.Scheme,
		ErrorIfCRDPathMissing: true,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths: []string{filepath.Join(root, "config", "crd", "bases")},
			CRDs:  append(istio, gateway...),
		},
	}
	// envtest's 20 s default is tight on a busy 2-core machine; its variable still wins.
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		e.env.ControlPlaneStartTimeout = time.Minute
	}
	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("starting envtest: %w%s", err, e.logTails())
	}

	if e.Client, err = client.New(e.Config, client.Options{Scheme: e.Scheme}); err != nil {
		return nil, err
	}
	if e.Clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
		return nil, err
	}
	// A separate admin user for the kubeconfig file, as the other components and kubectl need
	// one on disk; system:masters bypasses RBAC like a cluster's own components.
	admin, err := e.env.AddUser(envtest.User{Name: "ramp-admin", Groups: []string{"system:masters"}}, &rest.Config{})
	if err != nil {
		return nil, fmt.Errorf("adding admin user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.tmp, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}

	// istiod starts first and is awaited last: its start overlaps the local cluster's.
	if opts.Istiod {
		if err := e.startIstiod(ctx); err != nil {
			return nil, err
		}
	}
	if opts.LocalCluster {
		if err := e.startLocalCluster(ctx, opts.Nodes); err != nil {
			return nil, err
		}
	}
	if opts.Istiod {
		if err := e.awaitIstiod(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// startLocalCluster runs the components that make workloads move and waits for n Ready nodes.
func (e *Env) startLocalCluster(ctx context.Context, n int) error {
	stages, err := os.ReadFile(filepath.Join(e.BinDir, "kwok-stages.yaml"))
	if err != nil {
		return err
	}
	kwokFile := filepath.Join(e.tmp, "kwok.yaml")
	kwokDoc := kwokConfig + "---\n" + strings.TrimPrefix(string(stages), "---\n")
	if err := os.WriteFile(kwokFile, []byte(kwokDoc), 0o644); err != nil {
		return err
	}

	kc := "--kubeconfig=" + e.Kubeconfig
	// Generous client rate limits: the defaults (20 QPS) make a rollout take seconds.
	qps := []string{"--kube-api-qps=5000", "--kube-api-burst=10000"}
	components := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", append([]string{kc, "--secure-port=0", "--leader-elect=false", "--controllers=*",
			// The API server verifies service account tokens with envtest's key pair.
			"--service-account-private-key-file=" + filepath.Join(e.env.ControlPlane.APIServer.CertDir, "sa-signer.key")}, qps...)},
		{"kube-scheduler", append([]string{kc, "--secure-port=0", "--leader-elect=false"}, qps...)},
		{"kwok", []string{kc, "--config=" + kwokFile}},
	}
	for _, c := range components {
		if err := e.run(c.name, c.args...); err != nil {
			return err
		}
	}

	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	for i := range n {
		name := fmt.Sprintf("kwok-node-%d", i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name},
			},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if err := e.Client.Create(ctx, node); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
	}

	const timeout = 60 * time.Second
	ready := 0
	err = WaitFor(ctx, timeout, func(ctx context.Context) (bool, error) {
		for _, p := range e.procs {
			select {
			case <-p.done:
				return false, fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
			default:
			}
		}
		var nodes corev1.NodeList
		if err := e.Client.List(ctx, &nodes, client.MatchingLabels{"type": "kwok"}); err != nil {
			return false, nil // the API server may be busy; retry until the deadline
		}
		ready = 0
		for _, node := range nodes.Items {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == n, nil
	})
	if err != nil {
		return fmt.Errorf("local cluster: %d/%d fake nodes Ready: %w%s", ready, n, err, e.logTails())
	}
	return nil
}

// run starts a component from BinDir with its output in LogDir/<name>.log.
func (e *Env) run(name string, args ...string) error {
	// Not CommandContext: the Start context ends long before the component should.
	return e.launch(name, exec.Command(filepath.Join(e.BinDir, name), args...))
}

// launch starts cmd as the component name, with its output in LogDir/<name>.log; Stop ends it.
func (e *Env) launch(name string, cmd *exec.Cmd) error {
	log, err := e.logFile(name)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the test binary even when it is killed before Stop runs.
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, log: log.Name(), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.procs = append(e.procs, p)
	return nil
}

func (e *Env) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(e.LogDir, name+".log"))
	if err != nil {
		return nil, err
	}
	e.logs = append(e.logs, f)
	return f, nil
}

// logTails formats the end of every process log, for start-up errors.
func (e *Env) logTails() string {
	var b strings.Builder
	for _, f := range e.logs {
		fmt.Fprintf(&b, "\n--- %s (last lines) ---\n%s", f.Name(), tail(f.Name(), 15))
	}
	return b.String()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop stops the components (SIGTERM, then SIGKILL after a grace period), then the API server
// and etcd, and removes the temporary files. It is safe on a partly started Env.
func (e *Env) Stop() error {
	// Reverse start order: kwok and the scheduler go before the controller manager.
	for i := len(e.procs) - 1; i >= 0; i-- {
		_ = e.procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopGrace)
	for _, p := range e.procs {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	e.procs, e.istiod = nil, nil

	var errs []error
	if e.env != nil {
		if err := e.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping envtest: %w", err))
		}
		e.env = nil
	}
	for _, f := range e.logs {
		_ = f.Close()
	}
	e.logs = nil
	if e.tmp != "" {
		if err := os.RemoveAll(e.tmp); err != nil {
			errs = append(errs, err)
		}
		e.tmp = ""
	}
	return errors.Join(errs...)
}

// binDir returns a directory holding the binaries the mode needs: KUBEBUILDER_ASSETS when it
// has them all, else the cache hack/cluster-bins.sh fills (building on first use).
func binDir(ctx context.Context, root string, local bool) (string, error) {
	mode, need := "envtest", []string{"kube-apiserver", "etcd"}
	if local {
		mode = "local"
		need = append(need, "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml")
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" && hasAll(dir, need) {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "cluster-bins.sh"), mode)
	cmd.Dir = root
	cmd.Stderr = os.Stderr // a cold build takes minutes: show progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/cluster-bins.sh %s: %w", mode, err)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 || !hasAll(lines[len(lines)-1], need) {
		return "", fmt.Errorf("hack/cluster-bins.sh %s printed %q, which lacks some of %v", mode, out, need)
	}
	return lines[len(lines)-1], nil
}

func hasAll(dir string, names []string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

// repoRoot finds ramp's root: the nearest directory above the working directory (go test
// runs in the package's) with go.mod and hack/cluster-bins.sh, else the one above this file.
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for ; ; dir = filepath.Dir(dir) {
			if hasAll(dir, []string{"go.mod", filepath.Join("hack", "cluster-bins.sh")}) {
				return dir, nil
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return "", errors.New("testenv: cannot find the ramp repository (go.mod and hack/cluster-bins.sh) above the working directory")
}

// istioCRDs reads Istio's CRDs for the kinds ramp writes from the istio.io/api module in
// ramp's build list, so their version follows go.mod.
func istioCRDs(ctx context.Context, root string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir, cmd.Stderr = root, &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locating istio.io/api: %w: %s", err, stderr.String())
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	return readCRDs(path, istioCRDNames)
}

// gatewayAPICRDs reads the standard channel's CRDs (HTTPRoute, Gateway, ...) from the
// sigs.k8s.io/gateway-api module in ramp's build list, so their version follows go.mod.
func gatewayAPICRDs(ctx context.Context, root string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir, cmd.Stderr = root, &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locating sigs.k8s.io/gateway-api: %w: %s", err, stderr.String())
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		c, err := readCRDs(f, nil) // a file that holds no CRD (an admission policy) adds none
		if err != nil {
			return nil, err
		}
		crds = append(crds, c...)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no Gateway API CRDs under %s", strings.TrimSpace(string(out)))
	}
	return crds, nil
}

// readCRDs decodes the CRDs named in names from a YAML file, or all of them when names is nil.
func readCRDs(path string, names []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(f), 64<<10)
	for names == nil || len(want) > 0 {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue // an empty document
		}
		if names == nil || want[crd.Name] {
			crds = append(crds, crd)
			delete(want, crd.Name)
		}
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("%s lacks %v", path, want)
	}
	return crds, nil
}
