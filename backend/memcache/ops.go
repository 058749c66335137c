package memcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout/backend"
)

// maxAttempts bounds the retry loops of one operation (an Add lost to a
// concurrent creator, a compare-and-swap lost to a concurrent change).
const maxAttempts = 100

// fullRetries is how many times an incr or decr that a full server refused
// is sent again, the first after fullBackoff, each later one after twice
// the pause before it (see incrDecr).
const (
	fullRetries = 4
	fullBackoff = time.Millisecond
)

// This file holds the single-key operations. Each takes the memcached key
// (already mapped) and returns the operation's Result; see doc.go for the
// TTL scheme and the races these functions tolerate.

// brokenConn reports whether err says a connection broke before the
// request was answered, as a pooled connection to a server that has died or
// restarted does.
func brokenConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dropIdle closes the client's idle connections after err, when err says
// that a connection broke: after a server restart every pooled connection
// to it is stale, and they would otherwise fail one request each. It
// reports whether it did.
func (s *Store) dropIdle(err error) bool {
	if err == nil || !brokenConn(err) {
		return false
	}
	s.c.Close() // Closes idle connections only; the client stays usable.
	if s.evict != nil {
		s.evict.reset() // a restarted server may run with other settings
	}
	return true
}

// isFull reports whether memcached answered that it is out of memory:
// "SERVER_ERROR out of memory storing object" for a store command on a
// server run with -M, "SERVER_ERROR out of memory" for an incr or decr that
// needed a new item. gomemcache reports both as plain errors that quote the
// line.
func isFull(err error) bool {
	// Also as gomemcache may word it one day: ErrServerError with the
	// server's message (bradfitz/gomemcache#196).
	return strings.Contains(err.Error(), "SERVER_ERROR out of memory") ||
		errors.Is(err, gm.ErrServerError) && strings.Contains(err.Error(), "out of memory")
}

// fail wraps an error of the memcached request verb for key k.
func fail(verb, k string, err error) error {
	if len(k) > 48 {
		k = k[:40] + "..."
	}
	if isFull(err) {
		return fmt.Errorf("memcache: %s %q: %w: %w", verb, k, backend.ErrFull, err)
	}
	return fmt.Errorf("memcache: %s %q: %w", verb, k, err)
}

// call sends one request about key k: it waits for a free connection slot
// on k's server (see limiter), within ctx, then runs req, once more on a
// fresh connection if a pooled one was broken and ctx is not done.
func (s *Store) call(ctx context.Context, k string, req func() error) error {
	if err := ctx.Err(); err != nil {
		// The caller has gone (Do returned): send nothing more.
		return fmt.Errorf("memcache: %w", err)
	}
	// Close waits for the request, and none starts after it: a request
	// that ended after Close would put its connection back in a client
	// Close had emptied, open for good.
	s.running.RLock()
	defer s.running.RUnlock()
	if s.closed.Load() {
		return fmt.Errorf("memcache: %w", backend.ErrClosed)
	}
	if s.evict != nil {
		if err := s.evict.check(ctx, k); err != nil {
			return err
		}
	}
	sem, err := s.lim.acquire(ctx, k)
	if err != nil {
		return err
	}
	defer release(sem)
	err = req()
	// A broken connection is retried once, on a fresh one, unless the
	// caller has gone meanwhile: a request abandoned at a deadline must not
	// be sent again later, to a server that may be back by then.
	if s.dropIdle(err) && ctx.Err() == nil {
		// The server may have restarted, with other settings: it is
		// asked again first.
		if s.evict != nil {
			if err := s.evict.check(ctx, k); err != nil {
				return err
			}
		}
		err = req()
	}
	return err
}

// get reads k; a missing key is a nil item.
func (s *Store) get(ctx context.Context, k string) (*gm.Item, error) {
	var it *gm.Item
	err := s.call(ctx, k, func() (err error) {
		it, err = s.c.Get(k)
		return err
	})
	switch {
	case err == nil:
		return it, nil
	case errors.Is(err, gm.ErrCacheMiss):
		return nil, nil
	}
	return nil, fail("get", k, err)
}

// getMulti reads keys that share one connection slot: one request per
// server.
func (s *Store) getMulti(ctx context.Context, keys []string) (map[string]*gm.Item, error) {
	var m map[string]*gm.Item
	err := s.call(ctx, keys[0], func() (err error) {
		m, err = s.c.GetMulti(keys)
		return err
	})
	if err != nil {
		return nil, fail(fmt.Sprintf("get of %d keys, such as", len(keys)), keys[0], err)
	}
	return m, nil
}

// incrDecr sends incr (up) or decr of k by delta; found is false when k is
// missing.
//
// memcached changes a counter in place only when no other request holds
// its item at that moment (a get of it still sending its answer, often
// this store's own read of the key's flags); otherwise it needs a new item,
// and a full server answers "SERVER_ERROR out of memory" without applying
// anything. That is retried a few times, after a short pause (fullBackoff,
// doubling), within ctx: the other request is soon done.
func (s *Store) incrDecr(ctx context.Context, k string, delta uint64, up bool) (v uint64, found bool, err error) {
	call, verb := s.c.Decrement, "decr"
	if up {
		call, verb = s.c.Increment, "incr"
	}
	for try := 0; ; try++ {
		err = s.call(ctx, k, func() (err error) {
			v, err = call(k, delta)
			return err
		})
		if err == nil || try == fullRetries || !isFull(err) {
			break
		}
		t := time.NewTimer(fullBackoff << try)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	switch {
	case err == nil:
		return v, true, nil
	case errors.Is(err, gm.ErrCacheMiss):
		return 0, false, nil
	}
	return 0, false, fail(verb, k, err)
}

// store sends add or cas of it. stored is false when the condition failed:
// for add, the key exists; for cas, the item changed or is gone (changed
// tells which).
func (s *Store) store(ctx context.Context, verb string, it *gm.Item) (stored, changed bool, err error) {
	call := s.c.Add
	if verb == "cas" {
		call = s.c.CompareAndSwap
	}
	err = s.call(ctx, it.Key, func() error { return call(it) })
	switch {
	case err == nil:
		return true, false, nil
	case errors.Is(err, gm.ErrCASConflict):
		return false, true, nil
	case errors.Is(err, gm.ErrNotStored), errors.Is(err, gm.ErrCacheMiss):
		return false, false, nil
	}
	return false, false, fail(verb, it.Key, err)
}

// remove sends delete of k; found is false when k was missing.
func (s *Store) remove(ctx context.Context, k string) (found bool, err error) {
	err = s.call(ctx, k, func() error { return s.c.Delete(k) })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, gm.ErrCacheMiss):
		return false, nil
	}
	return false, fail("delete", k, err)
}

// found is the Result of a key that exists with value v and remaining TTL d.
func found(v uint64, d time.Duration) backend.Result {
	return backend.Result{Found: true, Value: clampValue(v), TTL: d}
}

// readResult is the Result for a key read as it (nil: missing) at now.
func readResult(it *gm.Item, now time.Time) (backend.Result, error) {
	if it == nil {
		return backend.Result{}, nil
	}
	d, ok := remaining(it.Flags, now)
	if !ok {
		return backend.Result{}, nil
	}
	v, err := parseValue(it.Value)
	if err != nil {
		return backend.Result{}, fmt.Errorf("%w (key %.40q)", err, it.Key)
	}
	return backend.Result{Found: true, Value: v, TTL: d}, nil
}

// again checks, before attempt n > 0 of a loop, that the caller still waits
// and the loop has not run too long.
func again(ctx context.Context, n int, k string) error {
	if n == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcache: %w", err)
	}
	if n >= maxAttempts {
		return fmt.Errorf("memcache: key %.40q changed under %d attempts in a row; giving up", k, maxAttempts)
	}
	return nil
}

// incrStep increments k by delta and, if k is missing, adds it holding
// delta with ttl, incrementing again if another caller added it first. done
// is true when it added the key, with r its result. Otherwise the increment
// hit, v is the new value, and the caller reads the key's flags (its logical
// expiry) and calls incrSettle.
func (s *Store) incrStep(ctx context.Context, k string, delta uint64, ttl time.Duration) (r backend.Result, v uint64, done bool, err error) {
	for n := 0; ; n++ {
		if err := again(ctx, n, k); err != nil {
			return backend.Result{}, 0, false, err
		}
		v, hit, err := s.incrDecr(ctx, k, delta, true)
		if err != nil {
			return backend.Result{}, 0, false, err
		}
		if hit {
			return backend.Result{}, v, false, nil
		}
		x, err := newExpiry(time.Now(), ttl)
		if err != nil {
			return backend.Result{}, 0, false, err
		}
		ok, _, err := s.store(ctx, "add", &gm.Item{Key: k, Value: formatValue(delta), Flags: x.flags, Expiration: x.exptime})
		if err != nil {
			return backend.Result{}, 0, false, err
		}
		if ok {
			return found(delta, x.ttlOf(time.Now())), 0, true, nil
		}
		// Added meanwhile by another caller: increment that.
	}
}

// incrSettle completes an increment of k that hit with new value v, given
// the item read after it (nil: missing).
//
// A live item gives the result's TTL. An item whose logical expiry has
// passed (memcached keeps it a few seconds longer) means the increment went
// to a dead counter: the item is replaced, by compare-and-swap, with a fresh
// counter holding delta; if it changed meanwhile, the increment starts over.
// A missing item means the key was deleted or expired after the increment,
// which also starts over.
func (s *Store) incrSettle(ctx context.Context, k string, delta uint64, ttl time.Duration, v uint64, it *gm.Item) (backend.Result, error) {
	for n := 0; ; n++ {
		if err := again(ctx, n, k); err != nil {
			return backend.Result{}, err
		}
		if it != nil {
			now := time.Now()
			if d, ok := remaining(it.Flags, now); ok {
				return found(v, d), nil
			}
			x, err := newExpiry(now, ttl)
			if err != nil {
				return backend.Result{}, err
			}
			ok, _, err := s.store(ctx, "cas", &gm.Item{Key: k, Value: formatValue(delta), Flags: x.flags, Expiration: x.exptime, CasID: it.CasID})
			if err != nil {
				return backend.Result{}, err
			}
			if ok {
				return found(delta, x.ttlOf(time.Now())), nil
			}
		}
		r, v2, done, err := s.incrStep(ctx, k, delta, ttl)
		if err != nil || done {
			return r, err
		}
		v = v2
		if it, err = s.get(ctx, k); err != nil {
			return backend.Result{}, err
		}
	}
}

// decrSettle is the result of a decrement that hit with new value v, given
// the item read after it. A decrement that reached zero removed the key
// (the caller calls dropZero): an increment that came after it found the
// key gone, or re-created it. A missing item was deleted after the
// decrement, which then counts as coming after the delete; a logically
// expired one stays dead, the decrement having changed a counter nobody
// reads.
func decrSettle(v uint64, it *gm.Item) backend.Result {
	if it == nil || v == 0 {
		return backend.Result{}
	}
	d, ok := remaining(it.Flags, time.Now())
	if !ok {
		return backend.Result{}
	}
	return found(v, d)
}

// expire sets the TTL of k, read as it (nil: missing) by a request made
// before this call. It replaces the item's flags and exptime by
// compare-and-swap, reading it again after a conflict, so no concurrent
// increment is lost.
func (s *Store) expire(ctx context.Context, k string, ttl time.Duration, it *gm.Item) (backend.Result, error) {
	for n := 0; ; n++ {
		if err := again(ctx, n, k); err != nil {
			return backend.Result{}, err
		}
		if n > 0 {
			var err error
			if it, err = s.get(ctx, k); err != nil {
				return backend.Result{}, err
			}
		}
		now := time.Now()
		r, err := readResult(it, now)
		if err != nil || !r.Found {
			return backend.Result{}, err
		}
		x, err := newExpiry(now, ttl)
		if err != nil {
			return backend.Result{}, err
		}
		ok, changed, err := s.store(ctx, "cas", &gm.Item{Key: k, Value: it.Value, Flags: x.flags, Expiration: x.exptime, CasID: it.CasID})
		switch {
		case err != nil:
			return backend.Result{}, err
		case ok:
			r.TTL = x.ttlOf(time.Now())
			return r, nil
		case !changed:
			return backend.Result{}, nil // Gone.
		}
	}
}

// del deletes k, read as it (nil: missing) by a request made before this
// call, which tells whether the deleted item was live or logically expired.
func (s *Store) del(ctx context.Context, k string, it *gm.Item) (backend.Result, error) {
	hit, err := s.remove(ctx, k)
	if err != nil || !hit {
		return backend.Result{}, err
	}
	if it == nil {
		// Created after the read, so live when deleted.
		return backend.Result{Found: true}, nil
	}
	_, live := remaining(it.Flags, time.Now())
	return backend.Result{Found: live}, nil
}

// dropZero removes k after a decrement of it answered zero, given the item
// read (by gets, which carries the cas token) after that decrement (nil:
// missing). memcached has no conditional delete in its classic protocol,
// so the item, if it still holds zero, is replaced by compare-and-swap
// with one whose exptime is negative, which memcached stores already
// expired: the key is gone. An increment that reached the key since the
// read changed its cas token, and the swap then fails and removes nothing:
// the key holds that increment. A swap that fails while the key still
// holds zero (an Expire rewrote it meanwhile) is tried again on a fresh
// read. A full server (-M) refuses the swap, which needs a new item: the
// decrement stands, the key is left holding zero until it expires, and
// the error wraps backend.ErrFull.
//
// The cost: one cas, only for a decrement that reaches zero (a refused
// attempt giving back its reservation), plus a gets and a cas for each
// round lost to a concurrent Expire.
func (s *Store) dropZero(ctx context.Context, k string, it *gm.Item) error {
	for n := 0; ; n++ {
		if err := again(ctx, n, k); err != nil {
			return err
		}
		if n > 0 {
			var err error
			if it, err = s.get(ctx, k); err != nil {
				return err
			}
		}
		if !holdsZero(it) {
			return nil
		}
		ok, changed, err := s.store(ctx, "cas", &gm.Item{Key: k, Value: it.Value, Flags: it.Flags, Expiration: -1, CasID: it.CasID})
		if err != nil || ok || !changed {
			return err // Removed, gone already, or refused.
		}
	}
}

// holdsZero reports whether it (nil: missing) is a counter holding zero.
func holdsZero(it *gm.Item) bool {
	if it == nil {
		return false
	}
	v, err := parseValue(it.Value)
	return err == nil && v == 0
}
