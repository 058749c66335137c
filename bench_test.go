package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/abbench"
)

const benchSubjects = 100_000

var discard = slog.New(slog.DiscardHandler)

func benchSubjectList() []lockout.Subject {
	s := make([]lockout.Subject, benchSubjects)
	for i := range s {
		s[i] = lockout.Subject{
			Username: fmt.Sprintf("user%06d", i),
			IP:       fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		}
	}
	return s
}

// benchRules are the three rules of a typical policy. The limit is out of
// reach, so that every decision is admitted; Refused locks on purpose.
func benchRules(limit int) []lockout.Rule {
	rules := []lockout.Rule{lockout.ByUsername(limit), lockout.ByIP(limit), lockout.ByUsernameAndIP(limit)}
	for i := range rules {
		rules[i].Window = time.Hour
		rules[i].Schedule = lockout.Fixed(time.Hour)
	}
	return rules
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecision measures whole decisions with three rules (username, IP,
// username+IP) on the memory store, in parallel over 100,000 subjects, and,
// as the baselines of the same run, the store serving the same six
// operations (three Incr, three Exists) in one call without the engine
// (StoreBatch6), and the engine on a store that keeps nothing (EngineOnly).
//
// Each goroutine walks the subjects in order, from its own start: a
// subject's username and address are then in the processor's cache, as
// they are in a server that has just read them from the request (a walk
// in random order made every decision wait for two or three cache misses
// on the benchmark's own strings, about 100 ns). The store still sees
// them in an order unrelated to the one it stored them in: the policies
// are filled in a random order.
func BenchmarkDecision(b *testing.B) {
	subjects := benchSubjectList()
	ctx := context.Background()
	run := func(b *testing.B, f func(s lockout.Subject) error) {
		var gid atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			i := int(gid.Add(1)*7919) % benchSubjects
			for pb.Next() {
				if err := f(subjects[i]); err != nil {
					b.Error(err)
					return
				}
				if i++; i == benchSubjects {
					i = 0
				}
			}
		})
		b.StopTimer()
		// CPU time, the process's background goroutines (the journal's
		// writer) included: on a busy machine it varies less than the
		// wall time.
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	// policy returns a policy whose store already holds every subject's
	// counters, so that the benchmark measures the steady state.
	policy := func(b *testing.B, limit int, cacheTTL time.Duration, journal ...*lockout.JournalConfig) *lockout.Policy {
		cfg := lockout.Config{
			Rules:  benchRules(limit),
			Logger: discard,
			// Room for every subject's locks: a refusal is a cache hit.
			LockCacheSize: 1 << 20,
			LockCacheTTL:  cacheTTL,
		}
		if len(journal) > 0 {
			cfg.Journal = journal[0]
		}
		p, err := lockout.New(newStore(b), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		for _, j := range rand.Perm(len(subjects)) {
			a, err := p.Allow(ctx, subjects[j])
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Failure(ctx); err != nil {
				b.Fatal(err)
			}
		}
		return p
	}
	// allowFailure is the decision the benchmarks measure: Allow, then
	// Failure.
	allowFailure := func(p *lockout.Policy) func(s lockout.Subject) error {
		return func(s lockout.Subject) error {
			a, err := p.Allow(ctx, s)
			if err != nil {
				return err
			}
			return a.Failure(ctx)
		}
	}
	b.Run("AllowFailure", func(b *testing.B) {
		p := policy(b, math.MaxInt32, 0)
		run(b, allowFailure(p))
	})
	// The same with the attempt journal on: every failure is a record,
	// written by the journal's goroutine to the memory store's ring. A
	// queue as large as the run keeps drops out of the measure (they
	// would make it cheaper).
	b.Run("AllowFailureJournal", func(b *testing.B) {
		p := policy(b, math.MaxInt32, 0, &lockout.JournalConfig{Queue: 1 << 16})
		b.Cleanup(func() {
			if st := p.JournalStats(); st.Dropped > 0 {
				b.Logf("journal: %+v", st)
			}
		})
		run(b, allowFailure(p))
	})
	// The same once the policy has seen any lock, as a service has soon
	// after it starts: each decision then looks its keys up in the lock
	// cache before it calls the store.
	b.Run("AllowFailureLockCache", func(b *testing.B) {
		p := policy(b, math.MaxInt32, 0)
		lockout.RememberLock(p, "lockout:elsewhere", time.Hour)
		run(b, allowFailure(p))
	})
	b.Run("AllowSuccess", func(b *testing.B) {
		p := policy(b, math.MaxInt32, 0)
		run(b, func(s lockout.Subject) error {
			a, err := p.Allow(ctx, s)
			if err != nil {
				return err
			}
			return a.Success(ctx)
		})
	})
	for _, tc := range []struct {
		name     string
		cacheTTL time.Duration
	}{{"RefusedLocked", time.Hour}, {"RefusedLockedNoCache", lockout.NoLockCache}} {
		b.Run(tc.name, func(b *testing.B) {
			p := policy(b, 1, tc.cacheTTL) // every subject is locked
			run(b, func(s lockout.Subject) error {
				if _, err := p.Allow(ctx, s); err == nil {
					return fmt.Errorf("%v admitted, want locked", s)
				}
				return nil
			})
		})
	}
	// The shape of an attack on one account: every goroutine is refused
	// on the same locked subject, whose lock the cache holds. The cache
	// trusts what it saw for LockCacheTTL (a second by default): then
	// the refusals ask the store again, until the cache has learned the
	// lock anew (it learns it in the background, moments later).
	// store-refusals/op counts those, which should stay near 0.
	b.Run("RefusedHotKey", func(b *testing.B) {
		p, err := lockout.New(newStore(b), lockout.Config{Rules: benchRules(1), Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		victim := subjects[0]
		if a, err := p.Allow(ctx, victim); err == nil {
			a.Failure(ctx) // locks every rule
		}
		var fromStore atomic.Int64
		run(b, func(lockout.Subject) error {
			_, err := p.Allow(ctx, victim)
			switch {
			case isRemembered(err):
			case errors.Is(err, lockout.ErrLocked):
				fromStore.Add(1)
			default:
				return fmt.Errorf("%v: %v, want a refusal", victim, err)
			}
			return nil
		})
		n := fromStore.Load()
		b.ReportMetric(float64(n)/float64(b.N), "store-refusals/op")
		if 2*n > int64(b.N) {
			// A run of any length starts with the lock just made and
			// learned, and asks the store a few times a second at most.
			b.Fatalf("%d of %d refusals asked the store: the lock cache does not answer", n, b.N)
		}
	})
	// The engine alone: the same decisions on a store that keeps
	// nothing, answering every Incr with 1 and every Exists with a missing
	// key. With StoreBatch6 it splits a decision's time between the
	// engine and the store.
	b.Run("EngineOnly", func(b *testing.B) {
		p, err := lockout.New(nullStore{}, lockout.Config{Rules: benchRules(math.MaxInt32), Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		run(b, allowFailure(p))
	})
	// The store alone: the six operations of a decision's one call, on
	// keys shaped as a decision's, one hash tag (and so one shard) per
	// rule key.
	b.Run("StoreBatch6", func(b *testing.B) {
		store := newStore(b)
		keys := make([][6]string, benchSubjects)
		for i := range keys {
			for j := range keys[i] {
				keys[i][j] = fmt.Sprintf("lockout:%c:rule%d:{%c=user%06d}", "al"[j%2], j/2, "uix"[j/2], i)
			}
		}
		ops := make([]backend.Op, 0, 6)
		for _, i := range rand.Perm(len(keys)) {
			for j := range 3 {
				ops = append(ops, backend.IncrOp(keys[i][2*j], 1, time.Hour))
			}
			if err := store.Do(ctx, ops, make([]backend.Result, 3)); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
		var gid atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(gid.Add(1)*7919) % benchSubjects
			ops := make([]backend.Op, 6)
			res := make([]backend.Result, 6)
			for pb.Next() {
				k := &keys[i]
				for j := range 3 { // in the engine's order: the reads last
					ops[j] = backend.IncrOp(k[2*j], 1, time.Hour)
					ops[3+j] = backend.ExistsOp(k[2*j+1])
				}
				if err := store.Do(ctx, ops, res); err != nil {
					b.Error(err)
					return
				}
				if i++; i == benchSubjects {
					i = 0
				}
			}
		})
	})
}

// nullStore is a store that keeps nothing and never blocks: every Incr
// finds a counter at 1, every other operation a missing key.
type nullStore struct{}

func (nullStore) Do(_ context.Context, ops []backend.Op, res []backend.Result) error {
	for i := range ops {
		res[i] = backend.Result{}
		if ops[i].Kind == backend.Incr {
			res[i] = backend.Result{Found: true, Value: 1}
		}
	}
	return nil
}

func (nullStore) Close() error      { return nil }
func (nullStore) Nonblocking() bool { return true }

// isRemembered reports whether err refuses from the lock cache, without
// allocating (errors.As makes its target escape).
func isRemembered(err error) bool {
	re, ok := err.(*lockout.RefusedError)
	return ok && re.Remembered
}

// BenchmarkJournalCost measures what the attempt journal costs a decision
// (Allow then Failure, three rules, the memory store), as pairs of blocks
// of 50,000 decisions run in parallel: one policy without a journal, then
// one with it, whose block includes waiting for its writer to have
// written the block's records (SyncJournal). cost-% is the median of the
// pairs' extra time; run it with -benchtime=20x (20 pairs). Each block
// starts after a garbage collection: the cost of the collections the
// journal's allocations cause is left out here, and measured by
// BenchmarkDecision/AllowFailureJournal.
func BenchmarkJournalCost(b *testing.B) {
	subjects := benchSubjectList()
	ctx := context.Background()
	newPolicy := func(journal *lockout.JournalConfig) *lockout.Policy {
		p, err := lockout.New(newStore(b), lockout.Config{Rules: benchRules(math.MaxInt32), Logger: discard, Journal: journal})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	off, on := newPolicy(nil), newPolicy(&lockout.JournalConfig{Queue: 1 << 17})
	next := 0
	block := func(p *lockout.Policy) func(ops int) (time.Duration, error) {
		return func(ops int) (time.Duration, error) {
			// A collection of the two stores' heap takes longer than
			// many decisions: start each block after one, so that none
			// lands in one side of a pair only.
			runtime.GC()
			start := next
			d, err := abbench.Block(ops, func(i int) error {
				a, err := p.Allow(ctx, subjects[(start+i)*7919%benchSubjects])
				if err != nil {
					return err
				}
				return a.Failure(ctx)
			})
			if err == nil && p == on {
				t0 := time.Now()
				err = p.SyncJournal(ctx)
				d += time.Since(t0)
			}
			next += ops
			return d, err
		}
	}
	// Both stores hold every subject first: the steady state.
	for _, p := range []*lockout.Policy{off, on} {
		if _, err := block(p)(benchSubjects); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	abbench.Pairs(b, 50_000, block(off), block(on))
	if st := on.JournalStats(); st.Dropped > 0 {
		b.Fatalf("journal: %+v: the queue is too small for a block", st)
	}
}
