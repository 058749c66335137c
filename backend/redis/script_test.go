package redis_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestScriptModel applies random batches of every kind of operation, with
// runs of operations that share their arguments (which the store sends
// once), to the store and to a model of the contract, and compares the
// results.
func TestScriptModel(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	stores := map[string]*redisstore.Store{
		"one call":         newStore(t, client, nil),
		"one key per call": newStore(t, client, &redisstore.Options{OneKeyPerCall: true, Prefix: "k:"}),
	}
	type entry struct {
		value int64
		ttl   time.Duration // backend.NoExpiry or the TTL last set
	}
	keys := []string{"a", "b", "{t}a", "{t}b", "c{t}"}
	deltas := []int64{1, 1, 2, 1 << 53, -1, -1, -3, 0}
	ttls := []time.Duration{time.Hour, time.Hour, 2 * time.Hour, backend.NoExpiry}
	seed := uint64(7)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			model := map[string]entry{}
			prefix := name // keys of their own for each store
			for batch := range 40 {
				ops := make([]backend.Op, 1+next(20))
				for i := range ops {
					k := prefix + "/" + keys[next(len(keys))]
					switch next(6) {
					case 0, 1:
						ops[i] = backend.IncrOp(k, deltas[next(len(deltas))], ttls[next(len(ttls))])
					case 2:
						ops[i] = backend.ExistsOp(k)
					case 3:
						ops[i] = backend.ExpireOp(k, ttls[next(len(ttls))])
					case 4:
						ops[i] = backend.DeleteOp(k)
					default:
						ops[i] = backend.IncrOp(k, 1, time.Hour) // a run of shared arguments
					}
					if ops[i].Kind == backend.Incr && next(3) == 0 {
						ops[i].SkipTTL = true
					}
				}
				got := do(t, s, ops...)
				for i, op := range ops {
					e, found := model[op.Key]
					var want backend.Result
					switch op.Kind {
					case backend.Incr:
						switch {
						case op.Delta > 0 && !found:
							e, found = entry{op.Delta, op.TTL}, true
						case found:
							e.value = max(e.value+op.Delta, 0)
							if op.Delta < 0 && e.value == 0 {
								// A decrement to zero removes the key.
								delete(model, op.Key)
								found = false
							}
						}
					case backend.Expire:
						if found {
							e.ttl = op.TTL
						}
					case backend.Delete:
						want.Found = found
						delete(model, op.Key)
						found = false
					}
					if op.Kind != backend.Delete {
						if found {
							model[op.Key] = e
							want = backend.Result{Value: e.value, Found: true, TTL: e.ttl}
						}
					}
					r := got[i]
					ok := r.Value == want.Value && r.Found == want.Found
					switch {
					case op.SkipTTL && op.Delta > 0 && r.TTL == 0 && found && e.value != op.Delta:
						// The TTL of a key that existed was not asked for.
					case want.TTL == backend.NoExpiry || want.TTL == 0:
						ok = ok && r.TTL == want.TTL
					default:
						ok = ok && r.TTL <= want.TTL && r.TTL > want.TTL-time.Minute
					}
					if !ok {
						t.Fatalf("batch %d, op %d (%s %q delta %d ttl %v): got %+v, want %+v\nbatch: %v",
							batch, i, op.Kind, op.Key, op.Delta, op.TTL, r, want, fmt.Sprint(ops))
					}
				}
			}
		})
	}
}

// TestLongTagBatch reads, in one batch, more keys of one hash tag than Lua
// can unpack into the arguments of one EXISTS (about 8,000): the operations
// of one hash tag share a script call whatever their number, and the
// script read them all with EXISTS(unpack(reads)), so the batch failed with
// "too many results to unpack".
func TestLongTagBatch(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	const n = 10_000
	key := func(i int) string { return fmt.Sprintf("{t}/%d", i) }
	// Only the last key exists: the reads before it find nothing.
	do(t, s, backend.IncrOp(key(n-1), 5, time.Hour))
	ops := make([]backend.Op, n)
	for i := range ops {
		ops[i] = backend.ExistsOp(key(i))
	}
	for i, r := range do(t, s, ops...) {
		if want := i == n-1; r.Found != want || want && r.Value != 5 {
			t.Fatalf("exists %s: %+v, want found %v", key(i), r, want)
		}
	}
	// And with none of them existing.
	do(t, s, backend.DeleteOp(key(n-1)))
	for i, r := range do(t, s, ops...) {
		if r.Found {
			t.Fatalf("exists %s: %+v, want not found", key(i), r)
		}
	}
}
