package abbench

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
)

func TestMedianQuartiles(t *testing.T) {
	for _, tc := range []struct {
		xs          []float64
		med, q1, q3 float64
	}{
		{nil, 0, 0, 0},
		{[]float64{3}, 3, 0, 0},
		{[]float64{4, 1, 3, 2}, 2.5, 1.5, 3.5},
		{[]float64{5, 1, 4, 2, 3}, 3, 1.5, 4.5},
	} {
		q1, q3 := Quartiles(tc.xs)
		if m := Median(tc.xs); m != tc.med || q1 != tc.q1 || q3 != tc.q3 {
			t.Errorf("%v: median %v, quartiles %v %v; want %v, %v %v", tc.xs, m, q1, q3, tc.med, tc.q1, tc.q3)
		}
	}
}

func TestBlock(t *testing.T) {
	var calls atomic.Int64
	seen := make([]atomic.Bool, 1000)
	if _, err := Block(1000, func(i int) error {
		calls.Add(1)
		if seen[i].Swap(true) {
			t.Errorf("call %d twice", i)
		}
		return nil
	}); err != nil || calls.Load() != 1000 {
		t.Fatalf("%d calls, %v; want 1000", calls.Load(), err)
	}
	boom := errors.New("boom")
	calls.Store(0)
	if _, err := Block(1000, func(i int) error {
		calls.Add(1)
		if i >= 10 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) || calls.Load() > int64(10+runtime.GOMAXPROCS(0)) {
		// Each goroutine stops at its first error.
		t.Fatalf("%d calls, %v; want boom, and a stop", calls.Load(), err)
	}
}
