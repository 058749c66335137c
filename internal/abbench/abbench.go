// Package abbench measures what a variant of an operation costs against
// its base, on a machine that is busy with other work: it runs the two in
// alternating blocks (A B A B ...), so that a change of load hits both
// alike, and reports the median of the per-pair ratios.
package abbench

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Block runs ops calls of f, spread over GOMAXPROCS goroutines (f gets a
// call number), and returns how long they took. The first error stops it.
func Block(ops int, f func(i int) error) (time.Duration, error) {
	return BlockN(ops, runtime.GOMAXPROCS(0), f)
}

// BlockN is Block over workers goroutines: more than GOMAXPROCS for calls
// that wait on a network server, so that the cores, not the round trips,
// bound the throughput.
func BlockN(ops, workers int, f func(i int) error) (time.Duration, error) {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(ops) {
					return
				}
				if err := f(int(i)); err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(ops)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), first
}

// Pairs runs b.N pairs of blocks of ops calls each, base then variant,
// and variant then base in every other pair.
// base and variant return how long their block took (Block does it, and
// variant includes whatever it must wait for, such as a background writer
// catching up). It reports the medians of each side's time per call
// (base-ns/op, variant-ns/op) and of the pairs' cost of the variant
// (cost-%: variant/base - 1, in percent), with the spread of the middle
// half of the pairs (cost-iqr-%), and of the variant's throughput
// relative to the base's (ratio: base/variant).
func Pairs(b *testing.B, ops int, base, variant func(ops int) (time.Duration, error)) {
	b.Helper()
	var bs, vs, costs, ratios []float64
	for i := 0; i < b.N; i++ {
		// Odd pairs run the variant first (A B B A ...): whatever the
		// second block of a pair gains or loses by coming second (a
		// warmer cache, the first one's garbage) falls on both sides.
		first, second := base, variant
		if i%2 == 1 {
			first, second = variant, base
		}
		t1, err := first(ops)
		if err != nil {
			b.Fatal(err)
		}
		t2, err := second(ops)
		if err != nil {
			b.Fatal(err)
		}
		tb, tv := t1, t2
		if i%2 == 1 {
			tb, tv = t2, t1
		}
		bs = append(bs, float64(tb)/float64(ops))
		vs = append(vs, float64(tv)/float64(ops))
		costs = append(costs, 100*(float64(tv)/float64(tb)-1))
		ratios = append(ratios, float64(tb)/float64(tv))
	}
	b.ReportMetric(0, "ns/op") // the per-call figures below say it
	b.ReportMetric(Median(bs), "base-ns/op")
	b.ReportMetric(Median(vs), "variant-ns/op")
	b.ReportMetric(Median(costs), "cost-%")
	q1, q3 := Quartiles(costs)
	b.ReportMetric(q3-q1, "cost-iqr-%")
	b.ReportMetric(Median(ratios), "ratio")
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// Quartiles returns the first and third quartiles of xs (the medians of
// its lower and upper halves).
func Quartiles(xs []float64) (q1, q3 float64) {
	s := slices.Sorted(slices.Values(xs))
	h := len(s) / 2
	return Median(s[:h]), Median(s[len(s)-h:])
}
