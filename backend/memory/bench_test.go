package memory_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/conformance"
)

// BenchmarkStore measures the store with the conformance benchmarks.
func BenchmarkStore(b *testing.B) {
	conformance.RunBenchmarks(b, conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			s, err := memory.New(&memory.Options{MaxKeys: 1 << 26})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

// BenchmarkStoreBatch6New measures the decision of BenchmarkStore/Batch6
// for a new subject: three Incr that create their keys and three Exists of
// missing keys, in one call. Six allocations per call are the benchmark's
// own, for the keys' names.
func BenchmarkStoreBatch6New(b *testing.B) {
	s, err := memory.New(&memory.Options{MaxKeys: 1 << 26})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var gid atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		prefix := fmt.Appendf(nil, "new/%d/", gid.Add(1))
		buf := prefix
		ops := make([]backend.Op, 6)
		res := make([]backend.Result, 6)
		ctx := context.Background()
		for i := 0; pb.Next(); i++ {
			buf = strconv.AppendInt(buf[:len(prefix)], int64(i), 10)
			n := len(buf)
			for r := range 3 {
				buf = append(append(buf[:n], "/rule"...), byte('0'+r))
				ops[r] = backend.IncrOp(string(buf), 1, time.Hour)
				ops[r+3] = backend.ExistsOp(string(append(buf, "/lock"...)))
			}
			if err := s.Do(ctx, ops, res); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBaseline runs the same benchmarks on a map under one mutex: the
// least a correct in-process store must cost, to quote ratios against.
func BenchmarkBaseline(b *testing.B) {
	conformance.RunBenchmarks(b, conformance.Harness{
		New: func(testing.TB) backend.Backend { return &mapStore{m: map[string]*mapEntry{}} },
	})
}

// mapStore is the baseline: exact, expiring counters in a map under one
// mutex (Lister and ErrFull left out).
type mapStore struct {
	mu     sync.Mutex
	m      map[string]*mapEntry
	closed bool
}

type mapEntry struct {
	v   int64
	exp time.Time // zero: no expiry
}

func (s *mapStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := backend.ValidateBatch(ops, res); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return backend.ErrClosed
	}
	for i, op := range ops {
		e := s.m[op.Key]
		if e != nil && !e.exp.IsZero() && !now.Before(e.exp) {
			delete(s.m, op.Key)
			e = nil
		}
		switch op.Kind {
		case backend.Incr:
			if e == nil && op.Delta > 0 {
				e = &mapEntry{}
				if op.TTL != backend.NoExpiry {
					e.exp = now.Add(op.TTL)
				}
				s.m[op.Key] = e
			}
			if e != nil {
				e.v = memory.AddClamped(e.v, op.Delta)
			}
		case backend.Expire:
			if e != nil {
				e.exp = time.Time{}
				if op.TTL != backend.NoExpiry {
					e.exp = now.Add(op.TTL)
				}
			}
		case backend.Delete:
			res[i] = backend.Result{Found: e != nil}
			delete(s.m, op.Key)
			continue
		}
		res[i] = backend.Result{}
		if e != nil {
			res[i] = backend.Result{Found: true, Value: e.v, TTL: backend.NoExpiry}
			if !e.exp.IsZero() {
				res[i].TTL = e.exp.Sub(now)
			}
		}
	}
	return nil
}

func (s *mapStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
