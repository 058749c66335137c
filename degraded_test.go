package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// brokenStore fails every call, or hangs until the context is done.
type brokenStore struct{ hang bool }

var errBroken = errors.New("store is down")

func (s brokenStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if s.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return errBroken
}

func (brokenStore) Close() error { return nil }

// Failure modes of a switchStore.
const (
	up      int32 = iota
	down          // every call fails
	hanging       // every call hangs until its deadline
	full          // every call that would create or grow a counter fails with ErrFull
)

// switchStore is a working store that a test can make fail, and counts the
// calls that reach it.
type switchStore struct {
	backend.Backend
	mode  atomic.Int32
	calls atomic.Int64
	// failIn, when positive, counts calls down: the call that brings it to
	// zero fails, whatever the mode.
	failIn atomic.Int64
}

func (s *switchStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	s.calls.Add(1)
	if s.failIn.Load() > 0 && s.failIn.Add(-1) == 0 {
		return errBroken
	}
	switch s.mode.Load() {
	case down:
		return errBroken
	case hanging:
		<-ctx.Done()
		return ctx.Err()
	case full:
		for _, op := range ops {
			if op.Kind == backend.Incr && op.Delta > 0 {
				return fmt.Errorf("filled up: %w", backend.ErrFull)
			}
		}
	}
	return s.Backend.Do(ctx, ops, res)
}

func (s *switchStore) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return s.Backend.(backend.Lister).Keys(ctx, prefix)
}

// probeAfterInterval lets a probe interval pass, makes a decision (bob's,
// admitted), which starts the probe of the store, and waits for the probe
// and the write-back of a recovery. Call it in a synctest bubble.
func probeAfterInterval(t *testing.T, p *lockout.Policy) {
	t.Helper()
	time.Sleep(lockout.DefaultProbeInterval)
	if err := attempt(t, p, bob, true); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
}

// events records the degraded-mode hooks and backend errors of a policy.
type events struct {
	mu       sync.Mutex
	degraded []lockout.DegradedEvent
	errs     int
}

func (e *events) hooks() lockout.Hooks {
	return lockout.Hooks{
		Degraded: func(_ context.Context, ev lockout.DegradedEvent) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.degraded = append(e.degraded, ev)
		},
		BackendError: func(context.Context, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.errs++
		},
	}
}

func (e *events) get() ([]lockout.DegradedEvent, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.degraded), e.errs
}

func newPolicyOn(t *testing.T, store backend.Backend, cfg lockout.Config) *lockout.Policy {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestOutageModes(t *testing.T) {
	for _, mode := range []lockout.Outage{lockout.Fallback, lockout.FailClosed, lockout.AdmitUncounted} {
		for _, hang := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/hang=%v", mode, hang), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var ev events
					store := &switchStore{Backend: newStore(t)}
					store.mode.Store(down)
					want := errBroken
					if hang {
						store.mode.Store(hanging)
						want = context.DeadlineExceeded
					}
					p := newPolicyOn(t, store, lockout.Config{
						Rules:   []lockout.Rule{lockout.ByUsername(3)},
						Timeout: 200 * time.Millisecond,
						Outage:  mode,
						Hooks:   ev.hooks(),
					})
					for i := range 6 {
						start := time.Now()
						a, err := p.Allow(bg, alice)
						took := time.Since(start)
						switch {
						case i == 0 && took > 200*time.Millisecond:
							t.Errorf("first decision took %v, want within the 200ms deadline", took)
						case i > 0 && took != 0:
							t.Errorf("decision %d took %v while degraded, want no wait", i+1, took)
						}
						switch mode {
						case lockout.Fallback:
							if i < 3 {
								if err != nil || !a.Fallback() || a.Err() != nil {
									t.Fatalf("attempt %d: %v, %v; want admitted by the fallback", i+1, a, err)
								}
								if err := a.Failure(bg); err != nil {
									t.Errorf("failure %d: %v", i+1, err)
								}
								continue
							}
							re := refusal(t, err)
							if re.Reason != lockout.ReasonLocked || re.RetryAfter != time.Minute || !re.Fallback && !re.Remembered {
								t.Errorf("attempt %d: %+v, want locked by the fallback for 1m", i+1, re)
							}
						case lockout.FailClosed:
							re := refusal(t, err)
							if re.Reason != lockout.ReasonUnavailable || !errors.Is(err, lockout.ErrUnavailable) || !errors.Is(err, want) {
								t.Errorf("attempt %d: %v, want unavailable wrapping %v", i+1, err, want)
							}
						case lockout.AdmitUncounted:
							if err != nil || !errors.Is(a.Err(), want) || a.Fallback() {
								t.Fatalf("attempt %d: %v, %v; want admitted uncounted with %v", i+1, a, err, want)
							}
							a.Failure(bg)
						}
					}
					if n := store.calls.Load(); n != 1 {
						t.Errorf("%d store calls, want 1: the breaker opens at the first failure", n)
					}
					evs, errs := ev.get()
					if len(evs) != 1 || !evs[0].Start || !errors.Is(evs[0].Err, want) || errs != 1 {
						t.Errorf("degraded events %+v, %d backend errors; want one start, wrapping %v, and one error", evs, errs, want)
					}
					// The operator API asks the store, and says it failed.
					if _, err := p.Status(bg, alice); !errors.Is(err, want) {
						t.Errorf("Status: %v", err)
					}
				})
			})
		}
	}
}

// TestLimitHoldsUnderAttack is the attack: the default
// configuration, 64 concurrent guessers on one username for 3 s, each
// guess a 1 ms password check, and the store failing at some point.
func TestLimitHoldsUnderAttack(t *testing.T) {
	tests := []struct {
		fault    int32
		at       time.Duration // when the store fails
		noCache  bool
		maxGuess int64
	}{
		{fault: down, at: 200 * time.Millisecond, maxGuess: 5},
		{fault: hanging, at: 200 * time.Millisecond, maxGuess: 5},
		{fault: full, at: 200 * time.Millisecond, maxGuess: 5},
		{fault: down, maxGuess: 5},
		{fault: hanging, maxGuess: 5},
		{fault: full, maxGuess: 5},
		// Without the lock cache, the fallback does not know the store's
		// lock: the documented bound is Limit in the store plus Limit in
		// the fallback.
		{fault: down, at: 200 * time.Millisecond, noCache: true, maxGuess: 10},
		{fault: hanging, at: 200 * time.Millisecond, noCache: true, maxGuess: 10},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/at=%v/noCache=%v", []string{"", "down", "hang", "full"}[tt.fault], tt.at, tt.noCache)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &switchStore{Backend: newStore(t)}
				cfg := lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(100)}}
				if tt.noCache {
					cfg.LockCacheTTL = lockout.NoLockCache
				}
				p := newPolicyOn(t, store, cfg)
				var verified atomic.Int64
				stop := time.Now().Add(3 * time.Second)
				var wg sync.WaitGroup
				if tt.at == 0 {
					store.mode.Store(tt.fault)
				}
				for g := range 64 {
					wg.Go(func() {
						s := lockout.Subject{Username: "victim", IP: fmt.Sprintf("203.0.113.%d", g)}
						for time.Now().Before(stop) {
							_, err := p.Check(bg, s, func(context.Context) (bool, error) {
								verified.Add(1)
								time.Sleep(time.Millisecond)
								return false, nil
							})
							if err != nil {
								time.Sleep(time.Millisecond)
							}
						}
					})
				}
				if tt.at > 0 {
					time.Sleep(tt.at)
					store.mode.Store(tt.fault)
				}
				wg.Wait()
				if n := verified.Load(); n > tt.maxGuess {
					t.Errorf("%d guesses reached the password check, want at most %d", n, tt.maxGuess)
				} else {
					t.Logf("%d guesses reached the password check (bound %d)", n, tt.maxGuess)
				}
			})
		})
	}
}

func TestRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(5)
		rule.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}, Hooks: ev.hooks()})
		carol := lockout.Subject{Username: "carol"}
		dave := lockout.Subject{Username: "dave"}
		fail(t, p, alice, 2) // in the store

		store.mode.Store(down)
		fail(t, p, alice, 2) // in the fallback
		fail(t, p, carol, 4) // Limit-1, in the fallback
		fail(t, p, dave, 5)  // locked in the fallback
		if _, err := p.Allow(bg, dave); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("dave after 5 failures in the fallback: %v", err)
		}

		store.mode.Store(up)
		// A decision starts the probe; it is still decided by the fallback.
		probeAfterInterval(t, p)
		evs, _ := ev.get()
		if len(evs) != 2 || !evs[0].Start || evs[1].Start || evs[1].Duration != lockout.DefaultProbeInterval {
			t.Fatalf("degraded events %+v, want a start and an end after %v", evs, lockout.DefaultProbeInterval)
		}

		// What the fallback counted is in the store now.
		if st := status(t, p, alice)["username"]; st.Attempts != 4 {
			t.Errorf("alice after the outage: %v, want the store's 2 and the fallback's 2", st)
		}
		// A key that failed Limit-1 times during the outage locks on its
		// first failure after the store is back.
		fail(t, p, carol, 1)
		if _, err := p.Allow(bg, carol); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("carol: %v, want locked", err)
		}
		// A lock set in the fallback is a store lock: another policy on
		// the store, which never saw it, honours it.
		other := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		_, err := other.Allow(bg, dave)
		if re := refusal(t, err); re.Reason != lockout.ReasonLocked || re.Remembered || re.Fallback || re.RetryAfter != time.Hour-lockout.DefaultProbeInterval {
			t.Errorf("dave through another policy: %+v, want locked by the store for the rest of the hour", re)
		}
	})
}

func TestRecoveryFailsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		store := &switchStore{Backend: newStore(t)}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}, Hooks: ev.hooks()})
		store.mode.Store(down)
		fail(t, p, alice, 3)
		// The probe succeeds, but the store fails again at once: the
		// write-back puts everything back into the fallback.
		store.mode.Store(full)
		time.Sleep(lockout.DefaultProbeInterval)
		fail(t, p, alice, 1)
		synctest.Wait()
		fail(t, p, alice, 1) // the 5th failure: locks alice in the fallback
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("alice after 5 failures across a failed recovery: %v, want locked", err)
		}
		if evs, _ := ev.get(); len(evs) != 1 {
			t.Errorf("degraded events %+v, want only the start", evs)
		}
	})
}

// TestRecoveryCopiesOnce: a write-back that fails half way, and is made
// again by the next recovery, copies each count of the outage to the store
// once: a user's one failure during an outage must not count twice (or
// more, on a flapping store) after it.
func TestRecoveryCopiesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
		store.mode.Store(down)
		const users = 300 // three chunks of the write-back
		for i := range users {
			fail(t, p, lockout.Subject{Username: fmt.Sprint("user", i)}, 1)
		}
		// The store is back, but fails the write-back's second chunk: the
		// probe and the first chunk pass.
		store.mode.Store(up)
		store.failIn.Store(3)
		probeAfterInterval(t, p)
		if store.failIn.Load() != 0 {
			t.Fatalf("the write-back made %d calls fewer than the three expected", store.failIn.Load())
		}
		// The next recovery succeeds.
		probeAfterInterval(t, p)
		other := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
		twice := 0
		for i := range users {
			if st := status(t, other, lockout.Subject{Username: fmt.Sprint("user", i)})["username"]; st.Attempts != 1 {
				twice++
			}
		}
		if twice > 0 {
			t.Errorf("%d of %d users, each failing once during the outage, hold another count in the store", twice, users)
		}
	})
}

// TestLockBetweenCalls: a store that fails during a lockout's calls, the
// first (the marker made with a provisional TTL) or the second (its TTL
// set), leaves the lock its whole length, in every Outage mode: in the
// fallback, and in the store once it recovers, not the provisional TTL of
// the schedule's first step, nor no lock at all; and the lockout counts
// for the schedule (the third is Forever). Before, FailClosed and
// AdmitUncounted returned the store's error, and the attacker who made
// the store fail then got a new Limit of guesses when the counter's window
// ended, however long the schedule said to lock.
func TestLockBetweenCalls(t *testing.T) {
	for _, mode := range []lockout.Outage{lockout.Fallback, lockout.FailClosed, lockout.AdmitUncounted} {
		for _, tc := range []struct {
			name   string
			failIn int64 // the store call that fails: 2, the lockout's first; 3, its second
		}{
			{"first call fails", 2},
			{"second call fails", 3},
		} {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					store := &switchStore{Backend: newStore(t)}
					rule := lockout.ByUsername(3)
					rule.Schedule = lockout.List(time.Minute, time.Hour, lockout.Forever)
					p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}, Outage: mode})
					fail(t, p, alice, 3) // the first lockout: a minute
					time.Sleep(time.Minute + time.Second)
					fail(t, p, alice, 2)
					// The third failure's Allow passes, and then the call
					// that fails.
					store.failIn.Store(tc.failIn)
					fail(t, p, alice, 1)
					if store.failIn.Load() != 0 {
						t.Fatalf("the lockout made %d calls fewer than expected", store.failIn.Load())
					}
					// The store recovered: the next decision starts the
					// probe after the interval (FailClosed refuses it).
					time.Sleep(lockout.DefaultProbeInterval)
					p.Allow(bg, bob)
					synctest.Wait()
					if _, err := p.Allow(bg, bob); err != nil {
						t.Fatalf("bob once the store recovered: %v", err)
					}
					time.Sleep(2 * time.Minute)
					other := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
					st := status(t, other, alice)["username"]
					if !st.Locked || st.LockRemaining < 50*time.Minute {
						t.Fatalf("alice in the store after the outage: %+v, want locked for most of the hour of her second lockout", st)
					}
					// The third lockout is Forever: the second counted.
					time.Sleep(time.Hour)
					fail(t, p, alice, 3)
					time.Sleep(24 * time.Hour)
					if st := status(t, other, alice)["username"]; !st.Locked || st.LockRemaining != lockout.Forever {
						t.Errorf("alice a day after her third lockout: %+v, want locked until unlocked", st)
					}
				})
			})
		}
	}
}

// TestEscalationThroughOutages: a lockout in the fallback counts the
// lockouts the store had counted before the outage, and those of earlier
// outages: an attacker who can make the store fail gets no fresh start of
// the schedule at each outage (a fallback starts empty).
func TestEscalationThroughOutages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(3)
		rule.Schedule = lockout.List(time.Minute, 10*time.Minute, time.Hour)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		locked := func(after time.Duration, want bool) {
			t.Helper()
			time.Sleep(after)
			_, err := p.Allow(bg, alice)
			if got := errors.Is(err, lockout.ErrLocked); got != want {
				t.Fatalf("alice %v later: %v, want locked: %v", after, err, want)
			}
		}
		recoverStore := func() {
			t.Helper()
			store.mode.Store(up)
			probeAfterInterval(t, p)
		}

		fail(t, p, alice, 3) // the first lockout, in the store: a minute
		locked(time.Minute+time.Second, false)
		store.mode.Store(down)
		fail(t, p, alice, 3) // the second lockout, in the fallback: ten minutes
		locked(2*time.Minute, true)
		recoverStore()
		locked(10*time.Minute, false)
		store.mode.Store(down)
		fail(t, p, alice, 3) // the third, in another outage's fallback: an hour
		locked(30*time.Minute, true)
		recoverStore()
		other := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		if st := status(t, other, alice)["username"]; !st.Locked || st.Lockouts != 3 {
			t.Errorf("alice in the store after the outages: %+v, want locked, 3 lockouts", st)
		}
	})
}

// TestHistoryWrittenBackOutlivesLock: the write-back of a lockout made in
// the fallback lengthens the store's history to HistoryWindow after that
// lock ends, as a lockout in the store sets it (a review: the history the
// store held kept its shorter TTL, and the lockout after the fallback's 2h
// lock was the first again).
func TestHistoryWrittenBackOutlivesLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(3)
		rule.Schedule = lockout.List(time.Minute, 2*time.Hour)
		rule.HistoryWindow = 30 * time.Minute
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		fail(t, p, alice, 3) // the first lockout, in the store: a minute
		time.Sleep(20 * time.Minute)
		store.mode.Store(down)
		fail(t, p, alice, 3) // the second, in the fallback: two hours
		time.Sleep(5 * time.Minute)
		store.mode.Store(up)
		probeAfterInterval(t, p)
		time.Sleep(2*time.Hour - 5*time.Minute + time.Second) // the lock ends
		fail(t, p, alice, 3)                                  // the third: two hours again, not one minute
		_, err := p.Allow(bg, alice)
		var re *lockout.RefusedError
		if !errors.As(err, &re) || re.RetryAfter < time.Hour {
			t.Errorf("after the third lockout: %v, want locked for 2h", err)
		}
	})
}

// TestEscalationLearnedFromRefusals: a process that never locked a key
// learns its lockout count from a refusal by the store's lock (in the
// give-back call), and its fallback's lockout counts it.
func TestEscalationLearnedFromRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(3)
		rule.Schedule = lockout.List(time.Minute, 10*time.Minute, time.Hour)
		cfg := lockout.Config{Rules: []lockout.Rule{rule}}
		locker := newPolicyOn(t, store, cfg)
		fail(t, locker, alice, 3) // the first lockout, by another process
		p := newPolicyOn(t, store, cfg)
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("alice through a second policy: %v, want locked", err)
		}
		time.Sleep(time.Minute + time.Second)
		store.mode.Store(down)
		fail(t, p, alice, 3) // the second lockout, in its fallback: ten minutes
		time.Sleep(2 * time.Minute)
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Errorf("alice 2 minutes after her second lockout, in the fallback: %v, want locked (ten minutes)", err)
		}
	})
}

// TestResetForgetsCount: a reset (of a subject, or of everything) makes
// the policy forget the lockout counts it remembered, so that its
// fallback starts the schedule afresh for the subject, as the store does.
func TestResetForgetsCount(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprint("all=", all), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &switchStore{Backend: newStore(t)}
				rule := lockout.ByUsername(3)
				rule.Schedule = lockout.List(time.Minute, 10*time.Minute, time.Hour)
				p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
				fail(t, p, alice, 3) // a minute
				time.Sleep(time.Minute + time.Second)
				fail(t, p, alice, 3) // ten minutes
				var err error
				if all {
					_, err = p.ResetAll(bg)
				} else {
					err = p.Reset(bg, alice)
				}
				if err != nil {
					t.Fatal(err)
				}
				store.mode.Store(down)
				fail(t, p, alice, 3) // the first lockout since the reset: a minute
				time.Sleep(2 * time.Minute)
				if _, err := p.Allow(bg, alice); err != nil {
					t.Errorf("alice 2 minutes after her first lockout since a reset, in the fallback: %v, want admitted", err)
				}
			})
		})
	}
}

func TestFallbackFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPolicyOn(t, brokenStore{}, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}, FallbackMaxKeys: 4})
		admitted := 0
		for i := range 10 {
			a, err := p.Allow(bg, lockout.Subject{Username: fmt.Sprintf("user%d", i)})
			if err != nil {
				re := refusal(t, err)
				if re.Reason != lockout.ReasonUnavailable || !errors.Is(err, backend.ErrFull) || !re.Fallback {
					t.Errorf("user%d: %+v, want unavailable: the fallback is full", i, re)
				}
				continue
			}
			if !a.Fallback() {
				t.Errorf("user%d admitted, but not by the fallback", i)
			}
			admitted++
			a.Failure(bg)
		}
		if admitted != 4 {
			t.Errorf("%d subjects admitted by a fallback of 4 keys, want 4", admitted)
		}
		// Existing keys keep working.
		fail(t, p, lockout.Subject{Username: "user0"}, 3)
	})
}

// TestProbeRate: while the store fails, it sees one probe per interval,
// however many decisions are made.
func TestProbeRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		store.mode.Store(hanging)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(1 << 20)}, Timeout: 100 * time.Millisecond})
		start := time.Now()
		for i := 0; time.Since(start) < 10*time.Second; i++ {
			if a, err := p.Allow(bg, lockout.Subject{IP: "192.0.2.1"}); err == nil {
				a.Success(bg)
			}
			time.Sleep(time.Millisecond)
		}
		if n := store.calls.Load(); n < 9 || n > 11 {
			t.Errorf("%d store calls in 10s of decisions, want the first and about one probe a second", n)
		}
	})
}

// BenchmarkDegraded measures decisions (Allow, then Failure) while the
// store hangs and the breaker is open, over 500 usernames and 200 IPs with
// three rules, and reports their p99 latency (p99-µs): the fallback's cost,
// with no deadline waited for. TestOutageModes shows, in fake time, that no
// degraded decision waits at all.
func BenchmarkDegraded(b *testing.B) {
	store := &switchStore{Backend: newStore(b)}
	store.mode.Store(hanging)
	p, err := lockout.New(store, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(100), lockout.ByUsernameAndIP(5)},
		Timeout: 50 * time.Millisecond,
		Logger:  discard,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	p.Allow(bg, alice) // opens the breaker
	subjects := make([]lockout.Subject, 1000)
	for i := range subjects {
		subjects[i] = lockout.Subject{Username: fmt.Sprintf("user%d", i%500), IP: fmt.Sprintf("198.51.100.%d", i%200)}
	}
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		a, err := p.Allow(bg, subjects[i%len(subjects)])
		if err == nil {
			a.Failure(bg)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100])/float64(time.Microsecond), "p99-µs")
}

func TestLockCache(t *testing.T) {
	rule := lockout.ByUsername(2)
	rule.Schedule = lockout.Fixed(time.Hour)
	t.Run("refusals cost no call", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &switchStore{Backend: newStore(t)}
			p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
			fail(t, p, alice, 2)
			synctest.Wait() // ristretto applies its writes on a goroutine of its own
			before := store.calls.Load()
			for range 100 {
				_, err := p.Allow(bg, alice)
				if re := refusal(t, err); re.Reason != lockout.ReasonLocked || !re.Remembered || re.RetryAfter != time.Hour {
					t.Fatalf("%+v, want a remembered lock of 1h", re)
				}
			}
			if n := store.calls.Load() - before; n != 0 {
				t.Errorf("%d store calls for 100 refusals of a remembered lock, want 0", n)
			}
			// After LockCacheTTL, the store is asked again, once.
			time.Sleep(lockout.DefaultLockCacheTTL)
			for range 100 {
				_, err := p.Allow(bg, alice)
				refusal(t, err)
				synctest.Wait()
			}
			if n := store.calls.Load() - before; n != 2 {
				t.Errorf("%d store calls after the cache TTL, want 2 (one refusal: admission and give-back)", n)
			}
		})
	})
	// The cache's filter (a slot per key hash, holding the latest end of
	// the locks on its keys) must never hide a lock, however many keys
	// share a slot, and must let the keys of a lock that ended or was
	// unlocked through the store again.
	t.Run("many locks behind the filter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &switchStore{Backend: newStore(t)}
			// 4,096 slots for 3,000 locked keys: many share one.
			p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}, LockCacheSize: 1 << 12})
			locked := make([]lockout.Subject, 3000)
			for i := range locked {
				locked[i] = lockout.Subject{Username: fmt.Sprintf("locked%d", i)}
				fail(t, p, locked[i], 2)
			}
			synctest.Wait()
			before := store.calls.Load()
			for i, s := range locked {
				_, err := p.Allow(bg, s)
				if re := refusal(t, err); re.Reason != lockout.ReasonLocked || !re.Remembered {
					t.Fatalf("locked subject %d: %+v, want a remembered lock", i, re)
				}
			}
			if n := store.calls.Load() - before; n != 0 {
				t.Errorf("%d store calls for %d remembered refusals, want 0", n, len(locked))
			}
			for i := range 100 {
				if err := attempt(t, p, lockout.Subject{Username: fmt.Sprintf("free%d", i)}, true); err != nil {
					t.Fatalf("an unlocked subject: %v", err)
				}
			}
			time.Sleep(time.Hour + time.Second) // every lock has ended
			for _, s := range locked[:100] {
				if err := attempt(t, p, s, true); err != nil {
					t.Fatalf("%v after its lock ended: %v", s, err)
				}
			}
		})
	})
	// Three rules lock at once for different times: the remembered
	// refusal asks for the longest wait, and an outage carries every
	// lock, not only the longest, to the fallback, which writes them back
	// to a store that lost them.
	t.Run("the longest of several locks, each carried through an outage", func(t *testing.T) {
		for _, forever := range []bool{false, true} {
			t.Run(fmt.Sprintf("forever=%v", forever), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					mem := newStore(t)
					store := &switchStore{Backend: mem}
					rules := []lockout.Rule{lockout.ByUsername(2), lockout.ByIP(2), lockout.ByUsernameAndIP(2)}
					lengths := []time.Duration{time.Hour, 3 * time.Hour, 2 * time.Hour}
					if forever {
						lengths[2] = lockout.Forever
					}
					for i := range rules {
						rules[i].Schedule = lockout.Fixed(lengths[i])
					}
					p := newPolicyOn(t, store, lockout.Config{Rules: rules})
					names := p.Rules()
					s := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
					fail(t, p, s, 2)
					synctest.Wait()
					before := store.calls.Load()
					_, err := p.Allow(bg, s)
					re := refusal(t, err)
					switch {
					case re.Reason != lockout.ReasonLocked || !re.Remembered:
						t.Errorf("%+v, want a remembered lock", re)
					case forever && (!re.Forever || re.Rule != names[2].Name):
						t.Errorf("%+v, want the %s rule's lock, forever", re, names[2].Name)
					case !forever && (re.Forever || re.RetryAfter != 3*time.Hour || re.Rule != names[1].Name):
						t.Errorf("%+v, want the %s rule's lock, 3h", re, names[1].Name)
					}
					if n := store.calls.Load() - before; n != 0 {
						t.Errorf("%d store calls for a remembered refusal, want 0", n)
					}

					store.mode.Store(down)
					p.Allow(bg, lockout.Subject{Username: "bob"}) // opens the breaker
					if _, err := p.Allow(bg, s); !errors.Is(err, lockout.ErrLocked) {
						t.Fatalf("alice during the outage: %v", err)
					}
					// The store comes back empty, as a restarted one without
					// persistence does.
					var keys []string
					for k, err := range mem.(backend.Lister).Keys(bg, "") {
						if err != nil {
							t.Fatal(err)
						}
						keys = append(keys, k)
					}
					for _, k := range keys {
						if err := mem.Do(bg, []backend.Op{backend.DeleteOp(k)}, make([]backend.Result, 1)); err != nil {
							t.Fatal(err)
						}
					}
					store.mode.Store(up)
					time.Sleep(2 * lockout.DefaultProbeInterval)
					p.Allow(bg, lockout.Subject{Username: "bob"}) // a decision starts the probe
					synctest.Wait()
					st := status(t, p, s)
					for i, r := range names {
						want := lengths[i]
						if want != lockout.Forever {
							want -= 2 * lockout.DefaultProbeInterval
						}
						if got := st[r.Name]; !got.Locked || got.LockRemaining != want {
							t.Errorf("%s after the outage: %+v, want locked for %v", r.Name, got, want)
						}
					}
				})
			})
		}
	})
	// An attempt that takes a key's last slot makes the policy remember
	// the key as full until it reports: the next attempts are refused with
	// no store call (behind the same filter slot as the key's lock).
	t.Run("a full counter until its last attempt reports", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &switchStore{Backend: newStore(t)}
			p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
			a1, err := p.Allow(bg, alice)
			if err != nil {
				t.Fatal(err)
			}
			a2, err := p.Allow(bg, alice) // the last slot
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			before := store.calls.Load()
			_, err = p.Allow(bg, alice)
			if re := refusal(t, err); re.Reason != lockout.ReasonCapacity || !re.Remembered {
				t.Errorf("with every slot taken: %+v, want a remembered full counter", re)
			}
			if n := store.calls.Load() - before; n != 0 {
				t.Errorf("%d store calls for a remembered full counter, want 0", n)
			}
			if err := a2.Success(bg); err != nil {
				t.Fatal(err)
			}
			if err := a1.Failure(bg); err != nil {
				t.Fatal(err)
			}
			if err := attempt(t, p, alice, true); err != nil {
				t.Errorf("after the last attempt reported: %v", err)
			}
		})
	})
	t.Run("unlock elsewhere within the bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := newStore(t)
			p1 := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
			p2 := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
			fail(t, p1, alice, 2)
			if _, err := p2.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(100 * time.Millisecond)
			if err := p1.Unlock(bg, alice); err != nil {
				t.Fatal(err)
			}
			// p1 forgets at once; p2 within LockCacheTTL of having seen it.
			if err := attempt(t, p1, alice, true); err != nil {
				t.Errorf("p1 after its own unlock: %v", err)
			}
			unlocked := time.Now()
			for {
				err := attempt(t, p2, alice, true)
				if err == nil {
					break
				}
				if re := refusal(t, err); !re.Remembered {
					t.Fatalf("p2 refused from the store after the unlock: %+v", re)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if lag := time.Since(unlocked); lag > lockout.DefaultLockCacheTTL {
				t.Errorf("p2 honoured the unlock after %v, want within %v", lag, lockout.DefaultLockCacheTTL)
			}
		})
	})
	t.Run("disabled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &switchStore{Backend: newStore(t)}
			p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}, LockCacheTTL: lockout.NoLockCache})
			fail(t, p, alice, 2)
			before := store.calls.Load()
			for range 10 {
				_, err := p.Allow(bg, alice)
				if re := refusal(t, err); re.Remembered {
					t.Fatalf("%+v: remembered with the cache disabled", re)
				}
			}
			if n := store.calls.Load() - before; n != 20 {
				t.Errorf("%d store calls for 10 refusals without the cache, want 20", n)
			}
		})
	})
	t.Run("held while the store is down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &switchStore{Backend: newStore(t)}
			p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
			fail(t, p, alice, 2)
			synctest.Wait()
			store.mode.Store(down)
			p.Allow(bg, bob) // opens the breaker
			time.Sleep(10 * time.Minute)
			_, err := p.Allow(bg, alice)
			if re := refusal(t, err); re.Reason != lockout.ReasonLocked || !re.Remembered || re.RetryAfter != 50*time.Minute {
				t.Errorf("alice 10 minutes into an outage: %+v, want her remembered lock, 50m left", re)
			}
		})
	})
}

// TestRefusedLeavesNoKey: a locked IP rotating usernames cannot fill the
// store.
func TestRefusedLeavesNoKey(t *testing.T) {
	for _, cacheTTL := range []time.Duration{0, lockout.NoLockCache} {
		t.Run(fmt.Sprintf("LockCacheTTL=%v", cacheTTL), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newStore(t).(*memory.Store)
				rules := []lockout.Rule{lockout.ByIP(3), lockout.ByUsername(5), lockout.ByUsernameAndIP(5)}
				p := newPolicyOn(t, store, lockout.Config{Rules: rules, LockCacheTTL: cacheTTL})
				for i := range 3 {
					fail(t, p, lockout.Subject{Username: fmt.Sprintf("first%d", i), IP: "192.0.2.9"}, 1)
				}
				synctest.Wait()
				before := store.Len()
				for i := range 10_000 {
					_, err := p.Allow(bg, lockout.Subject{Username: fmt.Sprintf("fresh%d", i), IP: "192.0.2.9"})
					if !errors.Is(err, lockout.ErrLocked) {
						t.Fatalf("fresh%d from a locked IP: %v", i, err)
					}
				}
				if n := store.Len() - before; n > 2 {
					t.Errorf("10,000 refused attempts added %d keys to the store, want at most 2", n)
				}
			})
		})
	}
}

func TestPolicyClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPolicyOn(t, brokenStore{}, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
		fail(t, p, alice, 5) // starts the fallback and the lock cache
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrClosed) {
			t.Errorf("Allow after Close: %v", err)
		}
		if err := p.Unlock(bg, alice); !errors.Is(err, lockout.ErrClosed) {
			t.Errorf("Unlock after Close: %v", err)
		}
	})
}

// onWriteBack runs fn once, once armed, right after the first write-back
// store call (an increment, not the probe's) whose ops touch a key
// containing match: during the recovery's first pass, while decisions
// still go to the fallback. With before, it runs fn right before that
// call instead: after the write-back read the fallback, before the store
// has what it read.
type onWriteBack struct {
	*switchStore
	match  string
	fn     func()
	before bool
	armed  atomic.Bool
	inFn   atomic.Bool
}

func (s *onWriteBack) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if s.before {
		s.maybeRun(ops)
	}
	err := s.switchStore.Do(ctx, ops, res)
	if !s.before && err == nil {
		s.maybeRun(ops)
	}
	return err
}

// maybeRun runs fn if ops are the write-back call it waits for.
func (s *onWriteBack) maybeRun(ops []backend.Op) {
	if s.inFn.Load() || s.switchStore.mode.Load() != up || len(ops) == 0 ||
		ops[0].Kind != backend.Incr || ops[0].Delta <= 0 || strings.Contains(ops[0].Key, ":p:") ||
		!slices.ContainsFunc(ops, func(op backend.Op) bool { return strings.Contains(op.Key, s.match) }) ||
		!s.armed.CompareAndSwap(true, false) {
		return
	}
	s.inFn.Store(true)
	s.fn()
	s.inFn.Store(false)
}

// TestRecoverySecondPass: failures the fallback counts while the first
// write-back pass runs (one store call per 128 keys: long under attack)
// reach the store too, by the second pass.
func TestRecoverySecondPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sw := &switchStore{Backend: newStore(t)}
		store := &onWriteBack{switchStore: sw, match: "u=carol"}
		rules := []lockout.Rule{lockout.ByUsername(5)}
		p := newPolicyOn(t, store, lockout.Config{Rules: rules})
		carol, dave := lockout.Subject{Username: "carol"}, lockout.Subject{Username: "dave"}
		sw.mode.Store(down)
		fail(t, p, carol, 1)
		var errs []error
		store.fn = func() { // on the probe's goroutine: t.Errorf only
			for range 3 {
				a, err := p.Allow(bg, dave)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if !a.Fallback() {
					t.Errorf("dave during the first pass: not decided by the fallback")
				}
				a.Failure(bg)
			}
		}
		store.armed.Store(true)
		sw.mode.Store(up)
		probeAfterInterval(t, p)
		if store.armed.Load() {
			t.Fatal("the write-back hook did not run")
		}
		if len(errs) > 0 {
			t.Fatalf("dave during the write-back: %v", errs)
		}
		other := newPolicyOn(t, sw, lockout.Config{Rules: rules})
		if st := status(t, other, dave)["username"]; st.Attempts != 3 {
			t.Errorf("dave in the store after the recovery: %+v, want the 3 failures made during the first pass", st)
		}
	})
}

// TestCloseEndsDegraded: a policy closed while degraded reports the end
// of degraded mode, to its hook and its observer, so that a count of
// degraded policies (lockoutotel's lockout.degraded) drops back; one
// closed while healthy reports nothing.
func TestCloseEndsDegraded(t *testing.T) {
	for _, tc := range []struct {
		name string
		down bool
	}{{"degraded", true}, {"healthy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var ev events
				rec := &recorder{}
				store := &switchStore{Backend: newStore(t)}
				p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}, Hooks: ev.hooks(), Observer: rec})
				if tc.down {
					store.mode.Store(down)
				}
				fail(t, p, alice, 1)
				time.Sleep(time.Minute)
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				p.Close() // twice: reported once
				var kinds []lockout.EventKind
				var end lockout.Event
				for _, e := range rec.take() {
					if e.Kind == lockout.EventDegraded || e.Kind == lockout.EventRecovered {
						kinds = append(kinds, e.Kind)
						end = e
					}
				}
				hooks, _ := ev.get()
				if !tc.down {
					if len(kinds) != 0 || len(hooks) != 0 {
						t.Fatalf("events %v, hooks %+v, want none", kinds, hooks)
					}
					return
				}
				if !slices.Equal(kinds, []lockout.EventKind{lockout.EventDegraded, lockout.EventRecovered}) {
					t.Fatalf("events %v, want degraded then recovered", kinds)
				}
				if !errors.Is(end.Err, lockout.ErrClosed) || !errors.Is(end.Err, errBroken) || end.Duration != time.Minute {
					t.Errorf("end: err %v, duration %v; want ErrClosed and the store's error, after a minute", end.Err, end.Duration)
				}
				if len(hooks) != 2 || !hooks[0].Start || hooks[1].Start || !errors.Is(hooks[1].Err, lockout.ErrClosed) || hooks[1].Duration != time.Minute {
					t.Errorf("hooks %+v, want a start and an end by Close after a minute", hooks)
				}
			})
		})
	}
}

// TestUnlockCountDuringOutage: an unlock while the store fails lifts, and
// counts, the lock the fallback holds.
func TestUnlockCountDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		rule := lockout.ByUsername(3)
		rule.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{rule}})
		store.mode.Store(down)
		fail(t, p, alice, 3)
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("alice after 3 failures in the fallback: %v, want locked", err)
		}
		lifted, err := p.UnlockCount(bg, alice)
		if err == nil {
			t.Error("UnlockCount during the outage: no error, want the store's (the unlock holds in this process only)")
		}
		if lifted != 1 {
			t.Errorf("UnlockCount during the outage = %d, want 1 (the fallback's lock)", lifted)
		}
		if _, err := p.Allow(bg, alice); err != nil {
			t.Errorf("alice after the unlock: %v", err)
		}
	})
}

// blockingHandler is a slog handler that blocks the goroutine logging msg
// until release is closed, having closed reached.
type blockingHandler struct {
	msg              string
	reached, release chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		close(h.reached)
		<-h.release
	}
	return nil
}
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler      { return h }

// TestCloseRacesTrip: a Close made after a failing call set degraded mode,
// but before that call reported it, reports the end after the start: the
// last word of the hooks and events on the closed policy is the end.
func TestCloseRacesTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &blockingHandler{msg: "lockout: store failing, degraded mode starts", reached: make(chan struct{}), release: make(chan struct{})}
		var ev events
		rec := &recorder{}
		store := &switchStore{Backend: newStore(t)}
		store.mode.Store(down)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}, Hooks: ev.hooks(), Observer: rec, Logger: slog.New(h)})
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Allow(bg, alice)
		}()
		<-h.reached // degraded mode set, its start not reported yet
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		close(h.release)
		<-done
		hooks, _ := ev.get()
		var kinds []lockout.EventKind
		for _, e := range rec.take() {
			if e.Kind == lockout.EventDegraded || e.Kind == lockout.EventRecovered {
				kinds = append(kinds, e.Kind)
			}
		}
		if len(hooks) != 2 || !hooks[0].Start || hooks[1].Start || !errors.Is(hooks[1].Err, lockout.ErrClosed) {
			t.Errorf("hooks %+v, want the start, then the end by Close", hooks)
		}
		if !slices.Equal(kinds, []lockout.EventKind{lockout.EventDegraded, lockout.EventRecovered}) {
			t.Errorf("events %v, want degraded then recovered", kinds)
		}
	})
}

// TestDegradedHookCallsPolicy: the hook of the end of degraded mode may
// call the policy, an operator's unlock included, and so may a hook that
// closes it.
func TestDegradedHookCallsPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		var p *lockout.Policy
		var unlocked []error
		hooks := lockout.Hooks{Degraded: func(ctx context.Context, e lockout.DegradedEvent) {
			if e.Start {
				return
			}
			// E.g. clear what the outage locked; in a goroutine, so that
			// an Unlock that waits for the hook to return fails the test
			// (after a minute of the bubble's time) instead of hanging.
			done := make(chan error, 1)
			go func() { done <- p.Unlock(ctx, alice) }()
			select {
			case err := <-done:
				unlocked = append(unlocked, err)
			case <-time.After(time.Minute):
				unlocked = append(unlocked, errors.New("Unlock from the hook blocked"))
			}
		}}
		p = newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}, Hooks: hooks})
		store.mode.Store(down)
		fail(t, p, alice, 1)
		store.mode.Store(up)
		probeAfterInterval(t, p) // recovers; a deadlock fails the bubble
		if len(unlocked) != 1 || unlocked[0] != nil {
			t.Errorf("unlocks from the hook: %v, want one that succeeded", unlocked)
		}
	})
}

// listDown fails listings as well as calls while down, as a store that is
// down does.
type listDown struct{ *switchStore }

func (s listDown) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	if s.mode.Load() == down {
		return func(yield func(string, error) bool) { yield("", errBroken) }
	}
	return s.switchStore.Keys(ctx, prefix)
}

// TestUnlockListingDown: while the store fails, an unlock whose subject
// needs a listing (a username, for the username+IP rule) still lifts the
// lock the fallback holds on the username's own key, counts it, and
// reports the listing's failure.
func TestUnlockListingDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := listDown{&switchStore{Backend: newStore(t)}}
		u := lockout.ByUsername(3)
		u.Schedule = lockout.Fixed(time.Hour)
		p := newPolicyOn(t, store, lockout.Config{Rules: []lockout.Rule{u, lockout.ByUsernameAndIP(10)}})
		store.mode.Store(down)
		fail(t, p, alice, 3)
		if _, err := p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("alice: %v, want locked", err)
		}
		lifted, err := p.UnlockCount(bg, lockout.Subject{Username: "alice"})
		if lifted != 1 || !errors.Is(err, errBroken) || !strings.Contains(fmt.Sprint(err), "listing keys") {
			t.Errorf("UnlockCount during the outage = %d, %v; want 1 (the fallback's username lock) and the listing's error", lifted, err)
		}
		if _, err := p.Allow(bg, alice); err != nil {
			t.Errorf("alice after the unlock: %v", err)
		}
	})
}

// TestNoCarryOutsideFallback: in FailClosed and AdmitUncounted, whose
// fallback holds only the locks made during the outage, a lock this
// process remembers is not carried into it: lifted through another
// process before the outage, it does not come back with the write-back (a
// review, with a Forever lock; Fallback mode carries it, a documented
// caveat).
func TestNoCarryOutsideFallback(t *testing.T) {
	for _, mode := range []lockout.Outage{lockout.FailClosed, lockout.AdmitUncounted} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &switchStore{Backend: newStore(t)}
				rule := lockout.ByUsername(3)
				rule.Schedule = lockout.List(lockout.Forever)
				cfg := lockout.Config{Rules: []lockout.Rule{rule}, Outage: mode}
				p1, p2 := newPolicyOn(t, store, cfg), newPolicyOn(t, store, cfg)
				fail(t, p1, alice, 3) // locked for good; p1 remembers it
				if err := p2.Unlock(bg, alice); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second) // p1's memory of the lock is stale
				store.mode.Store(down)
				p1.Allow(bg, alice) // trips
				if _, err := p1.Allow(bg, alice); err == nil {
					t.Error("alice admitted on p1 during the outage, which refuses her by the lock it remembers")
				}
				store.mode.Store(up)
				time.Sleep(lockout.DefaultProbeInterval)
				p1.Allow(bg, bob) // starts the probe
				synctest.Wait()
				if _, err := p1.Allow(bg, bob); err != nil {
					t.Fatalf("bob once the store recovered: %v", err)
				}
				if st := status(t, p2, alice)["username"]; st.Locked {
					t.Errorf("alice in the store after the outage: %+v; an operator unlocked her before it", st)
				}
			})
		})
	}
}
