package lockout

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestWallNow: the events' clock tells the time of day, whatever the
// intervals between its reads, across the refreshes of its anchor.
func TestWallNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Policy{started: time.Now()}
		for _, step := range []time.Duration{0, time.Millisecond, 400 * time.Millisecond, 999 * time.Millisecond, time.Second, 3 * time.Second, time.Nanosecond} {
			time.Sleep(step)
			if got, want := p.wallNow(), time.Now(); !got.Equal(want) {
				t.Fatalf("after a sleep of %v: wallNow %v, want %v", step, got, want)
			}
		}
	})
}
