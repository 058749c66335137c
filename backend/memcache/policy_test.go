package memcache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/testserver"
)

// The policy-level tests: a lockout.Policy over the store, facing a stopped,
// hung, restarted or full memcached.

// policyTimeout is the deadline of each backend call of the policies under
// test, and faultSlack how much later than it a decision may return on a
// busy machine running the race detector (where a timer has been seen to
// wake its goroutine 800ms late).
const (
	policyTimeout = 300 * time.Millisecond
	faultSlack    = time.Second
)

// policyRules are the three rules of the tests' policies: by username, by
// IP, and by both.
func policyRules() []lockout.Rule {
	return []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(3), lockout.ByUsernameAndIP(3)}
}

// newPolicy returns a policy with policyRules over store, keeping its keys
// under prefix, failing closed or open, and counting its backend errors.
func newPolicy(t *testing.T, store backend.Backend, prefix string, failClosed bool, errs *atomic.Int64) *lockout.Policy {
	t.Helper()
	p, err := lockout.New(store, lockout.Config{
		Rules:      policyRules(),
		Prefix:     prefix,
		Timeout:    policyTimeout,
		FailClosed: failClosed,
		Logger:     slog.New(slog.DiscardHandler),
		Hooks:      lockout.Hooks{BackendError: func(context.Context, error) { errs.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// placeSubjects returns n subjects whose decisions (under policyRules) touch only
// keys that sel places on addrs[0], n for addrs[1], and n whose keys are on
// both.
func placeSubjects(t *testing.T, sel *RendezvousSelector, addrs []string, n int) (on map[string][]lockout.Subject, both []lockout.Subject) {
	t.Helper()
	rec := &opRecorder{}
	p, err := lockout.New(rec, lockout.Config{Rules: policyRules(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	on = map[string][]lockout.Subject{}
	for i := 0; len(on[addrs[0]]) < n || len(on[addrs[1]]) < n || len(both) < n; i++ {
		s := lockout.Subject{Username: fmt.Sprintf("user%d", i), IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250)}
		rec.ops = rec.ops[:0]
		if _, err := p.Allow(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		if len(rec.ops) != 6 {
			t.Fatalf("a decision touched %d keys, want 6: %v", len(rec.ops), rec.ops)
		}
		servers := map[string]bool{}
		for _, op := range rec.ops {
			a, err := sel.PickServer(mapKey("", op.Key))
			if err != nil {
				t.Fatal(err)
			}
			servers[a.String()] = true
		}
		switch {
		case len(servers) > 1:
			if len(both) < n {
				both = append(both, s)
			}
		default:
			for a := range servers {
				if len(on[a]) < n {
					on[a] = append(on[a], s)
				}
			}
		}
	}
	return on, both
}

// decide runs one decision (Allow, then Failure when admitted) and returns
// Allow's outcome and how long it took. Failure must succeed.
func decide(t *testing.T, p *lockout.Policy, s lockout.Subject) (*lockout.Attempt, time.Duration, error) {
	t.Helper()
	a, took, err, ferr := decideF(p, s)
	if ferr != nil {
		t.Errorf("%v: Failure: %v", s, ferr)
	}
	return a, took, err
}

// decideF is decide returning Failure's error.
func decideF(p *lockout.Policy, s lockout.Subject) (a *lockout.Attempt, took time.Duration, err, ferr error) {
	start := time.Now()
	a, err = p.Allow(context.Background(), s)
	took = time.Since(start)
	if err == nil {
		ferr = a.Failure(context.Background())
	}
	return a, took, err, ferr
}

// wantAdmitted checks that a decision went through the store normally.
func wantAdmitted(t *testing.T, what string, s lockout.Subject, a *lockout.Attempt, err error) {
	t.Helper()
	switch {
	case err != nil:
		t.Errorf("%s: %v refused: %v", what, s, err)
	case a.Err() != nil:
		t.Errorf("%s: %v admitted despite a backend error (failed open): %v", what, s, a.Err())
	}
}

// wantLocked checks that a decision was refused because s is locked out.
func wantLocked(t *testing.T, what string, s lockout.Subject, a *lockout.Attempt, err error) {
	t.Helper()
	if !errors.Is(err, lockout.ErrLocked) {
		var aerr error
		if a != nil {
			aerr = a.Err()
		}
		t.Errorf("%s: %v: err = %v (attempt error %v), want ErrLocked", what, s, err, aerr)
	}
}

// wantFailed checks that a decision met a backend error and failed open
// (admitted, with the error) or closed (ErrUnavailable), as p is
// configured, wrapping want when it is not nil.
func wantFailed(t *testing.T, what string, failClosed bool, s lockout.Subject, a *lockout.Attempt, err error, want error) {
	t.Helper()
	cause := err
	switch {
	case failClosed && !errors.Is(err, lockout.ErrUnavailable):
		t.Errorf("%s: %v: err = %v, want ErrUnavailable (fail closed)", what, s, err)
		return
	case !failClosed && err != nil:
		t.Errorf("%s: %v refused: %v, want admitted with an error (fail open)", what, s, err)
		return
	case !failClosed && a.Err() == nil:
		t.Errorf("%s: %v admitted without a backend error, want one (fail open)", what, s)
		return
	case !failClosed:
		cause = a.Err()
	}
	if want != nil && !errors.Is(cause, want) {
		t.Errorf("%s: %v: error %v, want one wrapping %v", what, s, cause, want)
	}
}

// lock fails s's attempts until it is locked out, and checks with Status,
// which only reads: a refused attempt would create counters again.
func lock(t *testing.T, p *lockout.Policy, s lockout.Subject) {
	t.Helper()
	for range 3 {
		a, _, err := decide(t, p, s)
		wantAdmitted(t, "locking", s, a, err)
	}
	wantStatusLocked(t, "after 3 failures", p, s)
}

// wantStatusLocked checks that every rule key of s is locked.
func wantStatusLocked(t *testing.T, what string, p *lockout.Policy, s lockout.Subject) {
	t.Helper()
	st, err := p.Status(t.Context(), s)
	if err != nil {
		t.Fatalf("%s: Status: %v", what, err)
	}
	for _, r := range st {
		if !r.Locked {
			t.Errorf("%s: %v not locked: %v", what, s, r)
		}
	}
}

// goroutineLabel marks the goroutines a test starts (they inherit it), so
// that leaks can be counted while other tests run in parallel.
const goroutineLabel = "memcache-test"

// labeled runs f with the goroutine label goroutineLabel=name.
func labeled(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels(goroutineLabel, name), func(context.Context) { f() })
}

var profileCount = regexp.MustCompile(`^(\d+) @ `)

// labeledGoroutines counts the live goroutines labelled goroutineLabel=name.
func labeledGoroutines(t *testing.T, name string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	want := strconv.Quote(goroutineLabel) + ":" + strconv.Quote(name)
	n, count := 0, 0
	var stacks strings.Builder
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if m := profileCount.FindStringSubmatch(line); m != nil {
			count, _ = strconv.Atoi(m[1])
			in = false
			continue
		}
		if strings.HasPrefix(line, "# labels: ") && strings.Contains(line, want) {
			n += count
			in = true
		}
		if in {
			stacks.WriteString(line + "\n")
		}
	}
	return n, stacks.String()
}

// noLeak waits for the goroutines labelled name to end, failing t if some
// are still running after wait.
func noLeak(t *testing.T, name string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		n, stacks := labeledGoroutines(t, name)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines started by the test still run %v after it:\n%s", n, wait, stacks)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hang listens on addr and accepts connections without ever answering,
// until the returned function is called.
func hang(t *testing.T, addr string) (stop func()) {
	t.Helper()
	var ln net.Listener
	var err error
	for try := 0; ; try++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if try == 50 {
			t.Fatalf("listening on %s for a hung server: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
}

// TestPolicyServerDown runs policies (one failing open, one closed) over a
// store on two servers, and makes one of them fail: stopped, then hung,
// then started again.
func TestPolicyServerDown(t *testing.T) {
	parallel(t)
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	addrs := []string{a.Addr, b.Addr}
	// The client's Timeout is far above the policy's deadline, so that
	// only the deadline can end a decision on the hung server in time.
	s := newStore(t, addrs, &Options{Timeout: 10 * time.Second})
	defer s.Close()
	var sel RendezvousSelector
	if err := sel.SetServers(addrs...); err != nil {
		t.Fatal(err)
	}
	on, both := placeSubjects(t, &sel, addrs, 6)
	onA, onB := on[a.Addr], on[b.Addr]

	type config struct {
		name       string
		failClosed bool
		p          *lockout.Policy
		errs       atomic.Int64
	}
	configs := []*config{{name: "fail open"}, {name: "fail closed", failClosed: true}}
	for i, c := range configs {
		// Two prefixes, so that the policies' keys are apart.
		c.p = newPolicy(t, s, fmt.Sprintf("p%d", i), c.failClosed, &c.errs)
	}

	name := t.Name()
	labeled(name, func() {
		for _, c := range configs {
			lock(t, c.p, onA[0])
			lock(t, c.p, onB[0])
		}
		// Fill the pools with connections that the stop makes stale.
		var wg sync.WaitGroup
		for _, c := range configs {
			for _, subj := range []lockout.Subject{onA[5], onB[5], both[5]} {
				wg.Go(func() {
					if _, err := c.p.Allow(context.Background(), subj); err != nil {
						t.Errorf("%s: %v refused before the stop: %v", c.name, subj, err)
					}
				})
			}
		}
		wg.Wait()
	})
	if t.Failed() {
		t.FailNow()
	}

	// failing checks the decisions while server a fails: those touching a
	// return within their deadline with an error, failing open or closed
	// (they run at once, each against its own deadline); those on b alone
	// work normally. A decision touching both servers leaves its increments
	// on b when it fails: each phase takes subjects of its own.
	failing := func(phase string, subjs []lockout.Subject, want error) {
		var wg sync.WaitGroup
		for _, c := range configs {
			for _, subj := range subjs {
				wg.Go(func() {
					att, took, err := decide(t, c.p, subj)
					wantFailed(t, phase+", "+c.name, c.failClosed, subj, att, err, want)
					if took > policyTimeout+faultSlack {
						t.Errorf("%s, %s: %v took %v, deadline %v", phase, c.name, subj, took, policyTimeout)
					}
					t.Logf("%s, %s: %v answered in %v", phase, c.name, subj.Username, took.Round(time.Millisecond))
				})
			}
		}
		wg.Wait()
		for _, c := range configs {
			att, _, err := decide(t, c.p, onB[0])
			wantLocked(t, phase+", "+c.name+", locked on the live server", onB[0], att, err)
			for _, subj := range onB[1:3] {
				att, _, err := decide(t, c.p, subj)
				wantAdmitted(t, phase+", "+c.name+", on the live server", subj, att, err)
			}
		}
	}

	a.Stop()
	labeled(name, func() { failing("stopped", []lockout.Subject{onA[0], onA[1], both[0], both[1]}, nil) })

	stopHang := hang(t, a.Addr)
	labeled(name, func() {
		failing("hung", []lockout.Subject{onA[0], onA[1], both[2], both[3]}, context.DeadlineExceeded)
	})
	stopHang()

	a.Start()
	labeled(name, func() {
		for _, c := range configs {
			// a's keys start afresh: its locked subject is admitted again.
			for _, subj := range []lockout.Subject{onA[0], onA[1], both[0], both[2], both[4]} {
				att, _, err := decide(t, c.p, subj)
				wantAdmitted(t, "restarted, "+c.name, subj, att, err)
			}
			att, _, err := decide(t, c.p, onB[0])
			wantLocked(t, "restarted, "+c.name+", locked on the other server", onB[0], att, err)
			// And they count again.
			subj := onA[2]
			for range 3 {
				att, _, err := decide(t, c.p, subj)
				wantAdmitted(t, "restarted, "+c.name, subj, att, err)
			}
			att, _, err = decide(t, c.p, subj)
			wantLocked(t, "restarted, "+c.name+", after 3 failures", subj, att, err)
			if n := c.errs.Load(); n == 0 {
				t.Errorf("%s: no backend error reported to the hook", c.name)
			}
		}
	})
	// The requests abandoned at a deadline ended when the hung server
	// closed their connections (they are not sent again), so nothing the
	// test started still runs once its goroutines have had time to exit.
	noLeak(t, name, 3*time.Second)
}

// fill writes counters whose keys are keyLen bytes long into the
// memcached at addr, shaped as the store writes them, until the server
// refuses one for want of memory, and returns the keys stored. It pipelines
// plain set commands over one connection, much faster than the store.
func fill(t *testing.T, addr, tag string, keyLen int) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	x, err := newExpiry(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	value := formatValue(1)
	const burst = 500
	var stored []string
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatal("the server never filled up")
		}
		keys := make([]string, burst)
		w := bufio.NewWriter(c)
		for i := range keys {
			k := fmt.Sprintf("%s/%d/%d/", tag, round, i)
			keys[i] = k + strings.Repeat("x", max(keyLen-len(k), 0))
			fmt.Fprintf(w, "set %s %d %d %d\r\n%s\r\n", keys[i], x.flags, x.exptime, len(value), value)
		}
		// The replies (a few bytes each) fit in the socket buffers: they
		// are read after the whole burst is sent.
		if err := w.Flush(); err != nil {
			t.Fatalf("filling: %v", err)
		}
		full := false
		for _, k := range keys {
			line, err := r.ReadString('\n')
			switch {
			case err != nil:
				t.Fatalf("filling: %v", err)
			case line == "STORED\r\n":
				stored = append(stored, k)
			case strings.HasPrefix(line, "SERVER_ERROR out of memory"):
				full = true
			default:
				t.Fatalf("filling: set answered %q", line)
			}
		}
		if full {
			return stored
		}
	}
}

// TestPolicyFullServer fills up a memcached run with -M under policies
// failing open and closed: decisions that need new counters then fail with
// ErrFull, and no lockout made before is lost.
func TestPolicyFullServer(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t, "-M", "-m", "2")
	s := newStore(t, []string{srv.Addr}, &Options{Timeout: testTimeout})
	defer s.Close()
	subj := func(i int) lockout.Subject {
		return lockout.Subject{Username: fmt.Sprintf("full%d", i), IP: fmt.Sprintf("10.2.0.%d", i)}
	}
	locked, lockedRetried, counting, fresh := subj(0), subj(1), subj(2), subj(3)

	type config struct {
		name       string
		failClosed bool
		p          *lockout.Policy
		errs       atomic.Int64
	}
	configs := []*config{{name: "fail open"}, {name: "fail closed", failClosed: true}}
	for i, c := range configs {
		c.p = newPolicy(t, s, fmt.Sprintf("p%d", i), c.failClosed, &c.errs)
		// A lockout clears the counters; a refused attempt creates them
		// again (and gives its reservation back): a locked subject that
		// keeps trying has them, one that waits has not.
		lock(t, c.p, locked)
		lock(t, c.p, lockedRetried)
		att, _, err := decide(t, c.p, lockedRetried)
		wantLocked(t, c.name+", retried", lockedRetried, att, err)
		att, _, err = decide(t, c.p, counting)
		wantAdmitted(t, c.name+", before the fill", counting, att, err)
	}

	// Fill every slab class a counter may use: long keys first, then
	// shorter ones, each until the server refuses one.
	var small []string // some keys of the sizes of the policies' keys
	for _, n := range []int{240, 160, 100, 60, 40, 20} {
		keys := fill(t, srv.Addr, fmt.Sprintf("fill%d", n), n)
		t.Logf("%d counters with %d-byte keys", len(keys), n)
		if n <= 60 {
			small = append(small, keys[:min(len(keys), 500)]...)
		}
	}

	for _, c := range configs {
		what := c.name + ", full server"
		// Decisions that need new counters fail, open or closed.
		att, _, err := decide(t, c.p, fresh)
		wantFailed(t, what+", new subject", c.failClosed, fresh, att, err, backend.ErrFull)
		// A locked subject whose counters exist is still refused.
		att, _, err = decide(t, c.p, lockedRetried)
		wantLocked(t, what, lockedRetried, att, err)
		// Counting goes on for one that is not locked. The failure that
		// reaches the limit cannot create the lock marker and reports
		// ErrFull; the counter, at the limit, refuses every later attempt
		// until its window ends.
		att, _, err = decide(t, c.p, counting)
		wantAdmitted(t, what+", second failure", counting, att, err)
		att, _, err, ferr := decideF(c.p, counting)
		wantAdmitted(t, what+", third failure", counting, att, err)
		if !errors.Is(ferr, backend.ErrFull) {
			t.Errorf("%s: the failure that locks: %v, want ErrFull", what, ferr)
		}
		att, _, err = decide(t, c.p, counting)
		if !errors.Is(err, lockout.ErrCapacity) {
			t.Errorf("%s: after the limit: err = %v (attempt %v), want ErrCapacity", what, err, att)
		}
		// A locked subject whose counters were cleared by its lockout needs
		// new ones, which the full server refuses. Failing closed refuses
		// it as unavailable; failing open reads the lock markers alone
		// first, and refuses it as locked. The lock itself is kept.
		att, _, err = decide(t, c.p, locked)
		if c.failClosed {
			wantFailed(t, what+", locked subject without counters", c.failClosed, locked, att, err, backend.ErrFull)
		} else {
			wantLocked(t, what+", locked subject without counters", locked, att, err)
		}
		wantStatusLocked(t, what, c.p, locked)
		if c.errs.Load() == 0 {
			t.Errorf("%s: no backend error reported to the hook", c.name)
		}
	}

	// Memory freed: the locked subject is refused as locked again.
	for lo := 0; lo < len(small); lo += 100 {
		var ops []backend.Op
		for _, k := range small[lo:min(lo+100, len(small))] {
			ops = append(ops, backend.DeleteOp(k))
		}
		do(t, s, ops...)
	}
	for _, c := range configs {
		att, _, err := decide(t, c.p, locked)
		wantLocked(t, c.name+", memory freed", locked, att, err)
		att, _, err = decide(t, c.p, fresh)
		wantAdmitted(t, c.name+", memory freed", fresh, att, err)
	}
}
