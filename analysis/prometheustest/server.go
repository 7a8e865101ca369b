package prometheustest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Install says how to get a Prometheus server binary.
const Install = "run hack/prometheus.sh (apt-get install -y --no-install-recommends prometheus) or set $PROMETHEUS"

// Binary returns the path of a Prometheus server: $PROMETHEUS, `prometheus` on PATH, or
// /usr/bin/prometheus. The error says how to install one.
func Binary() (string, error) {
	if p := os.Getenv("PROMETHEUS"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$PROMETHEUS=%s: %w: %s", p, err, Install)
		}
		return p, nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus", nil
	}
	return "", errors.New("no prometheus binary: " + Install)
}

// Options of a test Prometheus.
type Options struct {
	// Binary defaults to Binary().
	Binary string
	// Targets are host:port addresses scraped at /metrics.
	Targets []string
	// ScrapeInterval defaults to 1s.
	ScrapeInterval time.Duration
	// ReadyTimeout bounds the wait for /-/ready; defaults to 30s.
	ReadyTimeout time.Duration
}

// Server is a running Prometheus on a loopback port with a temporary TSDB.
type Server struct {
	// URL of the HTTP API, e.g. http://127.0.0.1:41234.
	URL string
	// Started is when the process was started.
	Started time.Time

	cmd  *exec.Cmd
	dir  string
	logs *syncBuffer
	done chan struct{}
	err  error // of cmd.Wait, once done is closed

	stopOnce sync.Once
}

// Start starts Prometheus and waits until it is ready to serve queries (it has no data yet:
// see WaitForData). Stop it with Stop.
func Start(opts Options) (*Server, error) {
	if opts.Binary == "" {
		b, err := Binary()
		if err != nil {
			return nil, err
		}
		opts.Binary = b
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before we bind it
		s, err := start(opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(opts Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "ramp-prometheus-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	targets, _ := json.Marshal(opts.Targets)
	if len(opts.Targets) == 0 {
		targets = []byte("[]")
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: exporter
    scrape_interval: %[1]s
    scrape_timeout: %[1]s
    static_configs:
      - targets: %[2]s
`, opts.ScrapeInterval, targets)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(opts.Binary,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setPdeathsig(cmd.SysProcAttr)
	s := &Server{URL: "http://" + addr, cmd: cmd, dir: dir, logs: logs, done: make(chan struct{})}
	s.Started = time.Now()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", opts.Binary, err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()

	deadline := time.Now().Add(opts.ReadyTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("prometheus exited before it was ready (%v): %s", s.err, logs.String())
		default:
		}
		if resp, err := client.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("prometheus not ready after %s: %s", opts.ReadyTimeout, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitForData polls an instant query every 100ms until it returns a non-empty result, and
// returns how long after Start that was.
func (s *Server) WaitForData(ctx context.Context, query string) (time.Duration, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.PostForm(s.URL+"/api/v1/query", url.Values{"query": {query}})
		if err == nil {
			var r struct {
				Data struct {
					Result json.RawMessage `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err == nil && len(r.Data.Result) > 2 { // not "[]"
				return time.Since(s.Started), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(s.Started), fmt.Errorf("no data for %s after %s: %w; prometheus logs: %s",
				query, time.Since(s.Started).Round(time.Millisecond), ctx.Err(), s.logs.String())
		case <-s.done:
			return time.Since(s.Started), fmt.Errorf("prometheus exited (%v): %s", s.err, s.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Logs returns what Prometheus wrote so far.
func (s *Server) Logs() string { return s.logs.String() }

// Stop terminates Prometheus (SIGTERM, SIGKILL after 10s), waits for it and removes its
// TSDB. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		os.RemoveAll(s.dir)
	})
	var ee *exec.ExitError
	if s.err != nil && !errors.As(s.err, &ee) {
		return s.err
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 { // keep memory bounded
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.b.String())
}

// TB is the part of testing.TB that BinaryFor needs.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// BinaryFor is Binary for a test: without a binary the test skips, or fails when
// $RAMP_REQUIRE_PROMETHEUS is set (make test sets it, so nothing skips there).
func BinaryFor(t TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("RAMP_REQUIRE_PROMETHEUS") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return bin
}
