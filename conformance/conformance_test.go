package conformance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/conformance"
)

// refStore is a plain, exact store: a map under a mutex. Its faults make it
// one of the broken stores the suite must catch.
type refStore struct {
	faults faults

	mu       sync.Mutex
	m        map[string]*refEntry
	incrs    int
	closed   bool
	journals map[string][]refRecord
	seq      uint64 // the last record ID
	capacity int    // the most keys held; 0: no cap
}

type faults struct {
	loseEvery     int  // lose one increment in loseEvery
	reportExpired bool // Exists reports expired keys
	liveAtExpiry  bool // a key is live at the instant of its expiry
	expireEarly   bool // keys expire at 90% of their TTL
	nanoEarly     bool // keys expire a nanosecond before their TTL
	reportsLess   bool // the remaining TTL reported is a millisecond short
	deleteExpired bool // Delete of an expired key reports it existed
	rejectSpaces  bool // keys with spaces are refused
	ignoreContext bool // done contexts are ignored
	readsFirst    bool // reads run before the batch's writes, in a pass of their own
	keepsZero     bool // a decrement to zero leaves the key holding zero

	silentAfterClose bool          // Keys yields nothing, and no error, after Close
	lockPerOp        bool          // each operation takes the lock on its own
	capTTL           time.Duration // finite TTLs are capped, and reported capped
	capQuietly       time.Duration // every key dies within this, whatever TTL it reports
	belowZero        bool          // a decrement may take a counter below zero
	zeroCreates      bool          // an Incr by zero creates a missing key
	listsExpired     bool          // Keys yields expired keys
	plainClosed      bool          // after Close, errors do not wrap ErrClosed
	incrResetsTTL    bool          // an Incr of an existing key sets its TTL anew
	skipValidation   bool          // malformed operations are applied as they come
	fullUnwrapped    bool          // a full store's error does not wrap ErrFull
	fullDrops        bool          // a full store acknowledges a new key it does not keep
	fullEvicts       bool          // a full store evicts a key to make room for a new one
	guardIgnored     bool          // IfExpiresBefore is ignored: every decrement applies
	guardInclusive   bool          // a decrement applies to a key expiring at IfExpiresBefore too
	guardStale       bool          // Expires is the key's first expiry, not moved by Expire

	// The harness's declarations, when they differ from the store.
	declareAtomic   bool // AtomicTags, even with readsFirst
	declareNoLister bool // no Lister, though the store implements it
	hideLister      bool // Lister declared, but the store does not implement it
	declareNoGuard  bool // no ExpiryGuard, though the store guards

	journal journalFaults
}

type refEntry struct {
	v     int64
	exp   time.Time // zero: no expiry
	first time.Time // guardStale: the expiry it was made with
	death time.Time // capQuietly: when the key really dies
}

func newRef(f faults) *refStore { return &refStore{faults: f, m: map[string]*refEntry{}} }

func (s *refStore) live(key string, now time.Time) *refEntry {
	e := s.m[key]
	if e != nil && !e.death.IsZero() && !now.Before(e.death) {
		return nil
	}
	if e == nil || e.exp.IsZero() || now.Before(e.exp) || s.faults.liveAtExpiry && now.Equal(e.exp) {
		return e
	}
	return nil
}

func (s *refStore) expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl == backend.NoExpiry || !backend.ValidTTL(ttl) && s.faults.skipValidation {
		return time.Time{}
	}
	if s.faults.expireEarly {
		ttl = ttl * 9 / 10
	}
	if s.faults.nanoEarly {
		ttl--
	}
	if s.faults.capTTL > 0 {
		ttl = min(ttl, s.faults.capTTL)
	}
	return now.Add(ttl)
}

// setExpiry gives e its expiry for ttl.
func (s *refStore) setExpiry(e *refEntry, now time.Time, ttl time.Duration) {
	e.exp = s.expiry(now, ttl)
	if s.faults.capQuietly > 0 {
		e.death = now.Add(s.faults.capQuietly)
	}
}

// errClosed is the error of a call after Close.
func (s *refStore) errClosed() error {
	if s.faults.plainClosed {
		return errors.New("store is closed")
	}
	return backend.ErrClosed
}

func (s *refStore) result(e *refEntry, now time.Time) backend.Result {
	r := e.result(now)
	if s.faults.reportsLess && r.TTL > 0 {
		r.TTL -= time.Millisecond
	}
	return r
}

func (e *refEntry) result(now time.Time) backend.Result {
	if e == nil {
		return backend.Result{}
	}
	r := backend.Result{Found: true, Value: e.v, TTL: backend.NoExpiry}
	if !e.exp.IsZero() {
		r.TTL, r.Expires = e.exp.Sub(now), e.expires()
	}
	return r
}

// expires is the key's Result.Expires: its expiry in Unix nanoseconds.
func (e *refEntry) expires() int64 {
	if !e.first.IsZero() {
		return e.first.UnixNano()
	}
	return e.exp.UnixNano()
}

// GuardsExpiry implements backend.ExpiryGuard.
func (s *refStore) GuardsExpiry() bool { return true }

// guarded reports whether the conditional decrement op leaves e as it is.
func (s *refStore) guarded(e *refEntry, op backend.Op) bool {
	if op.Delta >= 0 || op.IfExpiresBefore == 0 || s.faults.guardIgnored {
		return false
	}
	if e.exp.IsZero() {
		return true // no expiry: never before anything
	}
	x := e.expires()
	return x > op.IfExpiresBefore || x == op.IfExpiresBefore && !s.faults.guardInclusive
}

func (s *refStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if err := ctx.Err(); err != nil && !s.faults.ignoreContext {
		return err
	}
	if s.faults.skipValidation {
		if len(res) < len(ops) {
			ops = ops[:len(res)]
		}
	} else if err := backend.ValidateBatch(ops, res); err != nil {
		return err
	}
	if s.faults.readsFirst {
		return s.readsFirst(ctx, ops, res)
	}
	if s.faults.lockPerOp {
		for i := range ops {
			if err := s.apply(ops[i:i+1], res[i:i+1], func(backend.Op) bool { return true }); err != nil {
				return err
			}
			runtime.Gosched()
		}
		return nil
	}
	return s.apply(ops, res, func(backend.Op) bool { return true })
}

// readsFirst applies the batch's reads, then, after a pause, its writes.
func (s *refStore) readsFirst(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	read := func(op backend.Op) bool { return op.Kind == backend.Exists }
	if err := s.apply(ops, res, read); err != nil {
		return err
	}
	time.Sleep(time.Millisecond)
	return s.apply(ops, res, func(op backend.Op) bool { return !read(op) })
}

// apply applies the ops for which which returns true.
func (s *refStore) apply(ops []backend.Op, res []backend.Result, which func(backend.Op) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errClosed()
	}
	now := time.Now()
	for i, op := range ops {
		if !which(op) {
			continue
		}
		if s.faults.rejectSpaces && strings.Contains(op.Key, " ") {
			return fmt.Errorf("key %q has a space", op.Key)
		}
		e := s.live(op.Key, now)
		switch op.Kind {
		case backend.Incr:
			switch {
			case e == nil && (op.Delta > 0 || op.Delta == 0 && s.faults.zeroCreates):
				if s.capacity > 0 && len(s.m) >= s.capacity {
					switch {
					case s.faults.fullEvicts:
						for k := range s.m {
							delete(s.m, k)
							break
						}
					case s.faults.fullDrops:
						res[i] = backend.Result{Found: true, Value: op.Delta, TTL: op.TTL}
						continue
					case s.faults.fullUnwrapped:
						return errors.New("store is full")
					default:
						return fmt.Errorf("%d keys: %w", len(s.m), backend.ErrFull)
					}
				}
				e = &refEntry{}
				s.setExpiry(e, now, op.TTL)
				if s.faults.guardStale {
					e.first = e.exp
				}
				s.m[op.Key] = e
			case e != nil && op.Delta > 0 && s.faults.incrResetsTTL:
				s.setExpiry(e, now, op.TTL)
			}
			if e != nil && s.guarded(e, op) {
				res[i] = s.result(e, now)
				continue
			}
			if e != nil {
				s.incrs++
				if s.faults.loseEvery == 0 || s.incrs%s.faults.loseEvery != 0 {
					e.v += op.Delta
					if !s.faults.belowZero {
						e.v = max(0, e.v)
					}
				}
				if op.Delta < 0 && e.v == 0 && !s.faults.keepsZero {
					delete(s.m, op.Key)
					e = nil
				}
			}
			res[i] = s.result(e, now)
		case backend.Expire:
			if e != nil {
				s.setExpiry(e, now, op.TTL)
			}
			res[i] = s.result(e, now)
		case backend.Exists:
			if s.faults.reportExpired && e == nil {
				if e = s.m[op.Key]; e != nil {
					res[i] = backend.Result{Found: true, Value: e.v, TTL: time.Millisecond}
					continue
				}
			}
			res[i] = s.result(e, now)
		case backend.Delete:
			res[i] = backend.Result{Found: e != nil || s.faults.deleteExpired && s.m[op.Key] != nil}
			delete(s.m, op.Key)
		}
	}
	return nil
}

func (s *refStore) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := ctx.Err(); err != nil {
			yield("", err)
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			if !s.faults.silentAfterClose {
				yield("", s.errClosed())
			}
			return
		}
		now := time.Now()
		var keys []string
		for k := range s.m {
			if strings.HasPrefix(k, prefix) && (s.faults.listsExpired || s.live(k, now) != nil) {
				keys = append(keys, k)
			}
		}
		s.mu.Unlock()
		for _, k := range keys {
			if !yield(k, nil) {
				return
			}
		}
	}
}

func (s *refStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// unlisted hides the Lister of the store it wraps.
type unlisted struct{ backend.Backend }

func harness(f faults) conformance.Harness {
	return conformance.Harness{
		New: func(testing.TB) backend.Backend {
			if f.hideLister {
				return unlisted{newRef(f)}
			}
			return newRef(f)
		},
		NewCapped: func(testing.TB) backend.Backend {
			s := newRef(f)
			s.capacity = 300
			return s
		},
		FakeTime:           true,
		Lister:             !f.declareNoLister,
		ExpiryGuard:        !f.declareNoGuard,
		AtomicTags:         !f.readsFirst || f.declareAtomic, // one mutex per batch
		Journal:            true,
		JournalRetention:   refRetention,
		JournalMax:         refMax,
		JournalRecordBytes: refRecordBytes,
	}
}

func TestReferenceStore(t *testing.T) {
	conformance.Run(t, harness(faults{}))
}

// TestReferenceStoreRealTime runs the suite with real sleeps, as network
// stores do, with a coarse declared granularity.
func TestReferenceStoreRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("sleeps real time")
	}
	h := harness(faults{journal: journalFaults{retention: 2 * time.Second}})
	h.FakeTime = false
	h.JournalRetention = 2 * time.Second
	conformance.Run(t, h)
}

// The broken stores, and the subtests that must catch each of them.
var broken = []struct {
	name   string
	faults faults
	caught []string
}{
	{"lossy", faults{loseEvery: 1000}, []string{"ConcurrentSharedKey", "ConcurrentDistinctKeys"}},
	{"reports-expired", faults{reportExpired: true}, []string{"ExpiredKeyNeverExists", "ExpiryNeverEarly"}},
	{"live-at-expiry", faults{liveAtExpiry: true}, []string{"ExpiryNeverEarly"}},
	{"expires-a-nanosecond-early", faults{nanoEarly: true}, []string{"ExpiryNeverEarly"}},
	{"reports-ttl-short", faults{reportsLess: true}, []string{"ExpiryNeverEarly"}},
	{"delete-finds-expired", faults{deleteExpired: true}, []string{"ExpiredKeyNeverExists"}},
	{"expires-early", faults{expireEarly: true}, []string{"ExpiryNeverEarly", "IncrementKeepsTTL", "ExpireSetsTTL"}},
	{"rejects-spaces", faults{rejectSpaces: true}, []string{"HostileKeys"}},
	{"ignores-context", faults{ignoreContext: true}, []string{"CancelledContext", "ExpiredContext"}},
	{"reads-first", faults{readsFirst: true}, []string{"ReadsAfterWrites"}},
	{"keeps-zero", faults{keepsZero: true}, []string{"NegativeDelta", "ConcurrentGiveBack"}},
	{"lister-silent-after-close", faults{silentAfterClose: true}, []string{"Close"}},
	{"lock-per-op-declared-atomic", faults{lockPerOp: true}, []string{"AtomicTags"}},
	{"caps-ttl-at-an-hour", faults{capTTL: time.Hour}, []string{"LongTTLs"}},
	{"kills-keys-after-an-hour", faults{capQuietly: time.Hour}, []string{"LongTTLs"}},
	{"below-zero", faults{belowZero: true}, []string{"NegativeDelta"}},
	{"zero-delta-creates", faults{zeroCreates: true}, []string{"ZeroDelta"}},
	{"lists-expired", faults{listsExpired: true}, []string{"ListerAgrees"}},
	{"plain-error-after-close", faults{plainClosed: true}, []string{"Close"}},
	{"incr-resets-ttl", faults{incrResetsTTL: true}, []string{"IncrementKeepsTTL"}},
	{"skips-validation", faults{skipValidation: true}, []string{"InvalidOperations"}},
	{"full-unwrapped", faults{fullUnwrapped: true}, []string{"Capacity"}},
	{"full-drops", faults{fullDrops: true}, []string{"Capacity"}},
	{"full-evicts", faults{fullEvicts: true}, []string{"Capacity"}},
	{"lister-undeclared", faults{declareNoLister: true}, []string{"Capabilities"}},
	{"guard-undeclared", faults{declareNoGuard: true}, []string{"Capabilities", "ExpiryGuard"}},
	{"guard-ignored", faults{guardIgnored: true}, []string{"ExpiryGuard"}},
	{"guard-inclusive", faults{guardInclusive: true}, []string{"ExpiryGuard"}},
	{"guard-stale-after-refresh", faults{guardStale: true}, []string{"ExpiryGuard"}},
	{"lister-declared-not-implemented", faults{hideLister: true}, []string{"Capabilities"}},
	{"reads-first-declared-atomic", faults{readsFirst: true, declareAtomic: true}, []string{"ReadsAfterWrites"}},
	{"journal-oldest-first", faults{journal: journalFaults{oldestFirst: true}}, []string{"JournalRoundTrip", "JournalPaging"}},
	{"journal-ignores-outcome", faults{journal: journalFaults{ignoresOutcome: true}}, []string{"JournalFilters"}},
	{"journal-drops-fields", faults{journal: journalFaults{dropsFields: true}}, []string{"JournalRoundTrip"}},
	{"journal-retention-a-millisecond-short", faults{journal: journalFaults{retention: refRetention - time.Millisecond}}, []string{"JournalRetention"}},
	{"journal-keeps-forever", faults{journal: journalFaults{keepsForever: true}}, []string{"JournalRetention"}},
	{"journal-no-cap", faults{journal: journalFaults{noCap: true}}, []string{"JournalCap"}},
	{"journal-open-after-close", faults{journal: journalFaults{openAfterClose: true}}, []string{"JournalClose"}},
	{"journal-shared-names", faults{journal: journalFaults{sharedNames: true}}, []string{"JournalNames"}},
	{"journal-lax-cursor", faults{journal: journalFaults{laxCursor: true}}, []string{"JournalInvalid"}},
	{"journal-seconds-only", faults{journal: journalFaults{secondsOnly: true}}, []string{"JournalRoundTrip"}},
	{"journal-unbounded", faults{journal: journalFaults{unbounded: true}}, []string{"JournalLongValues"}},
}

const brokenEnv = "CONFORMANCE_BROKEN_STORE"

// TestBrokenStore runs the suite against the broken store named by the
// environment. TestBrokenStoresAreCaught runs it in a child process, since a
// failing suite fails its test.
func TestBrokenStore(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("run by TestBrokenStoresAreCaught")
	}
	for _, b := range broken {
		if b.name == name {
			conformance.Run(t, harness(b.faults))
			return
		}
	}
	t.Fatalf("no broken store %q", name)
}

func TestBrokenStoresAreCaught(t *testing.T) {
	failRE := regexp.MustCompile(`--- FAIL: TestBrokenStore/(\w+)`)
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStore$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+b.name)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err == nil {
				t.Fatalf("the suite passed the %s store:\n%s", b.name, out.String())
			}
			failed := map[string]bool{}
			for _, m := range failRE.FindAllStringSubmatch(out.String(), -1) {
				failed[m[1]] = true
			}
			for _, want := range b.caught {
				if !failed[want] {
					t.Errorf("subtest %s did not catch the %s store; failed: %v", want, b.name, failed)
				}
			}
			t.Logf("%s caught by %d subtests: %v", b.name, len(failed), failed)
		})
	}
}
