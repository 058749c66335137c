package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
)

// Standalone is a [TB] for programs that are not tests, such as a load
// generator run with go run, so that they can start servers with this
// package's functions without importing package testing. Call those
// functions inside [Standalone.Run], which turns Fatal and Skip into an
// error, and call [Standalone.Close] when done: it runs the cleanups, which
// stop the servers, and removes the temporary directories.
type Standalone struct {
	name   string
	out    io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	failed   bool
	skipped  bool
	msgs     []string
	closed   bool
}

// NewStandalone returns a Standalone named name that writes its logs to
// out (io.Discard when nil).
func NewStandalone(name string, out io.Writer) *Standalone {
	if out == nil {
		out = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Standalone{name: name, out: out, ctx: ctx, cancel: cancel}
}

// Run calls fn with s on a goroutine of its own and waits for it to return.
// As in a test, Fatal, FailNow and Skip end fn early (runtime.Goexit). Run
// returns an error holding the messages of the failure or skip (wrapping
// ErrSkipped for a skip: a server binary is missing and CI is not true), or
// nil when fn neither failed nor skipped. Cleanups registered by fn stay registered
// until Close, also when fn failed.
func (s *Standalone) Run(fn func(tb TB)) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(s)
	}()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failed:
		return fmt.Errorf("%s: %s", s.name, strings.Join(s.msgs, "; "))
	case s.skipped:
		return fmt.Errorf("%s: %w: %s", s.name, ErrSkipped, strings.Join(s.msgs, "; "))
	}
	return nil
}

// Close runs the registered cleanups, the last registered first, and then
// removes the temporary directories. Calling it again does nothing.
func (s *Standalone) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			break
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		f()
	}
	s.mu.Lock()
	dirs := s.dirs
	s.dirs = nil
	s.mu.Unlock()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

// Cleanup registers f to run at Close.
func (s *Standalone) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// TempDir returns a new temporary directory, removed by Close. It fails
// the run when the directory cannot be made.
func (s *Standalone) TempDir() string {
	d, err := os.MkdirTemp("", s.name+"-")
	if err != nil {
		s.Fatalf("TempDir: %v", err)
	}
	s.mu.Lock()
	s.dirs = append(s.dirs, d)
	s.mu.Unlock()
	return d
}

// ArtifactDir returns a new temporary directory, like TempDir.
func (s *Standalone) ArtifactDir() string { return s.TempDir() }

// Attr logs key and value.
func (s *Standalone) Attr(key, value string) { s.Logf("=== ATTR %s %v", key, value) }

// Log writes its arguments to the output, as fmt.Sprintln does.
func (s *Standalone) Log(args ...any) { s.write(strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }

// Logf writes a formatted line to the output.
func (s *Standalone) Logf(format string, args ...any) { s.write(fmt.Sprintf(format, args...)) }

func (s *Standalone) write(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%s: %s\n", s.name, msg)
}

// Error logs its arguments and marks the run failed.
func (s *Standalone) Error(args ...any) {
	s.record(strings.TrimSuffix(fmt.Sprintln(args...), "\n"), false)
}

// Errorf logs a formatted message and marks the run failed.
func (s *Standalone) Errorf(format string, args ...any) {
	s.record(fmt.Sprintf(format, args...), false)
}

// Fatal is Error followed by FailNow.
func (s *Standalone) Fatal(args ...any) {
	s.Error(args...)
	s.FailNow()
}

// Fatalf is Errorf followed by FailNow.
func (s *Standalone) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	s.FailNow()
}

// Skip records its arguments as the reason and calls SkipNow.
func (s *Standalone) Skip(args ...any) {
	s.record(strings.TrimSuffix(fmt.Sprintln(args...), "\n"), true)
	s.SkipNow()
}

// Skipf records a formatted reason and calls SkipNow.
func (s *Standalone) Skipf(format string, args ...any) {
	s.record(fmt.Sprintf(format, args...), true)
	s.SkipNow()
}

func (s *Standalone) record(msg string, skip bool) {
	s.write(msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msg)
	if skip {
		s.skipped = true
	} else {
		s.failed = true
	}
}

// Fail marks the run failed and goes on.
func (s *Standalone) Fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = true
}

// FailNow marks the run failed and ends the goroutine Run started
// (runtime.Goexit). Like testing.T's, it must be called from that
// goroutine.
func (s *Standalone) FailNow() {
	s.Fail()
	runtime.Goexit()
}

// SkipNow marks the run skipped and ends the goroutine Run started.
func (s *Standalone) SkipNow() {
	s.mu.Lock()
	s.skipped = true
	s.mu.Unlock()
	runtime.Goexit()
}

// Failed reports whether the run failed.
func (s *Standalone) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Skipped reports whether the run was skipped.
func (s *Standalone) Skipped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// Helper does nothing.
func (s *Standalone) Helper() {}

// Name returns the name given to NewStandalone.
func (s *Standalone) Name() string { return s.name }

// Context returns a context canceled when Close begins.
func (s *Standalone) Context() context.Context { return s.ctx }

// Output returns the writer logs go to.
func (s *Standalone) Output() io.Writer { return s.out }

// ErrSkipped is wrapped by the error of a Run that skipped.
var ErrSkipped = errors.New("skipped")

var _ TB = (*Standalone)(nil)
