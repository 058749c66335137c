package conformance

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// BenchKeys is how many distinct keys the benchmarks spread their load over.
const BenchKeys = 100_000

// RunBenchmarks measures the store's operations as sub-benchmarks of b, each
// in parallel (b.RunParallel) over BenchKeys keys, with allocations reported:
//
//   - IncrExisting: Incr of a key that exists;
//   - IncrNew: Incr that creates a key (one allocation per call is the
//     benchmark's own, for the new key's name);
//   - Exists: Exists of a key that exists;
//   - Batch6: one call of three Incr and three Exists, the shape of a lockout
//     decision with three rules.
//
// Harness.New is called once per sub-benchmark, and must allow the benchmark
// to create as many keys as it runs iterations (IncrNew creates one per
// iteration).
func RunBenchmarks(b *testing.B, h Harness) {
	b.Run("IncrExisting", func(b *testing.B) {
		s, keys := benchStore(b, h)
		runParallel(b, func(i int, ops []backend.Op) []backend.Op {
			return append(ops, backend.IncrOp(keys[i], 1, time.Hour))
		}, s)
	})
	b.Run("IncrNew", func(b *testing.B) {
		s := h.New(b)
		b.Cleanup(func() { s.Close() })
		var gid atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			prefix := fmt.Appendf(nil, "bench/new/%d/", gid.Add(1))
			buf := prefix
			ops := make([]backend.Op, 1)
			res := make([]backend.Result, 1)
			for i := 0; pb.Next(); i++ {
				buf = strconv.AppendInt(buf[:len(prefix)], int64(i), 10)
				ops[0] = backend.IncrOp(string(buf), 1, time.Hour)
				if err := s.Do(context.Background(), ops, res); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Exists", func(b *testing.B) {
		s, keys := benchStore(b, h)
		runParallel(b, func(i int, ops []backend.Op) []backend.Op {
			return append(ops, backend.ExistsOp(keys[i]))
		}, s)
	})
	b.Run("Batch6", func(b *testing.B) {
		s, keys := benchStore(b, h)
		n := len(keys)
		runParallel(b, func(i int, ops []backend.Op) []backend.Op {
			return append(ops,
				backend.IncrOp(keys[i], 1, time.Hour),
				backend.IncrOp(keys[(i+1)%n], 1, time.Hour),
				backend.IncrOp(keys[(i+2)%n], 1, time.Hour),
				backend.ExistsOp(keys[(i+3)%n]),
				backend.ExistsOp(keys[(i+4)%n]),
				backend.ExistsOp(keys[(i+5)%n]),
			)
		}, s)
	})
}

// benchStore returns a store holding BenchKeys keys, and their names.
func benchStore(b *testing.B, h Harness) (backend.Backend, []string) {
	b.Helper()
	s := h.New(b)
	b.Cleanup(func() { s.Close() })
	keys := make([]string, BenchKeys)
	ops := make([]backend.Op, 0, 1000)
	res := make([]backend.Result, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%06d", i)
		ops = append(ops, backend.IncrOp(keys[i], 1, time.Hour))
		if len(ops) == cap(ops) || i == len(keys)-1 {
			if err := s.Do(context.Background(), ops, res); err != nil {
				b.Fatalf("filling the store: %v", err)
			}
			ops = ops[:0]
		}
	}
	return s, keys
}

// runParallel calls s.Do with the ops mk builds for key index i, spreading
// goroutines over the key space with a prime stride.
func runParallel(b *testing.B, mk func(i int, ops []backend.Op) []backend.Op, s backend.Backend) {
	var gid atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(gid.Add(1)*7919) % BenchKeys
		ops := make([]backend.Op, 0, 8)
		res := make([]backend.Result, 8)
		ctx := context.Background()
		for pb.Next() {
			ops = mk(i, ops[:0])
			if err := s.Do(ctx, ops, res); err != nil {
				b.Error(err)
				return
			}
			i = (i + 104729) % BenchKeys
		}
	})
}
