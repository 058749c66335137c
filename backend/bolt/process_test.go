package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/go-lockout/lockout/backend"
)

// childEnv tells a re-executed test binary to act as TestCrashChild:
// "crash:PATH" increments counters in PATH and prints each acknowledged
// value; "hold:PATH" opens PATH, prints "ready" and waits to be killed.
const childEnv = "LOCKOUT_BOLT_TEST_CHILD"

// crashWriters is how many goroutines of the crash child increment, each
// its own counter, so that the acknowledged increments share group commits.
const crashWriters = 4

// TestCrashChild is the child process of TestCrash and
// TestOpenLockedByOtherProcess; run on its own, it skips.
func TestCrashChild(t *testing.T) {
	mode, path, ok := strings.Cut(os.Getenv(childEnv), ":")
	if !ok {
		t.Skip("helper process, run by TestCrash and TestOpenLockedByOtherProcess")
	}
	s, err := Open(path, 0o600, nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	switch mode {
	case "hold":
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "crash":
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range crashWriters {
			wg.Go(func() {
				op := []backend.Op{backend.IncrOp(fmt.Sprint("counter/", g), 1, backend.NoExpiry)}
				res := make([]backend.Result, 1)
				for {
					if err := s.Do(context.Background(), op, res); err != nil {
						fmt.Println("error:", err)
						os.Exit(2)
					}
					// Acknowledged: Do returned. Report it.
					mu.Lock()
					fmt.Printf("%d %d\n", g, res[0].Value)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	os.Exit(3)
}

// startChild re-executes the test binary as TestCrashChild.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode+":"+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Never leave a child behind, and never wait for one forever.
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	t.Cleanup(func() {
		timer.Stop()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout), &stderr
}

// TestCrash kills a process that increments counters (SIGKILL, mid-write)
// and checks that the file reopens cleanly with every acknowledged
// increment in it.
func TestCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	last := make([]int64, crashWriters)
	for round := range 3 {
		crashRound(t, path, round, last)
	}
}

// crashRound runs the crash child on path until it has acknowledged a few
// hundred increments, kills it, and checks the file; last holds the last
// acknowledged value of each counter, from one round to the next.
func crashRound(t *testing.T, path string, round int, last []int64) {
	const acks = 400
	cmd, out, stderr := startChild(t, "crash", path)
	n := 0
	for out.Scan() {
		line := out.Text()
		if strings.HasPrefix(line, "error:") {
			t.Fatalf("round %d: child: %s", round, line)
		}
		var g int
		var v int64
		if _, err := fmt.Sscanf(line, "%d %d", &g, &v); err != nil || g < 0 || g >= crashWriters {
			continue // a line cut short by the kill, or test output
		}
		if v <= last[g] {
			t.Fatalf("round %d: counter %d acknowledged %d after %d", round, g, v, last[g])
		}
		last[g] = v
		n++
		if n == acks {
			// Kill it mid-stream; keep reading the acknowledgements it
			// printed before it died.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := cmd.Wait()
	if n < acks {
		t.Fatalf("round %d: child printed %d acknowledgements, want %d (exit: %v)\n%s", round, n, acks, err, stderr)
	}
	t.Logf("round %d: %d acknowledged increments before SIGKILL; last values %v", round, n, last)

	s, err := Open(path, 0o600, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatalf("round %d: reopening after the crash: %v", round, err)
	}
	defer s.Close()
	if err := s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("round %d: consistency check after the crash: %v", round, err)
	}
	for g := range crashWriters {
		r := do(t, s, backend.ExistsOp(fmt.Sprint("counter/", g)))[0]
		// At least every acknowledged increment; at most one more per
		// writer (committed, killed before it printed).
		if r.Value < last[g] || r.Value > last[g]+1 {
			t.Errorf("round %d: counter %d = %d after the crash, last acknowledged %d", round, g, r.Value, last[g])
		}
		last[g] = r.Value
	}
}

// TestOpenLocked checks that a second Open of a file fails with a clear
// error after Options.Timeout, in the same process.
func TestOpenLocked(t *testing.T) {
	_, path := open(t, &Options{SweepInterval: -1})
	tests := []struct {
		timeout  time.Duration
		min, max time.Duration
	}{
		{300 * time.Millisecond, 200 * time.Millisecond, 1500 * time.Millisecond},
		{-1, 0, 200 * time.Millisecond}, // try once
	}
	for _, tc := range tests {
		start := time.Now()
		s, err := Open(path, 0o600, &Options{Timeout: tc.timeout})
		took := time.Since(start)
		if err == nil {
			s.Close()
			t.Fatalf("timeout %v: second Open succeeded", tc.timeout)
		}
		checkLockedErr(t, err, path)
		if took < tc.min || took > tc.max {
			t.Errorf("timeout %v: second Open failed after %v, want within [%v, %v]", tc.timeout, took, tc.min, tc.max)
		}
		t.Logf("timeout %v: failed after %v: %v", tc.timeout, took, err)
	}
}

func checkLockedErr(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrFileLocked) || !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("err = %v, want one wrapping ErrFileLocked and bbolt's ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want it to name %s", err, path)
	}
}

// TestOpenLockedByOtherProcess checks the same against another process,
// and that the file opens once that process is gone.
func TestOpenLockedByOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "held.db")
	cmd, out, stderr := startChild(t, "hold", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("child did not get ready: %q\n%s", out.Text(), stderr)
	}
	timeout := 500 * time.Millisecond
	start := time.Now()
	s, err := Open(path, 0o600, &Options{Timeout: timeout})
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open of a file another process holds succeeded")
	}
	checkLockedErr(t, err, path)
	if took < timeout-100*time.Millisecond || took > timeout+time.Second {
		t.Errorf("Open failed after %v, want about %v", took, timeout)
	}
	t.Logf("failed after %v: %v", took, err)

	cmd.Process.Kill()
	cmd.Wait()
	s, err = Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("Open after the other process died: %v", err)
	}
	s.Close()
}
