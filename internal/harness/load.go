package harness

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/loadgen"
	"github.com/ramp-dev/ramp/internal/release"
)

// LoadExampleDir is the load example's directory, relative to the repository's root: a
// blue/green preview no user reaches, judged on the requests of ramp's load generator.
const LoadExampleDir = "examples/podinfo-bluegreen-load"

// LoadExample is an example with ramp's load generator (LoadExampleDir), as kubectl apply -k
// builds it.
type LoadExample struct {
	// Objects are all of its objects, in the order kubectl apply -k applies them.
	Objects []*unstructured.Unstructured
	// Rollout is its Rollout, typed.
	Rollout *rampv1.Rollout
	// LoadArgs are the container arguments of its ramp-load Deployment: `load` and its flags.
	LoadArgs []string
	// LoadImage is the image of that container.
	LoadImage string
}

// ReadLoadExample builds the example in dir with kustomize (internal/release) and finds its
// Rollout and the image and arguments its ramp-load Deployment (one container) runs
// `manager load` with.
func ReadLoadExample(dir string) (*LoadExample, error) {
	objs, err := release.Kustomize(dir)
	if err != nil {
		return nil, err
	}
	ex := &LoadExample{Objects: objs}
	for _, u := range objs {
		switch {
		case u.GetKind() == "Rollout":
			ex.Rollout = &rampv1.Rollout{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ex.Rollout); err != nil {
				return nil, fmt.Errorf("%s: Rollout: %w", dir, err)
			}
		case u.GetKind() == "Deployment" && u.GetName() == "ramp-load":
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			if len(cs) == 1 {
				if c, ok := cs[0].(map[string]any); ok {
					ex.LoadArgs, _, _ = unstructured.NestedStringSlice(c, "args")
					ex.LoadImage, _, _ = unstructured.NestedString(c, "image")
				}
			}
		}
	}
	if ex.Rollout == nil || len(ex.LoadArgs) == 0 || ex.LoadArgs[0] != "load" {
		return nil, fmt.Errorf("%s: no Rollout, or no ramp-load Deployment running `manager load` (args %q)", dir, ex.LoadArgs)
	}
	return ex, nil
}

// LoadGenerator is ramp's load generator (internal/loadgen) in-process, configured by a
// container's arguments as `manager load` reads them, with a sidecar: every request it sends
// goes through an HTTP proxy handler, as through the pod's Istio sidecar. A mesh simulator
// (meshsim.Sim) is one: it routes each request by istiod's configuration and counts it in
// Istio's telemetry. Its gate endpoint is the embedded Server (an http.Handler).
type LoadGenerator struct {
	*loadgen.Server
	// Flags are the arguments read; Listen is not used (the caller serves the Server).
	Flags *loadgen.Flags

	sidecar net.Listener
	mu      sync.Mutex
	srv     *http.Server
	stop    sync.Once
}

// NewLoadGenerator reads args (`load` and its flags, as a ramp-load Deployment gives them)
// and binds the loopback listener of its sidecar, served by ServeSidecar. logf receives the
// generator's log (nil: none).
func NewLoadGenerator(args []string, logf func(format string, args ...any)) (*LoadGenerator, error) {
	if len(args) == 0 || args[0] != "load" {
		return nil, fmt.Errorf("load generator arguments %q: want `load` and its flags", args)
	}
	f, err := loadgen.ParseFlags(args[1:], &strings.Builder{})
	if err != nil {
		return nil, fmt.Errorf("load generator arguments %q: %w", args, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	proxy := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	f.Client = &http.Client{Timeout: f.RequestTimeout, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	f.Logf = logf
	return &LoadGenerator{Server: loadgen.New(f.Config), Flags: f, sidecar: ln}, nil
}

// ServeSidecar serves proxy as the sidecar every request goes through, until Stop. Call it
// once; requests sent before it wait for it (the listener exists from New).
func (g *LoadGenerator) ServeSidecar(proxy http.Handler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		return
	}
	g.srv = &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.srv.Serve(g.sidecar) }()
}

// Stop ends the loads and closes the sidecar. It is safe to call more than once.
func (g *LoadGenerator) Stop() {
	g.stop.Do(func() {
		g.Server.Stop()
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.srv != nil {
			_ = g.srv.Close()
		} else {
			_ = g.sidecar.Close()
		}
	})
}
