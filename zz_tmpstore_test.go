package lockout_test

// Temporary store for developing the engine until backend/memory lands.

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// refStore is a plain, exact store: a map under a mutex. Its faults make it
// one of the broken stores the suite must catch.
type refStore struct {
	faults faults

	mu     sync.Mutex
	m      map[string]*refEntry
	incrs  int
	closed bool
}

type faults struct {
	loseEvery     int  // lose one increment in loseEvery
	reportExpired bool // Exists reports expired keys
	expireEarly   bool // keys expire at 90% of their TTL
	rejectSpaces  bool // keys with spaces are refused
	ignoreContext bool // done contexts are ignored
}

type refEntry struct {
	v   int64
	exp time.Time // zero: no expiry
}

func newRef(f faults) *refStore { return &refStore{faults: f, m: map[string]*refEntry{}} }

func (s *refStore) live(key string, now time.Time) *refEntry {
	e := s.m[key]
	if e == nil || e.exp.IsZero() || now.Before(e.exp) {
		return e
	}
	return nil
}

func (s *refStore) expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl == backend.NoExpiry {
		return time.Time{}
	}
	if s.faults.expireEarly {
		ttl = ttl * 9 / 10
	}
	return now.Add(ttl)
}

func (e *refEntry) result(now time.Time) backend.Result {
	if e == nil {
		return backend.Result{}
	}
	r := backend.Result{Found: true, Value: e.v, TTL: backend.NoExpiry}
	if !e.exp.IsZero() {
		r.TTL = e.exp.Sub(now)
	}
	return r
}

func (s *refStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	if err := ctx.Err(); err != nil && !s.faults.ignoreContext {
		return err
	}
	if err := backend.ValidateBatch(ops, res); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return backend.ErrClosed
	}
	now := time.Now()
	for i, op := range ops {
		if s.faults.rejectSpaces && strings.Contains(op.Key, " ") {
			return fmt.Errorf("key %q has a space", op.Key)
		}
		e := s.live(op.Key, now)
		switch op.Kind {
		case backend.Incr:
			if e == nil && op.Delta > 0 {
				e = &refEntry{exp: s.expiry(now, op.TTL)}
				s.m[op.Key] = e
			}
			if e != nil {
				s.incrs++
				if s.faults.loseEvery == 0 || s.incrs%s.faults.loseEvery != 0 {
					e.v = max(0, e.v+op.Delta)
				}
			}
			res[i] = e.result(now)
		case backend.Expire:
			if e != nil {
				e.exp = s.expiry(now, op.TTL)
			}
			res[i] = e.result(now)
		case backend.Exists:
			if s.faults.reportExpired && e == nil {
				if e = s.m[op.Key]; e != nil {
					res[i] = backend.Result{Found: true, Value: e.v, TTL: time.Millisecond}
					continue
				}
			}
			res[i] = e.result(now)
		case backend.Delete:
			res[i] = backend.Result{Found: e != nil}
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
			yield("", backend.ErrClosed)
			return
		}
		now := time.Now()
		var keys []string
		for k := range s.m {
			if strings.HasPrefix(k, prefix) && s.live(k, now) != nil {
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


func newStore(t testing.TB) backend.Backend { return newRef(faults{}) }
