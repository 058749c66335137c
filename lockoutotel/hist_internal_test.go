package lockoutotel

import (
	"runtime"
	"testing"
	"time"
)

// TestHistPointExtrema: a collection racing with a series' first
// measurement must not report it counted without its sum, minimum and
// maximum (a sum of 0, math.MaxInt64 and math.MinInt64 nanoseconds: a
// minimum of 292 years, a maximum below zero).
func TestHistPointExtrema(t *testing.T) {
	bounds := []int64{1000, 2000, 5000}
	deadline := time.Now().Add(500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		h := newHist(len(bounds) + 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.Gosched()
			h.record(bounds, 1500)
		}()
		for {
			_, count, sum, lo, hi := h.point(len(bounds) + 1)
			if count > 0 {
				if sum != 1500 || lo != 1500 || hi != 1500 {
					t.Fatalf("iteration %d: count %d with sum %d, min %d, max %d: want 1500 each", i, count, sum, lo, hi)
				}
				break
			}
		}
		<-done
	}
}
