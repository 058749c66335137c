package conformance

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// The degraded-mode scenarios: the store under test is made to fail (down,
// hung, full) by a wrapper, and the policy over it must keep its limit,
// write back what its fallback counted, and leave no key behind for a
// refused attempt.

// Failure modes of a fault wrapper.
const (
	faultNone int32 = iota
	faultDown       // every call fails
	faultHang       // every call blocks until its context ends
	faultFull       // every call that would create or grow a counter fails with ErrFull
)

var faultNames = map[int32]string{faultDown: "down", faultHang: "hung", faultFull: "full"}

var errFaultDown = errors.New("conformance: store made to fail")

// fault is a store the test can make fail. It records the keys that calls
// grew while record is set.
type fault struct {
	backend.Backend
	mode   atomic.Int32
	record atomic.Bool
	mu     sync.Mutex
	grown  map[string]bool
	// guessHangs counts the calls of guess's decisions that met a hung
	// store.
	guessHangs atomic.Int64
}

// guessKey marks the contexts of guess's decisions.
type guessKey struct{}

func (f *fault) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	switch f.mode.Load() {
	case faultDown:
		return errFaultDown
	case faultHang:
		if ctx.Value(guessKey{}) != nil {
			f.guessHangs.Add(1)
		}
		<-ctx.Done()
		return fmt.Errorf("conformance: hung store: %w", ctx.Err())
	case faultFull:
		for _, op := range ops {
			if op.Kind == backend.Incr && op.Delta > 0 {
				return fmt.Errorf("conformance: store made full: %w", backend.ErrFull)
			}
		}
	}
	if f.record.Load() {
		f.mu.Lock()
		for _, op := range ops {
			if op.Kind == backend.Incr && op.Delta > 0 {
				f.grown[op.Key] = true
			}
		}
		f.mu.Unlock()
	}
	return f.Backend.Do(ctx, ops, res)
}

// faultLister is a fault over a store that lists its keys.
type faultLister struct{ *fault }

func (f faultLister) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return f.Backend.(backend.Lister).Keys(ctx, prefix)
}

// faultPolicy returns a policy over the env's store wrapped in a fault,
// probing it every unit, with a deadline of half a unit per call.
func (e *env) faultPolicy(t *testing.T, cfg lockout.Config) (*lockout.Policy, *fault) {
	t.Helper()
	f := &fault{Backend: e.b, grown: map[string]bool{}}
	var store backend.Backend = f
	if e.h.Lister {
		store = faultLister{f}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = e.unit / 2
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = e.unit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, f
}

// guess runs guessers concurrent guessers, each making tries attempts on s
// a tick apart, and returns how many were admitted (reached the password
// check, which always fails). Every other outcome must be a refusal.
func guess(t *testing.T, p *lockout.Policy, s lockout.Subject, guessers, tries int, tick time.Duration) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, guessers)
	ctx := context.WithValue(context.Background(), guessKey{}, true)
	for range guessers {
		wg.Go(func() {
			for range tries {
				a, err := p.Allow(ctx, s)
				switch {
				case err == nil:
					admitted.Add(1)
					a.Failure(ctx)
				case !errors.Is(err, lockout.ErrRefused):
					errs <- err
					return
				}
				time.Sleep(tick)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a guess: %v, want admitted or refused", err)
	}
	return admitted.Load()
}

// waitRecovered waits until a decision on p goes through the store again.
func (e *env) waitRecovered(t *testing.T, p *lockout.Policy, probe time.Duration) {
	t.Helper()
	s := lockout.Subject{Username: "recovery-probe", IP: "192.0.2.250"}
	deadline := time.Now().Add(3*probe + 10*e.unit)
	for {
		a, err := p.Allow(context.Background(), s)
		if err == nil {
			a.Success(context.Background())
			if !a.Fallback() && a.Err() == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy never went back to the store: last decision %v, %v", a, err)
		}
		time.Sleep(probe / 4)
	}
}

// testOutageLimit attacks one subject with concurrent guessers while the
// store is down, hung or full: the fallback admits at most the limit for
// the whole outage, and no decision waits for the deadline once the
// breaker is open.
func testOutageLimit(mode int32) caseFunc {
	return func(t *testing.T, e *env) {
		{
			const limit = 3
			probe := e.unit / 4
			p, f := e.faultPolicy(t, lockout.Config{
				Rules:         []lockout.Rule{lockout.ByUsername(limit), lockout.ByIP(100)},
				ProbeInterval: probe,
			})
			s := lockout.Subject{Username: "victim", IP: "198.51.100.1"}
			// One failure through the store before the outage.
			if err := try(t, p, s, false); err != nil {
				t.Fatal(err)
			}
			f.mode.Store(mode)
			// The first decision meets the failure (and waits for the
			// deadline when the store hangs) and opens the breaker.
			start := time.Now()
			a, err := p.Allow(context.Background(), lockout.Subject{Username: "first", IP: "198.51.100.2"})
			if took := time.Since(start); took > e.unit/2+e.h.callTimeout() {
				t.Errorf("the first decision of the outage took %v, deadline %v", took, e.unit/2)
			}
			if err != nil || !a.Fallback() {
				t.Fatalf("the first decision of the outage: %v, %v: want admitted by the fallback", a, err)
			}
			a.Success(context.Background())
			// Two rounds of guessing, one probe interval apart, so that the
			// store is probed (and fails) in between.
			var got int64
			for round := range 2 {
				start := time.Now()
				got += guess(t, p, s, 32, 4, probe/20)
				// No decision may wait for the store while degraded: none
				// calls it (exact), and, as a bound that a loaded machine
				// does not reach, the round is no slower than four deadlines.
				if n := f.guessHangs.Load(); n > 0 {
					t.Errorf("round %d: %d decisions called the hung store while degraded, want none", round, n)
				}
				if took := time.Since(start); took > 4*e.unit/2 {
					t.Errorf("round %d: 32 guessers x 4 tries took %v while degraded, want no deadline waits (%v each)", round, took, e.unit/2)
				}
				time.Sleep(probe)
			}
			if got > limit {
				t.Errorf("%s store: the fallback admitted %d guesses, limit %d", faultNames[mode], got, limit)
			}
			if got < limit-1 {
				t.Errorf("%s store: the fallback admitted %d guesses, want %d or %d", faultNames[mode], got, limit-1, limit)
			}
			t.Logf("%s store: %d guesses admitted during the outage (limit %d, 1 before it)", faultNames[mode], got, limit)
		}
	}
}

// testOutageRecovery checks that what the fallback counted reaches the
// store: a key that failed Limit-1 times during the outage locks on its
// first failure after it, and a lock set by the fallback is a store lock.
func testOutageRecovery(t *testing.T, e *env) {
	const limit = 3
	r := lockout.ByUsername(limit)
	r.Schedule = lockout.Fixed(100 * e.unit)
	var mu sync.Mutex
	var events []lockout.DegradedEvent
	p, f := e.faultPolicy(t, lockout.Config{
		Rules: []lockout.Rule{r},
		Hooks: lockout.Hooks{Degraded: func(_ context.Context, ev lockout.DegradedEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}},
	})
	counted := lockout.Subject{Username: "counted"}
	locked := lockout.Subject{Username: "locked"}
	f.mode.Store(faultDown)
	for i := range limit - 1 {
		if err := try(t, p, counted, false); err != nil {
			t.Fatalf("failure %d during the outage: %v", i+1, err)
		}
	}
	for i := range limit {
		if err := try(t, p, locked, false); err != nil {
			t.Fatalf("failure %d during the outage: %v", i+1, err)
		}
	}
	refused(t, try(t, p, locked, false), lockout.ReasonLocked)
	f.mode.Store(faultNone)
	e.waitRecovered(t, p, e.unit)

	// A second policy over the same store sees only what reached it.
	other, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}})
	st, err := other.Status(context.Background(), counted)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Attempts != limit-1 {
		t.Errorf("after the outage, the store holds %d attempts for a key that failed %d times in it", st[0].Attempts, limit-1)
	}
	if err := try(t, other, counted, false); err != nil {
		t.Fatalf("the first failure after the outage: %v", err)
	}
	refused(t, try(t, other, counted, false), lockout.ReasonLocked)
	st, err = other.Status(context.Background(), locked)
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].Locked || st[0].Lockouts != 1 {
		t.Errorf("a lock set during the outage is not a store lock after it: %+v", st[0])
	}
	refused(t, try(t, other, locked, false), lockout.ReasonLocked)

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || !events[0].Start || events[1].Start || events[1].Duration <= 0 {
		t.Errorf("degraded events %+v, want one start, then one end with its duration", events)
	}
}

// testOutageLostLock checks that a lock the policy remembers survives a
// store that loses it during an outage (a server restarted empty): the
// attempts refused during the outage carry it into the fallback, and the
// write-back restores it.
func testOutageLostLock(t *testing.T, e *env) {
	r := lockout.ByUsername(2)
	r.Schedule = lockout.Fixed(100 * e.unit)
	p, f := e.faultPolicy(t, lockout.Config{Rules: []lockout.Rule{r}, LockCacheTTL: e.unit / 2})
	f.record.Store(true)
	s := lockout.Subject{Username: "mallory"}
	for range 2 {
		if err := try(t, p, s, false); err != nil {
			t.Fatal(err)
		}
	}
	// Past the lock cache's TTL, the next attempt asks the store, which
	// fails: the remembered lock refuses it.
	time.Sleep(e.unit)
	f.mode.Store(faultDown)
	refused(t, try(t, p, s, false), lockout.ReasonLocked)
	// The store restarts empty: every key the policy wrote is gone.
	var ops []backend.Op
	for k := range f.grown {
		ops = append(ops, backend.DeleteOp(k))
	}
	e.do(t, ops...)
	f.mode.Store(faultNone)
	e.waitRecovered(t, p, e.unit)
	other, _ := e.policy(t, lockout.Config{Rules: []lockout.Rule{r}})
	refused(t, try(t, other, s, false), lockout.ReasonLocked)
}

// testRefusedLeavesNoKey refuses attempts with fresh usernames from a
// locked IP: none of them leaves a key in the store.
func testRefusedLeavesNoKey(cacheTTL time.Duration) caseFunc {
	return func(t *testing.T, e *env) {
		{
			ip := lockout.ByIP(2)
			ip.Schedule = lockout.Fixed(100 * e.unit)
			p, f := e.faultPolicy(t, lockout.Config{
				Rules:        []lockout.Rule{ip, lockout.ByUsername(5), lockout.ByUsernameAndIP(5)},
				LockCacheTTL: cacheTTL,
				Prefix:       fmt.Sprintf("refused%d", max(cacheTTL, 0)),
			})
			for i := range 2 {
				if err := try(t, p, lockout.Subject{Username: fmt.Sprintf("first%d", i), IP: "192.0.2.9"}, false); err != nil {
					t.Fatal(err)
				}
			}
			f.record.Store(true)
			for i := range 200 {
				refused(t, try(t, p, lockout.Subject{Username: fmt.Sprintf("fresh%d", i), IP: "192.0.2.9"}, false), lockout.ReasonLocked)
			}
			f.record.Store(false)
			var ops []backend.Op
			for k := range f.grown {
				ops = append(ops, backend.ExistsOp(k))
			}
			left := 0
			if len(ops) > 0 {
				for i, r := range e.do(t, ops...) {
					if r.Found {
						left++
						if left <= 3 {
							t.Errorf("a refused attempt left key %q (value %d)", trunc(ops[i].Key), r.Value)
						}
					}
				}
			}
			if left > 0 {
				t.Errorf("200 refused attempts left %d keys in the store, want none", left)
			}
			t.Logf("%d keys grown by refused attempts, %d left", len(ops), left)
		}
	}
}

// testUnlockAcrossPolicies checks the lock cache's bound: two policies over
// one store, one unlocks, the other honours it within LockCacheTTL.
func testUnlockAcrossPolicies(t *testing.T, e *env) {
	r := lockout.ByUsername(2)
	r.Schedule = lockout.Fixed(100 * e.unit)
	cfg := lockout.Config{Rules: []lockout.Rule{r}, LockCacheTTL: e.unit}
	p1, _ := e.policy(t, cfg)
	p2, c2 := e.policy(t, cfg)
	s := lockout.Subject{Username: "carol"}
	for range 2 {
		if err := try(t, p1, s, false); err != nil {
			t.Fatal(err)
		}
	}
	refused(t, try(t, p2, s, false), lockout.ReasonLocked)
	// The cache takes the lock in the background, within moments: then a
	// refusal costs no store call.
	for i := 0; ; i++ {
		c2.Reset()
		re := refused(t, try(t, p2, s, false), lockout.ReasonLocked)
		if re.Remembered && c2.Calls() == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("a refusal of a lock p2 saw: remembered %v, %d store calls; want remembered, none", re.Remembered, c2.Calls())
		}
		time.Sleep(e.margin / 10)
	}
	if err := p1.Unlock(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	unlocked := time.Now()
	time.Sleep(e.unit + e.margin)
	if err := try(t, p2, s, true); err != nil {
		t.Errorf("%v after an unlock through another policy (LockCacheTTL %v): %v", time.Since(unlocked), e.unit, err)
	}
}
