// Package guesstest runs the attack of the degraded-mode tests against a
// lockout policy: many concurrent guessers on one subject, each admitted
// guess a slow password check that fails, while the test breaks the store.
package guesstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
)

// Attack describes one attack.
type Attack struct {
	// Guessers is how many goroutines guess at once (64 when zero).
	Guessers int
	// Duration is how long the attack runs (3 s when zero).
	Duration time.Duration
	// Check is how long a password check takes (1 ms when zero).
	Check time.Duration
	// Faults run, each in turn, at their offset from the attack's start
	// (while it runs), to break or mend the store.
	Faults []Fault
}

// Fault is something done to the store at an offset into the attack.
type Fault struct {
	At time.Duration
	Do func()
}

// Result is what an attack achieved.
type Result struct {
	// Verified counts the guesses that reached the password check.
	Verified int64
	// Refused counts refusals; Errors the other errors, with a sample.
	Refused, Errors int64
	FirstErr        error
	// Fallback counts the admitted guesses the fallback decided.
	Fallback int64
	// P99 is the 99th percentile of the decision latency (Allow, and
	// Failure when admitted) over the decisions made after Settle.
	P99 time.Duration
	// Decisions counts them all.
	Decisions int64
}

// Run attacks s through p and returns the result. Settle is the offset
// after which latencies count towards P99 (for example, one deadline after
// the store failed: the decision that meets the failure waits for it).
func (a Attack) Run(p *lockout.Policy, s lockout.Subject, settle time.Duration) Result {
	if a.Guessers == 0 {
		a.Guessers = 64
	}
	if a.Duration == 0 {
		a.Duration = 3 * time.Second
	}
	if a.Check == 0 {
		a.Check = time.Millisecond
	}
	var (
		res      Result
		verified atomic.Int64
		refused  atomic.Int64
		errs     atomic.Int64
		fallback atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(a.Duration)
	ctx := context.Background()
	for range a.Guessers {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				att, err := p.Allow(ctx, s)
				took := time.Since(t0)
				switch {
				case err == nil:
					verified.Add(1)
					if att.Fallback() {
						fallback.Add(1)
					}
					time.Sleep(a.Check)
					t1 := time.Now()
					att.Failure(ctx)
					took += time.Since(t1) // Allow and Failure, not the check
				case errors.Is(err, lockout.ErrRefused):
					refused.Add(1)
				default:
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
				}
				if t0.Sub(start) >= settle {
					mine = append(mine, took)
				}
				if err != nil {
					// A refused client comes back soon, not in a tight loop.
					time.Sleep(500 * time.Microsecond)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	for _, f := range a.Faults {
		time.Sleep(time.Until(start.Add(f.At)))
		f.Do()
	}
	wg.Wait()
	slices.Sort(lat)
	res.Verified, res.Refused, res.Errors, res.Fallback = verified.Load(), refused.Load(), errs.Load(), fallback.Load()
	res.FirstErr = firstErr
	res.Decisions = int64(len(lat))
	if len(lat) > 0 {
		res.P99 = lat[len(lat)*99/100]
	}
	return res
}

// WarmUp makes n concurrent decisions on distinct subjects through p, as a
// running service has made before an attack starts: the store's client
// has its connections. Each must be admitted.
func WarmUp(t testing.TB, p *lockout.Policy, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			s := lockout.Subject{Username: fmt.Sprintf("warm%d", i), IP: fmt.Sprintf("198.51.100.%d", i%250)}
			a, err := p.Allow(context.Background(), s)
			if err != nil {
				errs <- err
				return
			}
			errs <- a.Success(context.Background())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("warming up: %v", err)
		}
	}
}

// Within reports whether the attack stayed within the documented bound for
// one process: the store admitted at most limit guesses before the outage,
// and the fallback at most limit during it. Most runs admit only limit in
// all (the store locked the key before the fault); when the fault lands
// while the store has counted some guesses of the key but not yet locked
// it, the fallback, which starts that key from zero, may add up to limit.
func (r Result) Within(limit int64) bool {
	return r.Verified-r.Fallback <= limit && r.Fallback <= limit
}
