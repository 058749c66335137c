// Package conformance is the test suite every lockout store passes: the
// [backend.Backend] contract checked operation by operation.
//
// A store's own tests describe the store with a [Harness] and call [Run]:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			New: func(t testing.TB) backend.Backend {
//				s, err := mystore.Open(...)
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//			Granularity: time.Second,
//			Lister:      true,
//		})
//	}
//
// The harness declares what the suite must not guess: the store's TTL
// granularity, whether its time can be faked with testing/synctest, and which
// optional capabilities it has. A declared capability the store lacks, or one
// it has but does not declare, fails the suite.
//
// [RunBenchmarks] measures the same operations in parallel over many keys.
//
// The package depends on the standard library and this module's own
// packages only.
package conformance

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Harness describes a store to the suite.
type Harness struct {
	// New returns a fresh, empty store. The suite calls it once per subtest,
	// from the subtest's goroutine (inside its synctest bubble when FakeTime
	// is set), and closes the store when the subtest ends. New registers any
	// other cleanup it needs with t and fails t if it cannot make a store.
	New func(t testing.TB) backend.Backend

	// Granularity is the store's TTL granularity: it rounds every TTL up to
	// it and reports remaining TTLs to within it. Zero means exact.
	Granularity time.Duration

	// FakeTime declares that the store reads the clock only through package
	// time and runs no goroutines that outlive Close, so that its subtests
	// can run inside a testing/synctest bubble where time is fake and sleeps
	// cost nothing. Stores behind a network server leave it false; the suite
	// then sleeps real time, scaled to Granularity.
	FakeTime bool

	// Lister declares that the store implements backend.Lister.
	Lister bool

	// ExpiryGuard declares that the store implements backend.ExpiryGuard
	// (and that its GuardsExpiry reports true): it reports Result.Expires
	// and honours Op.IfExpiresBefore.
	ExpiryGuard bool

	// AtomicTags declares that the store applies the operations of one hash
	// tag in a batch as one atomic step: no other call sees some of them
	// applied and not the others. The policy then admits exactly a rule's
	// limit of concurrent guesses, where a store without it may admit fewer
	// (never more). The AtomicTags check holds a store that declares it to
	// it: concurrent batches on one tag, none seen in part.
	AtomicTags bool

	// Journal declares that the store implements backend.Journal. The
	// Journal checks then hold it to the contract, using what the stores New
	// makes are configured with: JournalRetention (how long a record is
	// kept at least) and JournalSweep (how much longer it may stay, at
	// most), and JournalMax (the records kept per journal; at least 200
	// for the checks to run in full). Give the stores of the harness short
	// ones: the retention check sleeps through them (fake time makes that
	// free).
	Journal          bool
	JournalRetention time.Duration
	JournalSweep     time.Duration
	JournalMax       int
	// JournalRecordBytes declares the bound on a record's string values
	// the stores New makes are configured with: the store cuts a record
	// whose values add up to more with backend.Record.Bounded. Zero
	// declares that it keeps every value whole.
	JournalRecordBytes int

	// NewCapped, when set, returns a fresh, empty store with a small
	// capacity (a cap on keys, a maximum file size), one that a few
	// thousand new keys fill: the Capacity check fills it until a call
	// fails, which must be with an error wrapping backend.ErrFull, and
	// holds the store to what a full store keeps (every key it
	// acknowledged, none it refused). Like New, it is called from the
	// subtest's goroutine; the suite closes the store. A store whose
	// capacity cannot be made small for a test leaves it nil, and the
	// check is skipped.
	NewCapped func(t testing.TB) backend.Backend

	// CallTimeout bounds how long one call may take when the suite expects a
	// prompt answer (a cancelled context). Zero means one second.
	CallTimeout time.Duration
}

// Run runs the whole suite against the store h describes, as subtests of t:
// the store-level checks of the backend contract, then, under "Policy",
// scenarios that show the lockout engine works on the store (exact
// reservations under concurrency, lockout timing and escalation, success
// semantics, the round-trip budget, the operator API, hostile subjects).
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("conformance: Harness.New is nil")
	}
	for _, c := range storeCases {
		t.Run(c.name, func(t *testing.T) { h.run(t, c.fn) })
	}
	for _, c := range journalCases {
		t.Run(c.name, func(t *testing.T) { h.run(t, c.fn) })
	}
	t.Run("Policy", func(t *testing.T) {
		for _, c := range policyCases {
			t.Run(c.name, func(t *testing.T) { h.run(t, c.fn) })
		}
	})
}

type caseFunc func(t *testing.T, e *env)

type testCase struct {
	name string
	fn   caseFunc
}

// storeCases lists the store-level checks, in the order they run.
var storeCases = []testCase{
	{"Capabilities", testCapabilities},
	{"CreateAndIncrement", testCreateAndIncrement},
	{"NegativeDelta", testNegativeDelta},
	{"ZeroDelta", testZeroDelta},
	{"InvalidOperations", testInvalid},
	{"IncrementKeepsTTL", testIncrementKeepsTTL},
	{"ExpireSetsTTL", testExpireSets},
	{"ExpirePersists", testExpirePersists},
	{"ExpireMissingKey", testExpireMissing},
	{"ExpiredKeyNeverExists", testExpiredNeverExists},
	{"ExpiryNeverEarly", testExpiryNeverEarly},
	{"LongTTLs", testLongTTLs},
	{"DeleteMissingKey", testDeleteMissing},
	{"Delete", testDelete},
	{"MixedBatch", testMixedBatch},
	{"SameKeyInBatch", testSameKeyInBatch},
	{"ReadsAfterWrites", testReadsAfterWrites},
	{"AtomicTags", testAtomicTags},
	{"ConcurrentSharedKey", testConcurrentShared},
	{"ConcurrentDistinctKeys", testConcurrentDistinct},
	{"ConcurrentGiveBack", testConcurrentGiveBack},
	{"ExpiryGuard", testExpiryGuard},
	{"HostileKeys", testHostileKeys},
	{"CancelledContext", testCancelledContext},
	{"ExpiredContext", testExpiredContext},
	{"Close", testClose},
	{"Capacity", testCapacity},
	{"ListerAgrees", testListerAgrees},
	{"ListerHostileKeys", testListerHostile},
}

// env is what one subtest works with.
type env struct {
	h   Harness
	b   backend.Backend
	ctx context.Context
	// unit is the TTL the time-based checks use, scaled to the granularity.
	unit time.Duration
	// margin is how long before an expected expiry a key is checked for, and
	// how long after one it is checked for again: call latency on a
	// network store, nearly nothing with fake time.
	margin time.Duration
}

func (h Harness) run(t *testing.T, fn caseFunc) {
	if h.FakeTime {
		synctest.Test(t, func(t *testing.T) { h.runIn(t, fn) })
		return
	}
	h.runIn(t, fn)
}

func (h Harness) runIn(t *testing.T, fn caseFunc) {
	b := h.New(t)
	if b == nil {
		t.Fatal("conformance: Harness.New returned nil")
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e := &env{h: h, b: b, ctx: context.Background()}
	if h.FakeTime {
		e.unit = 10*time.Second + h.Granularity
		e.margin = time.Millisecond
	} else {
		e.unit = 2 * max(h.Granularity, 250*time.Millisecond)
		e.margin = e.unit / 10
	}
	fn(t, e)
}

func (h Harness) callTimeout() time.Duration {
	if h.CallTimeout > 0 {
		return h.CallTimeout
	}
	return time.Second
}
