package memcache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// TestHungServerQueue makes ten calls at once, without a deadline, to a
// server that accepts connections and never answers (Timeout 200 ms), then
// closes the store. The eviction check asks a server one call at a time:
// when each call waited for its own check in turn, the slowest took 2 s
// and Close as long (a review). A failed check now answers the calls
// queued behind it, for Timeout.
func TestHungServerQueue(t *testing.T) {
	parallel(t)
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "check", true: "AllowEviction"}[allow], func(t *testing.T) {
			addr, stop := hang(t, "127.0.0.1:0")
			defer stop()
			const timeout = 200 * time.Millisecond
			s := newStore(t, []string{addr}, &Options{Timeout: timeout, MaxActive: 10, AllowEviction: allow})
			var wg sync.WaitGroup
			var smu sync.Mutex
			var slowest time.Duration
			for range 10 {
				wg.Go(func() {
					t0 := time.Now()
					if _, err := backend.Do1(context.Background(), s, backend.IncrOp("k", 1, time.Minute)); err == nil {
						t.Error("a call to a hung server succeeded")
					}
					smu.Lock()
					slowest = max(slowest, time.Since(t0))
					smu.Unlock()
				})
			}
			time.Sleep(50 * time.Millisecond)
			c0 := time.Now()
			s.Close()
			closeTook := time.Since(c0)
			wg.Wait()
			// A call is a request (or a check) of at most Timeout, and a
			// retry of a broken connection: 3 x Timeout, with slack.
			if slowest > 4*timeout || closeTook > 4*timeout {
				t.Errorf("slowest call %v, Close %v: want each within %v", slowest, closeTook, 4*timeout)
			}
		})
	}
}
