package bolt_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/conformance"
)

func harness(fake bool) conformance.Harness {
	// The journal checks sleep through the retention and a sweep: a minute
	// each costs nothing under fake time, a second each in real time.
	opts := &bolt.Options{JournalRetention: time.Minute, SweepInterval: time.Minute, JournalMax: 200}
	if !fake {
		opts.JournalRetention, opts.SweepInterval = time.Second, time.Second
	}
	return conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			s, err := bolt.Open(filepath.Join(t.TempDir(), "lockout.db"), 0o600, opts)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		NewCapped: func(t testing.TB) backend.Backend {
			o := *opts
			o.MaxSize = 1 << 20
			s, err := bolt.Open(filepath.Join(t.TempDir(), "full.db"), 0o600, &o)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		FakeTime:         fake,
		Lister:           true,
		ExpiryGuard:      true,
		AtomicTags:       true, // a batch is one transaction
		Journal:          true,
		JournalRetention: opts.JournalRetention,
		JournalSweep:     opts.SweepInterval,
		JournalMax:       opts.JournalMax,
		// The default bound.
		JournalRecordBytes: bolt.DefaultJournalRecordBytes,
	}
}

// TestConformance runs the suite on fake time (testing/synctest): the
// store's goroutines live in the bubble and its clock is time.Now.
func TestConformance(t *testing.T) {
	conformance.Run(t, harness(true))
}

// TestConformanceRealTime runs the suite once more on the real clock, as
// the store runs in production, when LOCKOUT_BOLT_REALTIME is set. It is
// opt-in: it sleeps about 10 s, and its timing checks (50 ms margins) can
// fail on a loaded machine whose sleepers wake late, through no fault of
// the store.
func TestConformanceRealTime(t *testing.T) {
	if os.Getenv("LOCKOUT_BOLT_REALTIME") == "" {
		t.Skip("set LOCKOUT_BOLT_REALTIME=1 to run the suite in real time")
	}
	conformance.Run(t, harness(false))
}

func BenchmarkConformance(b *testing.B) {
	conformance.RunBenchmarks(b, harness(false))
}
