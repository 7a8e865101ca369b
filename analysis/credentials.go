package analysis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/common/config"
)

// SecretGetter returns the data of the Secret namespace/name (a controller wires it to its
// Kubernetes client). Its errors are shown in analysis messages, so it must not put secret
// values in them.
type SecretGetter func(ctx context.Context, namespace, name string) (map[string][]byte, error)

// Keys of the credentials Secret (spec.analysis.prometheus.secretRef).
const (
	SecretKeyToken    = "token"    // bearer token
	SecretKeyUsername = "username" // basic auth, with password
	SecretKeyPassword = "password"
	SecretKeyCA       = "ca.crt"  // PEM CA bundle to verify Prometheus' certificate
	SecretKeyCert     = "tls.crt" // PEM client certificate, with tls.key
	SecretKeyKey      = "tls.key"
)

// HTTPClientConfig builds the Prometheus HTTP client configuration from a credentials
// Secret's data. Other keys are ignored. Errors name keys, never values.
func HTTPClientConfig(data map[string][]byte) (config.HTTPClientConfig, error) {
	cfg := config.DefaultHTTPClientConfig
	has := func(k string) bool { return len(data[k]) > 0 }
	str := func(k string) string { return strings.TrimSpace(string(data[k])) }

	switch {
	case has(SecretKeyToken) && (has(SecretKeyUsername) || has(SecretKeyPassword)):
		return cfg, errors.New("secret sets both token and username/password; use one")
	case has(SecretKeyToken):
		cfg.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(str(SecretKeyToken))}
	case has(SecretKeyUsername) != has(SecretKeyPassword):
		return cfg, errors.New("secret must set both username and password for basic auth")
	case has(SecretKeyUsername):
		cfg.BasicAuth = &config.BasicAuth{Username: str(SecretKeyUsername), Password: config.Secret(str(SecretKeyPassword))}
	}
	if has(SecretKeyCert) != has(SecretKeyKey) {
		return cfg, errors.New("secret must set both tls.crt and tls.key for a client certificate")
	}
	cfg.TLSConfig = config.TLSConfig{
		CA:   string(data[SecretKeyCA]),
		Cert: string(data[SecretKeyCert]),
		Key:  config.Secret(data[SecretKeyKey]),
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid credentials: %w", err)
	}
	return cfg, nil
}

// secretValues are the values an error message must never show.
func secretValues(data map[string][]byte) []string {
	var out []string
	for _, k := range []string{SecretKeyToken, SecretKeyPassword, SecretKeyKey} {
		if v := strings.TrimSpace(string(data[k])); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// newClientFor builds a Client for address with the credentials in data (nil: none).
func newClientFor(address string, data map[string][]byte) (*Client, error) {
	cfg, err := HTTPClientConfig(data)
	if err != nil {
		return nil, err
	}
	hc, err := config.NewClientFromConfig(cfg, "ramp-analysis", config.WithUserAgent("ramp"))
	if err != nil {
		// common/config describes inline secrets as "inline", never by value.
		return nil, fmt.Errorf("building prometheus HTTP client: %w", err)
	}
	return NewClient(address, hc, secretValues(data)...)
}
