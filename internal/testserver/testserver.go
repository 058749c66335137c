package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// startTimeout bounds how long a server may take to accept connections.
	startTimeout = 10 * time.Second
	// envTimeout bounds the reachability check of a server named by an
	// environment variable.
	envTimeout = 5 * time.Second
	// bindRetries is how many ports are tried when the chosen one was taken.
	bindRetries = 5
	// logFileName is the log a server writes itself (besides its output).
	logFileName = "server.log"
	// installHint tells the reader how to get the servers.
	installHint = "install them (apt-get install redis-server redis-sentinel memcached) " +
		"or set LOCKOUT_TEST_REDIS, LOCKOUT_TEST_REDIS_CLUSTER, LOCKOUT_TEST_MEMCACHED to host:port"
)

// searchDirs are looked in after PATH; a variable so tests can replace it.
var searchDirs = []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"}

// kind describes one server program.
type kind struct {
	bin     string // binary name
	envVar  string // environment variable naming existing servers
	busPort bool   // the server also binds port+10000 (Redis Cluster bus)
	logFile bool   // the server writes logFileName in its dir
	// args returns the full command line (without the binary) for port,
	// running in dir.
	args func(dir string, port int, extra []string) []string
	// ready checks that addr serves requests; when pid is not 0 it also
	// checks that the answering process is pid.
	ready func(ctx context.Context, addr string, pid int) error
}

// TB is the part of testing.TB this package uses. *testing.T, *testing.B
// and any testing.TB satisfy it, and so does [Standalone], which lets a
// program (cmd/lockbench) start servers without linking package testing.
type TB interface {
	Cleanup(f func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Helper()
	Logf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	TempDir() string
}

// Server is one running server process the test controls, or an existing
// server named by an environment variable (see [Server.Controllable]).
type Server struct {
	// Addr is the server's address, "127.0.0.1:port" for a started server.
	Addr string

	t            TB
	kind         *kind
	controllable bool
	bin          string
	dir          string
	extra        []string

	// afterStart, when set, runs after a restart (a cluster node waits for
	// its cluster to be healthy again).
	afterStart func(ctx context.Context) error

	mu   sync.Mutex
	proc *process
}

// process is one run of the server binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, valid after done is closed
	logs    []string      // log files
	offsets []int64       // log sizes when this run started
}

// Controllable reports whether the test controls the server's process. It is
// false when the server was given by an environment variable; Stop and Start
// then skip the test (fail it when CI=true).
func (s *Server) Controllable() bool { return s.controllable }

// RequireControl skips t (fails it when CI=true) unless the test controls
// the server's process: for tests that stop, freeze or restart it.
func (s *Server) RequireControl(t TB) {
	t.Helper()
	if !s.controllable {
		skipOrFatal(t, "testserver: %s was given by the environment: the test cannot stop or restart it", s.Addr)
	}
}

// Stop kills the server process (SIGKILL) and waits for it to exit. The
// address stays reserved for Start. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.controllable {
		skipOrFatal(s.t, "testserver: cannot stop %s at %s: it was given by %s", s.kind.bin, s.Addr, s.kind.envVar)
	}
	s.kill()
}

// Start starts the server again on the same Addr, empty (nothing is
// persisted), and waits until it accepts connections. A Redis Cluster node
// keeps its cluster identity and slots (its nodes.conf) and Start also waits
// until the whole cluster reports cluster_state:ok again. Starting a running
// server does nothing. Start fails the test the server was made for on error.
func (s *Server) Start() {
	s.t.Helper()
	if !s.controllable {
		skipOrFatal(s.t, "testserver: cannot start %s at %s: it was given by %s", s.kind.bin, s.Addr, s.kind.envVar)
	}
	begin := time.Now()
	if err := s.restart(); err != nil {
		s.t.Fatalf("testserver: restart %s on %s: %v", s.kind.bin, s.Addr, err)
	}
	s.t.Logf("testserver: %s restarted on %s in %v", s.kind.bin, s.Addr, time.Since(begin).Round(time.Millisecond))
}

// restart starts the process on s.Addr, retrying a port that is busy.
func (s *Server) restart() error {
	_, portStr, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("parse address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("parse port: %w", err)
	}
	s.mu.Lock()
	if s.proc != nil {
		s.mu.Unlock()
		return nil
	}
	for try := 0; ; try++ {
		var busy bool
		busy, err = s.launch(port)
		if err == nil || !busy || try == bindRetries-1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if s.afterStart != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		return s.afterStart(ctx)
	}
	return nil
}

// kill stops the process, if any, and waits for it.
// Freeze stops the server process with SIGSTOP: its connections stay open
// and nothing is answered, as with a server that hangs, until Thaw. A
// frozen server can be stopped (SIGKILL ends it all the same).
func (s *Server) Freeze() {
	s.t.Helper()
	s.signal("freeze", freezeProc)
}

// Thaw resumes a server stopped by Freeze.
func (s *Server) Thaw() {
	s.t.Helper()
	s.signal("thaw", thawProc)
}

func (s *Server) signal(what string, f func(*exec.Cmd) error) {
	s.t.Helper()
	if !s.controllable {
		skipOrFatal(s.t, "testserver: cannot %s %s at %s: it was given by %s", what, s.kind.bin, s.Addr, s.kind.envVar)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatalf("testserver: cannot %s %s at %s: it is stopped", what, s.kind.bin, s.Addr)
	}
	if err := f(s.proc.cmd); err != nil {
		s.t.Fatalf("testserver: %s %s at %s: %v", what, s.kind.bin, s.Addr, err)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	killProc(s.proc.cmd)
	<-s.proc.done
	s.proc = nil
}

// launchFresh picks a free port and starts the process on it, picking
// another port when the chosen one was taken meanwhile. It sets s.Addr.
func (s *Server) launchFresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range bindRetries {
		var port int
		port, err = freePort(s.kind.busPort)
		if err != nil {
			return err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var busy bool
		busy, err = s.launch(port)
		if err == nil || !busy {
			return err
		}
	}
	return err
}

// launch starts the binary on port and waits until it is ready. busy
// reports that it failed because the port was in use. s.mu must be held.
func (s *Server) launch(port int) (busy bool, err error) {
	outPath := filepath.Join(s.dir, "output.log")
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return false, fmt.Errorf("open log: %w", err)
	}
	p := &process{done: make(chan struct{}), logs: []string{outPath}}
	if s.kind.logFile {
		p.logs = append(p.logs, filepath.Join(s.dir, logFileName))
	}
	for _, l := range p.logs {
		var size int64
		if fi, err := os.Stat(l); err == nil {
			size = fi.Size()
		}
		p.offsets = append(p.offsets, size)
	}

	cmd := exec.Command(s.bin, s.kind.args(s.dir, port, s.extra)...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		out.Close()
		return false, fmt.Errorf("start %s: %w", s.bin, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-p.done:
			tail := p.tail()
			busy := strings.Contains(tail, "in use")
			return busy, fmt.Errorf("%s exited early (%v) on %s; log:\n%s", s.bin, p.err, addr, tail)
		default:
		}
		// Bound each attempt: something else may accept on the port and
		// never answer while our process fails to bind it; give up the
		// attempt as soon as the process exits.
		actx, acancel := context.WithTimeout(ctx, time.Second)
		go func() {
			select {
			case <-p.done:
				acancel()
			case <-actx.Done():
			}
		}()
		lastErr = s.kind.ready(actx, addr, cmd.Process.Pid)
		acancel()
		if lastErr == nil {
			s.proc = p
			return false, nil
		}
		select {
		case <-ctx.Done():
			killProc(cmd)
			<-p.done
			return false, fmt.Errorf("%s on %s not ready after %v (%v); log:\n%s", s.bin, addr, startTimeout, lastErr, p.tail())
		case <-p.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tail returns the end of what this run wrote to its logs.
func (p *process) tail() string {
	const maxTail = 3000
	var b strings.Builder
	for i, l := range p.logs {
		data, err := os.ReadFile(l)
		if err != nil || int64(len(data)) <= p.offsets[i] {
			continue
		}
		data = data[p.offsets[i]:]
		if len(data) > maxTail {
			data = data[len(data)-maxTail:]
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				data = data[i+1:]
			}
		}
		fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(l), data)
	}
	if b.Len() == 0 {
		return "(empty)"
	}
	return b.String()
}

// freePort returns a loopback port nothing listens on; with bus, port+10000
// is free too.
func freePort(bus bool) (int, error) {
	var lastErr error
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		bl.Close()
		return port, nil
	}
	return 0, fmt.Errorf("find a free port pair (port, port+10000): %w", errors.Join(lastErr, errors.New("no candidate left")))
}

// lookBinary finds name on PATH or in searchDirs.
func lookBinary(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range searchDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// skipOrFatal skips the test, or fails it when CI=true.
func skipOrFatal(t TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: failing instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// missing skips (or fails in CI) a test whose binary is missing.
func missing(t TB, k *kind, reason string) {
	t.Helper()
	msg := fmt.Sprintf("testserver: %s not found on PATH or in %s", k.bin, strings.Join(searchDirs, ", "))
	if reason != "" {
		msg = "testserver: " + reason + "; and " + strings.TrimPrefix(msg, "testserver: ")
	}
	skipOrFatal(t, "%s: %s", msg, installHint)
}

// envNext tracks which entry of an environment variable's list each test
// gets next.
var envNext = struct {
	sync.Mutex
	m map[envKey]int
}{m: map[envKey]int{}}

type envKey struct {
	t    TB
	name string
}

// nextEnvAddr returns the next unused entry of the comma list value of
// environment variable name for t.
func nextEnvAddr(t TB, name, value string) (string, bool) {
	addrs := splitList(value)
	envNext.Lock()
	defer envNext.Unlock()
	k := envKey{t, name}
	i, seen := envNext.m[k]
	if !seen {
		t.Cleanup(func() {
			envNext.Lock()
			delete(envNext.m, k)
			envNext.Unlock()
		})
	}
	if i >= len(addrs) {
		return "", false
	}
	envNext.m[k] = i + 1
	return addrs[i], true
}

// splitList splits a comma list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// get returns a server of kind k for t: from its environment variable when
// possible, else started locally.
func get(t TB, k *kind, extra []string) *Server {
	t.Helper()
	if v := os.Getenv(k.envVar); v != "" {
		var reason string
		if len(extra) == 0 {
			if addr, ok := nextEnvAddr(t, k.envVar, v); ok {
				return envServer(t, k, addr)
			}
			reason = fmt.Sprintf("%s lists fewer servers than this test asks for", k.envVar)
		} else {
			reason = fmt.Sprintf("%s names an existing server, but this test needs its own started with %q", k.envVar, extra)
		}
		if _, ok := lookBinary(k.bin); !ok {
			missing(t, k, reason)
		}
	}
	return startLocal(t, k, extra)
}

// envServer checks that addr answers and wraps it, not controllable.
func envServer(t TB, k *kind, addr string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	if err := k.ready(ctx, addr, 0); err != nil {
		t.Fatalf("testserver: %s server %s from %s does not answer: %v", k.bin, addr, k.envVar, err)
	}
	return &Server{Addr: addr, t: t, kind: k}
}

// newLocal prepares (without starting) a controllable server in a new temp
// dir; the process is killed on cleanup. It skips the test (fails it in CI)
// when the binary is missing.
func newLocal(t TB, k *kind, extra []string) *Server {
	t.Helper()
	bin, ok := lookBinary(k.bin)
	if !ok {
		missing(t, k, "")
	}
	s := &Server{t: t, kind: k, controllable: true, bin: bin, dir: t.TempDir(), extra: extra}
	t.Cleanup(s.kill)
	return s
}

// startLocal starts a server of kind k on a free port.
func startLocal(t TB, k *kind, extra []string) *Server {
	t.Helper()
	s := newLocal(t, k, extra)
	begin := time.Now()
	if err := s.launchFresh(); err != nil {
		t.Fatalf("testserver: start %s: %v", k.bin, err)
	}
	t.Logf("testserver: %s started on %s in %v", k.bin, s.Addr, time.Since(begin).Round(time.Millisecond))
	return s
}
