package memory_test

import (
	"cmp"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/conformance"
)

func harness(opts *memory.Options) conformance.Harness {
	return conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			s, err := memory.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		NewCapped: func(t testing.TB) backend.Backend {
			o := *opts
			o.MaxKeys = 500
			s, err := memory.New(&o)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		FakeTime:         true,
		Lister:           true,
		ExpiryGuard:      true,
		AtomicTags:       true,
		Granularity:      0,
		Journal:          true,
		JournalRetention: opts.JournalRetention,
		JournalSweep:     cmp.Or(opts.SweepInterval, memory.DefaultSweepInterval),
		JournalMax:       opts.JournalMax,
		// The default bound.
		JournalRecordBytes: memory.DefaultJournalRecordBytes,
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, harness(&memory.Options{JournalRetention: time.Minute, JournalMax: 300}))
}

// TestConformanceBusySweeper runs the suite with a sweeper that runs
// every millisecond of fake time, right behind the keys' expiries.
func TestConformanceBusySweeper(t *testing.T) {
	conformance.Run(t, harness(&memory.Options{SweepInterval: time.Millisecond, JournalRetention: time.Minute, JournalMax: 300}))
}
