// Package sessiondtest starts a throwaway sessiond for the client's tests:
// $SESSIOND_BIN (default the repository's target/debug/sessiond) on a free
// loopback port, a fresh data dir, config/roles.yaml, every closed
// session's log kept, at most 20 storage keys per session, and an API keys
// file with keys it makes by `sessiond hash-key --generate`: a service and
// an admin key of tenant acme, a service key of tenant globex.
package sessiondtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// MaxStorageKeys is the server's --storage-max-keys.
const MaxStorageKeys = 20

// readyWithin bounds how long a fresh sessiond may take to serve.
const readyWithin = 15 * time.Second

// Server is a running sessiond.
type Server struct {
	// Address is host:port.
	Address string
	// Keys holds the API keys by name: "acme", "acme-admin", "globex".
	Keys map[string]string
	home string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options add to the test server's configuration.
type Options struct {
	// Env holds more SESSIOND_* settings, e.g. SESSIOND_TLS_CERT.
	Env []string
	// KeyLines are more entries of the API keys file, e.g. a
	// `{name: ..., tenant: ..., role: ..., cert_sha256: ...}` line.
	KeyLines []string
	// Health, when set, is the dial option of the readiness check (e.g. TLS
	// credentials); plaintext by default.
	Health grpc.DialOption
}

// Start starts sessiond and waits until its health check says SERVING.
func Start() (*Server, error) { return StartWith(Options{}) }

// StartWith starts sessiond with opts and waits until it serves.
func StartWith(opts Options) (*Server, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	binary := os.Getenv("SESSIOND_BIN")
	if binary == "" {
		binary = filepath.Join(root, "target", "debug", "sessiond")
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("no sessiond binary at %s (run `cargo build --bin sessiond` or set SESSIOND_BIN): %w", binary, err)
	}
	home, err := os.MkdirTemp("", "sessiond-go-")
	if err != nil {
		return nil, err
	}
	s := &Server{home: home, Keys: map[string]string{}, done: make(chan struct{})}
	var keysFile strings.Builder
	keysFile.WriteString("keys:\n")
	for _, k := range []struct{ name, tenant, role string }{
		{"acme", "acme", "service"}, {"acme-admin", "acme", "admin"}, {"globex", "globex", "service"},
	} {
		key, hash, err := generateKey(binary)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.Keys[k.name] = key
		// Service keys are allowed what the tests do beyond a login flow.
		allow := ""
		if k.role == "service" {
			allow = ", allow: [change_privileges, session_ids]"
		}
		fmt.Fprintf(&keysFile, "  - {name: %s, tenant: %s, role: %s, hash: %q%s}\n", k.name, k.tenant, k.role, hash, allow)
	}
	for _, line := range opts.KeyLines {
		fmt.Fprintf(&keysFile, "  - %s\n", line)
	}
	keysPath := filepath.Join(home, "api-keys.yaml")
	if err := os.WriteFile(keysPath, []byte(keysFile.String()), 0o600); err != nil {
		s.Stop()
		return nil, err
	}
	if s.Address, err = freeAddress(); err != nil {
		s.Stop()
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(home, "sessiond.log"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	defer logFile.Close()
	s.cmd = exec.Command(binary, "--listen", s.Address, "--data-dir", filepath.Join(home, "data"))
	s.cmd.Env = append(environment(),
		"SESSIOND_API_KEYS_FILE="+keysPath,
		"SESSIOND_ROLES_FILE="+filepath.Join(root, "config", "roles.yaml"),
		"SESSIOND_SESSION_LOG_KEEP_ALL=true",
		fmt.Sprintf("SESSIOND_STORAGE_MAX_KEYS=%d", MaxStorageKeys),
	)
	s.cmd.Env = append(s.cmd.Env, opts.Env...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.Stop()
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	health := opts.Health
	if health == nil {
		health = grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	if err := s.waitUntilServing(health); err != nil {
		tail := s.LogTail()
		s.Stop()
		return nil, fmt.Errorf("%w\n---- sessiond log ----\n%s", err, tail)
	}
	return s, nil
}

// Pause stops the server process (SIGSTOP): calls then get no answer. It
// returns once every thread of the process is stopped: SIGSTOP takes effect
// when one of them next runs and takes it, then stops the others, and on a
// busy machine that thread may wait for a CPU while the others answer the
// next call.
func (s *Server) Pause() error {
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	pid := s.cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if allStopped(pid) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("sessiond (pid %d) did not stop within 10 s of SIGSTOP", pid)
}

// allStopped reports whether every thread of process pid is stopped.
func allStopped(pid int) bool {
	threads, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true // gone
	}
	for _, thread := range threads {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, thread.Name()))
		if err != nil {
			continue // a thread that exited
		}
		// `tid (comm) state …`: the name may hold spaces, so read after its `)`.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) == 0 || (fields[0] != "T" && fields[0] != "t") {
			return false
		}
	}
	return true
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// Stop terminates sessiond (SIGTERM, then SIGKILL after 10 s) and removes
// its files.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = os.RemoveAll(s.home)
}

// LogTail is the end of sessiond's log, for failure reports.
func (s *Server) LogTail() string {
	text, err := os.ReadFile(filepath.Join(s.home, "sessiond.log"))
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

func (s *Server) waitUntilServing(credentials grpc.DialOption) error {
	conn, err := grpc.NewClient(s.Address, credentials)
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	giveUp := time.Now().Add(readyWithin)
	for time.Now().Before(giveUp) {
		select {
		case <-s.done:
			return fmt.Errorf("sessiond exited before serving on %s", s.Address)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		answer, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && answer.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			time.Sleep(50 * time.Millisecond) // up, not serving yet
		}
	}
	return fmt.Errorf("sessiond was not serving on %s within %s", s.Address, readyWithin)
}

var printedField = regexp.MustCompile(`(?m)^(key|hash):\s*(\S+)\s*$`)

// generateKey answers a new API key and its hash from `sessiond hash-key
// --generate`, which prints `key:  sdk_...` and `hash: sha256:...`.
func generateKey(binary string) (key, hash string, err error) {
	cmd := exec.Command(binary, "hash-key", "--generate")
	cmd.Env = environment()
	printed, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("sessiond hash-key --generate: %w", err)
	}
	for _, m := range printedField.FindAllStringSubmatch(string(printed), -1) {
		if m[1] == "key" {
			key = m[2]
		} else {
			hash = m[2]
		}
	}
	if key == "" || hash == "" {
		return "", "", fmt.Errorf("no key and hash in the output of sessiond hash-key --generate")
	}
	return key, hash, nil
}

// environment is this process's environment without SESSIOND_* settings.
func environment() []string {
	var kept []string
	for _, v := range os.Environ() {
		if !strings.HasPrefix(v, "SESSIOND_") {
			kept = append(kept, v)
		}
	}
	return kept
}

// freeAddress is a loopback address nothing listens on right now.
func freeAddress() (string, error) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer probe.Close()
	return probe.Addr().String(), nil
}

// repoRoot is the nearest directory above the working one with a
// Cargo.toml: the sessiond repository.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Cargo.toml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no Cargo.toml above the working directory: run the tests inside the sessiond repository")
		}
		dir = parent
	}
}
