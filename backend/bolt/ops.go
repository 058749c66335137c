package bolt

import (
	"fmt"
	"math"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
)

// txn applies operations within one bbolt transaction.
type txn struct {
	entries *bbolt.Bucket
	expiry  *bbolt.Bucket
	now     int64 // Unix nanoseconds, read once per transaction
	// writable is false for a dry run in a read transaction: apply then
	// stops at the first operation that would change the store.
	writable bool
	kbuf     []byte
}

// buckets returns the store's buckets in tx.
func (s *Store) buckets(tx *bbolt.Tx) (entries, expiry *bbolt.Bucket, err error) {
	top := tx.Bucket(s.bucket)
	if top == nil {
		return nil, nil, fmt.Errorf("lockout/bolt: bucket %q is missing", s.bucket)
	}
	entries, expiry = top.Bucket(entriesBucket), top.Bucket(expiryBucket)
	if entries == nil || expiry == nil {
		return nil, nil, fmt.Errorf("lockout/bolt: bucket %q lacks its sub-buckets", s.bucket)
	}
	return entries, expiry, nil
}

// apply applies ops, writing their outcomes to res. In a dry run it returns
// needWrite at the first operation that would change the store, leaving
// the rest of res undefined.
func (t *txn) apply(ops []backend.Op, res []backend.Result) (needWrite bool, err error) {
	for i := range ops {
		w, err := t.apply1(&ops[i], &res[i])
		if err != nil {
			return false, fmt.Errorf("op %d (%s): %w", i, ops[i].Kind, err)
		}
		if w {
			return true, nil
		}
	}
	return false, nil
}

// lookup returns the stored key of key (in t.kbuf: copy it before a Put)
// and its entry, if present (live or not).
func (t *txn) lookup(key string) (sk []byte, e entry, present bool, err error) {
	t.kbuf = storedKey(t.kbuf[:0], key)
	sk = t.kbuf
	v := t.entries.Get(sk)
	if v == nil {
		return sk, entry{}, false, nil
	}
	e, err = decodeEntry(sk, v, key)
	return sk, e, err == nil, err
}

// apply1 applies op. In a dry run, it returns true instead of writing.
func (t *txn) apply1(op *backend.Op, r *backend.Result) (needWrite bool, err error) {
	sk, e, present, err := t.lookup(op.Key)
	if err != nil {
		return false, err
	}
	live := present && e.live(t.now)
	*r = backend.Result{}
	switch op.Kind {
	case backend.Exists:
		if live {
			*r = e.result(t.now)
		}

	case backend.Incr:
		switch {
		case live && op.Delta < 0 && op.IfExpiresBefore != 0 && (e.exp == 0 || e.exp >= op.IfExpiresBefore):
			// A conditional decrement of a key that expires too late
			// (backend.ExpiryGuard): left as it is.
			*r = e.result(t.now)
		case live && op.Delta < 0 && addFloor(e.val, op.Delta) == 0:
			// A decrement that reaches zero removes the key, in this
			// transaction (so no other call sees the zero).
			if !t.writable {
				return true, nil
			}
			return false, t.remove(sk, e.exp)
		case live:
			v := addFloor(e.val, op.Delta)
			*r = entry{exp: e.exp, val: v}.result(t.now)
			if v == e.val {
				return false, nil
			}
			if !t.writable {
				return true, nil
			}
			return false, t.put(sk, op.Key, entry{exp: e.exp, val: v}, e.exp)
		case op.Delta <= 0:
			// Never creates a key; an expired one is left to the sweeper.
		default:
			if !t.writable {
				return true, nil
			}
			n := entry{exp: expiryAt(t.now, op.TTL), val: op.Delta}
			old := int64(0)
			if present {
				old = e.exp
			}
			*r = n.result(t.now)
			return false, t.put(sk, op.Key, n, old)
		}

	case backend.Expire:
		if !live {
			return false, nil
		}
		n := entry{exp: expiryAt(t.now, op.TTL), val: e.val}
		*r = n.result(t.now)
		if n.exp == e.exp {
			return false, nil
		}
		if !t.writable {
			return true, nil
		}
		return false, t.put(sk, op.Key, n, e.exp)

	case backend.Delete:
		r.Found = live
		if !present || (!live && !t.writable) {
			return false, nil
		}
		if !t.writable {
			return true, nil
		}
		// An expired entry still on disk goes too: a write is under way.
		return false, t.remove(sk, e.exp)

	default:
		return false, fmt.Errorf("%w: unknown operation %s", backend.ErrInvalid, op.Kind)
	}
	return false, nil
}

// put stores e under sk and moves its expiry index entry from oldExp.
func (t *txn) put(sk []byte, key string, e entry, oldExp int64) error {
	if oldExp != 0 && oldExp != e.exp {
		if err := t.expiry.Delete(indexKey(oldExp, sk)); err != nil {
			return err
		}
	}
	k := append([]byte(nil), sk...) // bbolt keeps it until the commit
	if err := t.entries.Put(k, encodeEntry(sk, key, e)); err != nil {
		return err
	}
	if e.exp != 0 && e.exp != oldExp {
		return t.expiry.Put(indexKey(e.exp, sk), nil)
	}
	return nil
}

// remove deletes the entry under sk and its expiry index entry.
func (t *txn) remove(sk []byte, exp int64) error {
	if exp != 0 {
		if err := t.expiry.Delete(indexKey(exp, sk)); err != nil {
			return err
		}
	}
	return t.entries.Delete(sk)
}

// addFloor returns v+delta, saturated at math.MaxInt64 and floored at zero
// for a negative delta.
func addFloor(v, delta int64) int64 {
	switch {
	case delta > 0 && v > math.MaxInt64-delta:
		return math.MaxInt64
	case delta < 0 && v+delta < 0:
		return 0
	}
	return v + delta
}
