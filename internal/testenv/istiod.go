package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// IstioNamespace is istiod's namespace (its POD_NAMESPACE), where it keeps its CA secret.
	IstioNamespace = "istio-system"
	// IstioWebhookName is the name of the ValidatingWebhookConfiguration that sends every
	// networking.istio.io write to istiod. Not Istio's own name, which istiod would manage.
	IstioWebhookName = "ramp-testenv-istio-validation"
	// istioCRDFile is Istio's full CRD set, copied next to the binaries by hack/istio-bins.sh
	// from the same istio.io/istio module pilot-discovery is built from.
	istioCRDFile = "crd-all.gen.yaml"
	// istiodReadyTimeout bounds istiod's start: ready about 2 s after start when idle, much
	// later on a busy 2-core machine.
	istiodReadyTimeout = 2 * time.Minute
)

// Istiod is the istiod (pilot-discovery, out of cluster) an Env runs: Istio's control plane
// with its validating webhook registered with the API server.
type Istiod struct {
	// HTTPAddr serves /ready and istiod's debug endpoints, such as /debug/configz (the Istio
	// configuration istiod holds).
	HTTPAddr string
	// GRPCAddr serves xDS (ADS) in plain text, as to a sidecar: internal/meshsim subscribes
	// there (meshsim.Options.XDSAddr) and routes by what istiod sends.
	GRPCAddr string
	// MonitoringAddr serves istiod's Prometheus metrics on /metrics.
	MonitoringAddr string
	// WebhookURL is the validation webhook's URL the API server calls.
	WebhookURL string
	// CACert is the PEM of the CA that signed the webhook's serving certificate (127.0.0.1).
	CACert []byte
}

// startIstiod creates istiod's namespace, its serving certificate and starts pilot-discovery;
// awaitIstiod then waits for it and puts its webhook in force. In between, the caller starts
// the rest of the cluster.
func (e *Env) startIstiod(ctx context.Context) error {
	dir := filepath.Join(e.tmp, "istiod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IstioNamespace}}
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", IstioNamespace, err)
	}
	caPEM, certPEM, keyPEM, err := servingCert("127.0.0.1")
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM, "mesh.yaml": nil}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	e.Istiod = &Istiod{
		HTTPAddr:       addr(0),
		GRPCAddr:       addr(1),
		MonitoringAddr: addr(3),
		WebhookURL:     "https://" + addr(5) + "/validate",
		CACert:         caPEM,
	}
	cmd := exec.Command(filepath.Join(e.IstioBinDir, "pilot-discovery"), "discovery",
		"--kubeconfig", e.Kubeconfig,
		// An empty mesh config file is Istio's default mesh.
		"--meshConfig", filepath.Join(dir, "mesh.yaml"),
		"--httpAddr", addr(0),
		"--grpcAddr", addr(1),
		"--secureGRPCAddr", addr(2),
		"--monitoringAddr", addr(3),
		"--ctrlz_port", strconv.Itoa(ports[4]),
		"--ctrlz_address", "127.0.0.1",
		// The webhook listens on all interfaces by default: bind it to the address its
		// certificate names, on a port of its own so parallel Envs do not collide.
		"--httpsAddr", addr(5),
		"--tlsCertFile", filepath.Join(dir, "cert.pem"),
		"--tlsKeyFile", filepath.Join(dir, "key.pem"),
		"--caCertFile", filepath.Join(dir, "ca.pem"),
	)
	cmd.Dir = dir // istiod writes some files relative to its working directory
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+IstioNamespace, "POD_NAME=istiod-local", "REVISION=default")
	if err := e.launch("istiod", cmd); err != nil {
		return err
	}
	e.istiod = e.procs[len(e.procs)-1]
	return nil
}

// awaitIstiod waits until istiod is ready, registers its validating webhook and returns once
// the API server sends Istio writes to it: a dry-run create of an invalid VirtualService is
// denied by istiod.
func (e *Env) awaitIstiod(ctx context.Context) error {
	p := e.istiod
	httpc := &http.Client{Timeout: 2 * time.Second}
	// /ready answers 503 until istiod's informers have synced: poll for 200, not a connection.
	err := WaitFor(ctx, istiodReadyTimeout, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("istiod exited: %v", p.cmd.ProcessState)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Istiod.HTTPAddr+"/ready", nil)
		if err != nil {
			return false, err
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("istiod not ready: %w\n--- %s (last lines) ---\n%s", err, p.log, tail(p.log, 30))
	}

	all := []string{"*"}
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: IstioWebhookName},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "validation.istio.io",
			ClientConfig: admissionv1.WebhookClientConfig{
				URL:      ptr.To(e.Istiod.WebhookURL),
				CABundle: e.Istiod.CACert,
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule:       admissionv1.Rule{APIGroups: []string{"networking.istio.io"}, APIVersions: all, Resources: all},
			}},
			FailurePolicy:           ptr.To(admissionv1.Fail),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
		}},
	}
	if err := e.Client.Create(ctx, vwc); err != nil {
		return fmt.Errorf("registering istiod's validating webhook: %w", err)
	}

	// The API server picks the configuration up asynchronously.
	var last error
	err = WaitFor(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		last = e.Client.Create(ctx, InvalidVirtualService(IstioNamespace, "ramp-testenv-probe"), client.DryRunAll)
		return last != nil && IsIstioDenial(last), nil
	})
	if err != nil {
		return fmt.Errorf("istiod's webhook not in force (last answer to an invalid VirtualService: %v): %w", last, err)
	}
	return nil
}

// IsIstioDenial reports whether err is the API server relaying a denial by istiod's
// validating webhook.
func IsIstioDenial(err error) bool {
	return err != nil && strings.Contains(err.Error(), `admission webhook "validation.istio.io" denied the request`)
}

// InvalidVirtualService is a VirtualService that passes the CRD's schema but not Istio's
// validation (istiod compiles header regexes and checks gateway names), for probing that
// istiod's webhook is in force.
func InvalidVirtualService(namespace, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"hosts":    []any{"probe"},
			"gateways": []any{"not a gateway!!"},
			"http": []any{map[string]any{
				"match": []any{map[string]any{"headers": map[string]any{"x-probe": map[string]any{"regex": "(unclosed"}}}},
				"route": []any{map[string]any{"destination": map[string]any{"host": "probe"}}},
			}},
		},
	}}
}

// Validations are istiod's webhook's counts of admission reviews since it started (dry runs
// it denied are not counted).
type Validations struct {
	Passed, Failed int
	// ByResource counts passed reviews by resource (virtualservices, destinationrules, ...).
	ByResource map[string]int
}

// Validations reads istiod's validation counters from its metrics.
func (i *Istiod) Validations(ctx context.Context) (Validations, error) {
	v := Validations{ByResource: map[string]int{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+i.MonitoringAddr+"/metrics", nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("istiod metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return v, fmt.Errorf("istiod metrics: %w", err)
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			n := int(m.GetCounter().GetValue())
			switch name {
			case "galley_validation_passed":
				v.Passed += n
				for _, l := range m.GetLabel() {
					if l.GetName() == "resource" {
						v.ByResource[l.GetValue()] += n
					}
				}
			case "galley_validation_failed":
				v.Failed += n
			}
		}
	}
	return v, nil
}

// Holds reports whether istiod's configuration store holds the Istio object of kind
// (VirtualService, DestinationRule, ...) namespace/name, as its /debug/configz lists it.
func (i *Istiod) Holds(ctx context.Context, kind, namespace, name string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+i.HTTPAddr+"/debug/configz", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("istiod /debug/configz: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var configs []struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &configs); err != nil {
		return false, fmt.Errorf("istiod /debug/configz: %w", err)
	}
	for _, c := range configs {
		if c.Kind == kind && c.Metadata.Namespace == namespace && c.Metadata.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// servingCert returns a fresh self-signed CA and a serving certificate and key it signed for
// the IP address ip, all PEM.
func servingCert(ip string) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ramp testenv CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ip},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. Another process may take one
// before istiod binds it; istiod then exits and Start fails with its log.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// istioBinDir returns a directory holding pilot-discovery and Istio's CRDs: ISTIO_BINS when it
// has them, else the cache hack/istio-bins.sh fills (building on first use).
func istioBinDir(ctx context.Context, root string) (string, error) {
	need := []string{"pilot-discovery", istioCRDFile}
	if dir := os.Getenv("ISTIO_BINS"); dir != "" && hasAll(dir, need) {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "istio-bins.sh"), "pilot-discovery")
	cmd.Dir = root
	cmd.Stderr = os.Stderr // a cold build takes minutes: show progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/istio-bins.sh pilot-discovery: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 || !hasAll(lines[len(lines)-1], need) {
		return "", fmt.Errorf("hack/istio-bins.sh printed %q, which lacks some of %v", out, need)
	}
	return lines[len(lines)-1], nil
}
