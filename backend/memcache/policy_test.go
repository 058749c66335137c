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
// under prefix, with the given outage mode, and counting its backend errors.
func newPolicy(t *testing.T, store backend.Backend, prefix string, outage lockout.Outage, errs *atomic.Int64) *lockout.Policy {
	t.Helper()
	p, err := lockout.New(store, lockout.Config{
		Rules:         policyRules(),
		Prefix:        prefix,
		Timeout:       policyTimeout,
		Outage:        outage,
		ProbeInterval: 100 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
		Hooks:         lockout.Hooks{BackendError: func(context.Context, error) { errs.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
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

// wantDegraded checks a decision made while the store fails: the fallback
// decides it (admitted, or refused as locked), or it is refused as
// unavailable when p fails closed. It reports whether it was admitted.
func wantDegraded(t *testing.T, what string, outage lockout.Outage, s lockout.Subject, a *lockout.Attempt, err error) bool {
	t.Helper()
	switch {
	case errors.Is(err, lockout.ErrLocked):
		return false
	case outage == lockout.FailClosed:
		if !errors.Is(err, lockout.ErrUnavailable) && (err != nil || a.Err() != nil) {
			t.Errorf("%s: %v: err = %v, want ErrUnavailable (fail closed)", what, s, err)
		}
		return err == nil
	case err != nil:
		t.Errorf("%s: %v refused: %v, want the fallback to decide", what, s, err)
		return false
	case a.Err() != nil && !a.Fallback():
		t.Errorf("%s: %v admitted with error %v but not by the fallback", what, s, a.Err())
	}
	return true
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

// hang listens on addr ("127.0.0.1:0": a free port) and accepts
// connections without ever answering, until stop is called. It returns
// the address it listens on.
func hang(t *testing.T, addr string) (listening string, stop func()) {
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
	return ln.Addr().String(), func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
}

// TestPolicyServerDown runs policies (one with the local fallback, one
// failing closed) over a store on two servers, and makes one of them fail:
// stopped, then hung, then started again, empty. No decision waits for
// long, no subject gets more than the limit, and what the fallback counted
// reaches the restarted server.
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
		name     string
		outage   lockout.Outage
		p        *lockout.Policy
		errs     atomic.Int64
		mu       sync.Mutex
		admitted map[string]int // per username, while a fails
	}
	configs := []*config{{name: "fallback", outage: lockout.Fallback}, {name: "fail closed", outage: lockout.FailClosed}}
	for i, c := range configs {
		// Two prefixes, so that the policies' keys are apart.
		c.p = newPolicy(t, s, fmt.Sprintf("p%d", i), c.outage, &c.errs)
		c.admitted = map[string]int{}
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

	// failing runs decisions at once while server a fails: each returns
	// within its deadline, decided by the fallback or refused.
	failing := func(phase string, subjs []lockout.Subject) {
		var wg sync.WaitGroup
		for _, c := range configs {
			for _, subj := range subjs {
				wg.Go(func() {
					att, took, err := decide(t, c.p, subj)
					if wantDegraded(t, phase+", "+c.name, c.outage, subj, att, err) {
						c.mu.Lock()
						c.admitted[subj.Username]++
						c.mu.Unlock()
					}
					if took > policyTimeout+faultSlack {
						t.Errorf("%s, %s: %v took %v, deadline %v", phase, c.name, subj, took, policyTimeout)
					}
				})
			}
		}
		wg.Wait()
	}

	a.Stop()
	labeled(name, func() {
		failing("stopped", []lockout.Subject{onA[0], onA[1], both[0], both[1]})
		// Once degraded, decisions do not wait for the store at all.
		for range 3 {
			failing("stopped, again", []lockout.Subject{onA[3], both[3]})
		}
	})

	_, stopHang := hang(t, a.Addr)
	labeled(name, func() {
		failing("hung", []lockout.Subject{onA[0], onA[1], both[2], both[3]})
	})
	stopHang()
	for _, c := range configs {
		for user, n := range c.admitted {
			if n > 3 {
				t.Errorf("%s: %s got %d guesses while a server failed, limit 3", c.name, user, n)
			}
		}
		if c.outage == lockout.FailClosed && len(c.admitted) > 0 {
			t.Logf("%s: admitted through the store while a failed: %v", c.name, c.admitted)
		}
	}

	a.Start()
	labeled(name, func() {
		for _, c := range configs {
			// Wait for the breaker to find the server again: a decision
			// on a alone goes through the store.
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, err := c.p.Status(context.Background(), onA[4])
				if err == nil && len(st) > 0 {
					att, err := c.p.Allow(context.Background(), onA[4])
					if err == nil && !att.Fallback() && att.Err() == nil {
						att.Success(context.Background())
						break
					}
					if err == nil {
						att.Success(context.Background())
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the policy never went back to the restarted server", c.name)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// No fresh start: onA[1] failed twice while a was down. The
			// fallback's count reached the restarted server, so one more
			// failure locks it; failing closed counted nothing.
			left := 3 - c.admitted[onA[1].Username]
			for i := range left {
				att, _, err := decide(t, c.p, onA[1])
				wantAdmitted(t, fmt.Sprintf("restarted, %s, failure %d of %d", c.name, i+1, left), onA[1], att, err)
			}
			att, _, err := decide(t, c.p, onA[1])
			wantLocked(t, "restarted, "+c.name+", after the outage's failures", onA[1], att, err)
			wantStatusLocked(t, "restarted, "+c.name+", locked on the other server", c.p, onB[0])
			// Counting goes on as before for a subject untouched by the
			// outage.
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
	if c := configs[0]; c.admitted[onA[1].Username] != 2 {
		t.Errorf("fallback: %s admitted %d times while a failed, want 2", onA[1].Username, c.admitted[onA[1].Username])
	}
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

// TestPolicyFullServer fills up a memcached run with -M under a policy
// with the local fallback and one failing closed: decisions then go to the
// fallback (or are refused), a remembered lock still refuses, and once
// memory is freed the store decides again with what the fallback counted.
func TestPolicyFullServer(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t, "-M", "-m", "2")
	s := newStore(t, []string{srv.Addr}, &Options{Timeout: testTimeout})
	defer s.Close()
	subj := func(i int) lockout.Subject {
		return lockout.Subject{Username: fmt.Sprintf("full%d", i), IP: fmt.Sprintf("10.2.0.%d", i)}
	}
	locked, fresh := subj(0), subj(1)

	type config struct {
		name   string
		outage lockout.Outage
		p      *lockout.Policy
		errs   atomic.Int64
	}
	configs := []*config{{name: "fallback", outage: lockout.Fallback}, {name: "fail closed", outage: lockout.FailClosed}}
	for i, c := range configs {
		c.p = newPolicy(t, s, fmt.Sprintf("p%d", i), c.outage, &c.errs)
		lock(t, c.p, locked)
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
		// A new subject needs new counters: the fallback counts it, or
		// it is refused.
		admitted := 0
		for range 5 {
			att, _, err := decide(t, c.p, fresh)
			if wantDegraded(t, what+", new subject", c.outage, fresh, att, err) {
				admitted++
			}
		}
		switch {
		case c.outage == lockout.Fallback && admitted != 3:
			t.Errorf("%s: the fallback admitted %s %d times in 5, want the limit, 3", what, fresh.Username, admitted)
		case c.outage == lockout.FailClosed && admitted != 0:
			t.Errorf("%s: %s admitted %d times, want none", what, fresh.Username, admitted)
		}
		// The lock set before is remembered for as long as it lasts.
		att, _, err := decide(t, c.p, locked)
		wantLocked(t, what+", locked subject", locked, att, err)
		if c.errs.Load() == 0 {
			t.Errorf("%s: no backend error reported to the hook", c.name)
		}
	}

	// Memory freed: the store decides again, and the fallback's count for
	// the new subject, a lock, is now in the store.
	for lo := 0; lo < len(small); lo += 100 {
		var ops []backend.Op
		for _, k := range small[lo:min(lo+100, len(small))] {
			ops = append(ops, backend.DeleteOp(k))
		}
		do(t, s, ops...)
	}
	for _, c := range configs {
		other := subj(10)
		deadline := time.Now().Add(10 * time.Second)
		for {
			att, err := c.p.Allow(context.Background(), other)
			if err == nil {
				att.Success(context.Background())
				if !att.Fallback() && att.Err() == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the policy never went back to the store: %v", c.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wantStatusLocked(t, c.name+", memory freed", c.p, locked)
		if c.outage == lockout.Fallback {
			wantStatusLocked(t, c.name+", locked by the fallback, memory freed", c.p, fresh)
		} else {
			att, _, err := decide(t, c.p, fresh)
			wantAdmitted(t, c.name+", memory freed", fresh, att, err)
		}
	}
}
