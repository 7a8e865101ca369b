package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// managerProc is ramp's manager running as a child process (RunManager).
type managerProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	log  *os.File
}

// startManager starts the manager process against the cluster of kubeconfig and waits until
// its caches are synced.
func startManager(ctx context.Context, command func(args ...string) *exec.Cmd, kubeconfig, logPath string, args ...string) (*managerProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := command(append([]string{ManagerSubcommand}, args...)...)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "KUBECONFIG="+kubeconfig)
	cmd.Stderr = logf
	// Die with the bench even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the manager process: %w", err)
	}
	m := &managerProc{cmd: cmd, done: make(chan struct{}), log: logf}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if addr, ok := strings.CutPrefix(line, readyPrefix); ok {
				ready <- addr
				continue
			}
			fmt.Fprintln(logf, line)
		}
	}()
	go func() { _ = cmd.Wait(); close(m.done) }()
	select {
	case m.addr = <-ready:
		return m, nil
	case <-m.done:
		logf.Close()
		return nil, fmt.Errorf("the manager process exited before it was ready (%v): see %s", cmd.ProcessState, logPath)
	case <-time.After(2 * time.Minute):
	case <-ctx.Done():
	}
	m.stop()
	return nil, fmt.Errorf("the manager process did not become ready: see %s", logPath)
}

func (m *managerProc) call(method, path string) (ManagerStats, error) {
	var st ManagerStats
	req, err := http.NewRequest(method, "http://"+m.addr+path, nil)
	if err != nil {
		return st, err
	}
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("manager %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("manager %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return st, json.Unmarshal(b, &st)
}

// mark starts the measured window and returns the counters at its start.
func (m *managerProc) mark() (ManagerStats, error) { return m.call(http.MethodPost, "/mark") }

// finish ends the measured window (profiles written) and returns the counters.
func (m *managerProc) finish() (ManagerStats, error) { return m.call(http.MethodPost, "/finish") }

func (m *managerProc) stats() (ManagerStats, error) { return m.call(http.MethodGet, "/stats") }

// stop asks the manager to stop (SIGTERM) and kills it after 15s.
func (m *managerProc) stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(15 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
	_ = m.log.Close()
}

// selfCommand re-executes the running binary.
func selfCommand(args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exec.Command(exe, args...)
}
