package analysis

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func basicAuth(h string) (user, pass string, ok bool) {
	r := &http.Request{Header: http.Header{"Authorization": {h}}}
	return r.BasicAuth()
}

func TestHTTPClientConfig(t *testing.T) {
	cfg, err := HTTPClientConfig(map[string][]byte{"token": []byte(" abc-token\n"), "unrelated": []byte("x")})
	if err != nil || cfg.Authorization == nil || cfg.Authorization.Type != "Bearer" || string(cfg.Authorization.Credentials) != "abc-token" || cfg.BasicAuth != nil {
		t.Errorf("token: %+v %v", cfg.Authorization, err)
	}
	cfg, err = HTTPClientConfig(map[string][]byte{"username": []byte("u"), "password": []byte("p\n")})
	if err != nil || cfg.BasicAuth == nil || cfg.BasicAuth.Username != "u" || string(cfg.BasicAuth.Password) != "p" || cfg.Authorization != nil {
		t.Errorf("basic: %+v %v", cfg.BasicAuth, err)
	}
	if cfg, err = HTTPClientConfig(nil); err != nil || cfg.BasicAuth != nil || cfg.Authorization != nil || !cfg.FollowRedirects {
		t.Errorf("empty: %+v %v", cfg, err)
	}
	for _, tt := range []struct {
		data map[string][]byte
		want string
	}{
		{map[string][]byte{"token": []byte("tok-secret"), "username": []byte("u"), "password": []byte("pw-secret")}, "both token and username/password"},
		{map[string][]byte{"username": []byte("u")}, "both username and password"},
		{map[string][]byte{"password": []byte("pw-secret")}, "both username and password"},
		{map[string][]byte{"tls.crt": []byte("cert")}, "both tls.crt and tls.key"},
		{map[string][]byte{"tls.key": []byte("key-secret")}, "both tls.crt and tls.key"},
	} {
		_, err := HTTPClientConfig(tt.data)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", keys(tt.data), err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret\"") || err != nil && strings.Contains(err.Error(), "-secret") {
			t.Errorf("error shows a secret value: %v", err)
		}
	}
	// Unparseable TLS material fails when the client is built, without showing it.
	_, err = newClientFor("https://prom", map[string][]byte{"tls.crt": []byte("not-a-cert"), "tls.key": []byte("key-secret-material")})
	if err == nil || strings.Contains(err.Error(), "key-secret-material") {
		t.Errorf("bad key pair: %v", err)
	}
	_, err = newClientFor("https://prom", map[string][]byte{"ca.crt": []byte("not-a-ca")})
	if err == nil || strings.Contains(err.Error(), "not-a-ca") {
		t.Errorf("bad CA: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTLSAndCredentials runs rounds against an HTTPS Prometheus that checks its clients:
// CA from ca.crt, bearer token, then a client certificate from tls.crt/tls.key.
func TestTLSAndCredentials(t *testing.T) {
	clientCert, clientKey := selfSigned(t, "ramp")
	clientPool := x509.NewCertPool()
	block, _ := pem.Decode(clientCert)
	cc, _ := x509.ParseCertificate(block.Bytes)
	clientPool.AddCert(cc)

	var lastAuth string
	var lastPeer []*x509.Certificate
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastAuth, lastPeer = r.Header.Get("Authorization"), r.TLS.PeerCertificates
		_, _ = w.Write([]byte(vectorOf(0.5)))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted round's handshake error
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientPool}
	srv.StartTLS()
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	ro := rollout(srv.URL, rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(1)})
	ro.Spec.Analysis.Prometheus.SecretRef = &rampv1.LocalObjectReference{Name: "creds"}
	var secret map[string][]byte
	a := NewAnalyzer(WithSecretGetter(func(context.Context, string, string) (map[string][]byte, error) { return secret, nil }))

	// Without the CA the server's certificate is not trusted: unreachable, inconclusive.
	secret = map[string][]byte{"token": []byte("tok")}
	got := a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "unreachable") || !strings.Contains(got.Reason, "certificate") {
		t.Errorf("untrusted server: %s %q", got.Verdict, got.Reason)
	}

	secret = map[string][]byte{"token": []byte("tok"), "ca.crt": caPEM}
	if got = a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictPassed || lastAuth != "Bearer tok" || len(lastPeer) != 0 {
		t.Errorf("CA + token: %s %q auth=%q peer certs=%d", got.Verdict, got.Reason, lastAuth, len(lastPeer))
	}

	secret = map[string][]byte{"ca.crt": caPEM, "tls.crt": clientCert, "tls.key": clientKey}
	if got = a.Analyze(context.Background(), ro); got.Verdict != rampv1.VerdictPassed || lastAuth != "" || len(lastPeer) != 1 || lastPeer[0].Subject.CommonName != "ramp" {
		t.Errorf("client certificate: %s %q auth=%q peer certs=%d", got.Verdict, got.Reason, lastAuth, len(lastPeer))
	}
}

func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
