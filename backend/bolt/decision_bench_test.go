package bolt_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/bolt"
)

// BenchmarkDecision measures an admitted decision with three rules
// (username, IP, username+IP) on a bbolt file: Allow, which writes the three
// reservations in one transaction, then Failure, which costs nothing more.
// "lone" is one caller at a time (latency: one commit per decision);
// "parallel64" is 64 callers at once sharing commits, and
// "parallel64Journal" the same with the attempt journal on. The store holds the
// subjects' counters before the timer starts.
func BenchmarkDecision(b *testing.B) {
	const subjects = 20_000
	list := make([]lockout.Subject, subjects)
	for i := range list {
		list[i] = lockout.Subject{Username: fmt.Sprintf("user%05d", i), IP: fmt.Sprintf("10.0.%d.%d", i>>8&255, i&255)}
	}
	rules := []lockout.Rule{lockout.ByUsername(math.MaxInt32), lockout.ByIP(math.MaxInt32), lockout.ByUsernameAndIP(math.MaxInt32)}
	for i := range rules {
		rules[i].Window = time.Hour
	}
	ctx := context.Background()
	decide := func(p *lockout.Policy, s lockout.Subject) error {
		a, err := p.Allow(ctx, s)
		if err != nil {
			return err
		}
		return a.Failure(ctx)
	}
	setup := func(b *testing.B, journal bool) *lockout.Policy {
		store, err := bolt.Open(filepath.Join(b.TempDir(), "lockout.db"), 0o600, &bolt.Options{SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		cfg := lockout.Config{Rules: rules, Logger: slog.New(slog.DiscardHandler)}
		if journal {
			cfg.Journal = &lockout.JournalConfig{}
		}
		p, err := lockout.New(store, cfg)
		if err != nil {
			b.Fatal(err)
		}
		// Fill the counters with 64 concurrent callers (shared commits).
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < subjects; i = next.Add(1) - 1 {
					if err := decide(p, list[i]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return p
	}
	b.Run("lone", func(b *testing.B) {
		p := setup(b, false)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := decide(p, list[i%subjects]); err != nil {
				b.Fatal(err)
			}
			i += 7919
		}
	})
	parallel := func(b *testing.B, journal bool) {
		p := setup(b, journal)
		var gid atomic.Int64
		b.SetParallelism(32) // 64 goroutines on 2 CPUs
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(gid.Add(1) * 7919)
			for pb.Next() {
				if err := decide(p, list[i%subjects]); err != nil {
					b.Error(err)
					return
				}
				i += 104729
			}
		})
		b.StopTimer()
		if journal {
			if err := p.SyncJournal(ctx); err != nil {
				b.Fatal(err)
			}
			if st := p.JournalStats(); st.Dropped > 0 {
				b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
			}
		}
	}
	b.Run("parallel64", func(b *testing.B) { parallel(b, false) })
	// The same with the journal on: a record per decision, appended in
	// the background in batches, each batch one more write transaction.
	b.Run("parallel64Journal", func(b *testing.B) { parallel(b, true) })
}
