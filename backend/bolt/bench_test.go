package bolt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// The write benchmarks compare three ways to commit the same operations:
//
//   - group: the store's group commit;
//   - update: one db.Update per call, the naive baseline;
//   - batch: bbolt's db.Batch, which coalesces concurrent calls but makes
//     each wait up to DB.MaxBatchDelay (10 ms) for company.
var modes = []struct {
	name string
	mode commitMode
}{
	{"group", modeGroup},
	{"update", modeUpdate},
	{"batch", modeBatch},
}

func benchOpen(b *testing.B, mode commitMode) *Store {
	b.Helper()
	s, _ := open(b, &Options{SweepInterval: -1})
	s.mode = mode
	return s
}

func reportCommits(b *testing.B, s *Store, c0, r0 int64) {
	if c := s.stats.commits.Load() - c0; c > 0 {
		b.ReportMetric(float64(s.stats.requests.Load()-r0)/float64(c), "calls/commit")
	}
}

// BenchmarkIncrLone is a failure recorded by one caller: sequential
// increments, each waiting for its commit.
func BenchmarkIncrLone(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			s := benchOpen(b, m.mode)
			ops := []backend.Op{backend.IncrOp("lone", 1, time.Hour)}
			res := make([]backend.Result, 1)
			ctx := context.Background()
			c0, r0 := s.stats.commits.Load(), s.stats.requests.Load()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Do(ctx, ops, res); err != nil {
					b.Fatal(err)
				}
			}
			reportCommits(b, s, c0, r0)
		})
	}
}

// BenchmarkIncrLonePaired measures the same as BenchmarkIncrLone, with the
// three ways interleaved call by call, so that they meet the same disk
// conditions on a shared machine: each iteration is one increment of each,
// and the metrics give the mean latency of each (ns/op is their sum).
func BenchmarkIncrLonePaired(b *testing.B) {
	stores := make([]*Store, len(modes))
	for i, m := range modes {
		stores[i] = benchOpen(b, m.mode)
	}
	ops := []backend.Op{backend.IncrOp("lone", 1, time.Hour)}
	res := make([]backend.Result, 1)
	ctx := context.Background()
	total := make([]time.Duration, len(modes))
	n := 0
	for b.Loop() {
		for i, s := range stores {
			start := time.Now()
			if err := s.Do(ctx, ops, res); err != nil {
				b.Fatal(err)
			}
			total[i] += time.Since(start)
		}
		n++
	}
	for i, m := range modes {
		b.ReportMetric(float64(total[i].Nanoseconds())/float64(n), m.name+"-ns/incr")
	}
}

// BenchmarkIncr64 is failures recorded by 64 concurrent callers, each
// incrementing its own key; ns/op is wall time per increment.
func BenchmarkIncr64(b *testing.B) {
	const callers = 64
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			s := benchOpen(b, m.mode)
			c0, r0 := s.stats.commits.Load(), s.stats.requests.Load()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for g := range callers {
				wg.Go(func() {
					ops := []backend.Op{backend.IncrOp(fmt.Sprint("caller/", g), 1, time.Hour)}
					res := make([]backend.Result, 1)
					for left.Add(-1) >= 0 {
						if err := s.Do(context.Background(), ops, res); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportCommits(b, s, c0, r0)
		})
	}
}
