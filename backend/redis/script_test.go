package redis_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
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
		"guarded":          newStore(t, client, &redisstore.Options{GuardGiveBacks: true, Prefix: "g:"}),
	}
	type entry struct {
		value int64
		ttl   time.Duration // backend.NoExpiry or the TTL last set
	}
	keys := []string{"a", "b", "{t}a", "{t}b", "c{t}"}
	deltas := []int64{1, 1, 2, 1 << 53, -1, -1, -3, 0}
	ttls := []time.Duration{time.Hour, time.Hour, 2 * time.Hour, backend.NoExpiry}
	next := rand.New(rand.NewPCG(7, 0)).IntN // a fixed sequence
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

// TestTrailingReads checks the reads that end a script call, which the
// store reads with one EXISTS when the call writes none of their keys (the
// shape of every admitted decision: increments, then lock markers), and
// which the script then leaves out of its reply when none exists.
func TestTrailingReads(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	admins := []*goredis.Client{client}
	incr := func(k string) backend.Op { return backend.IncrOp(k, 1, time.Hour) }
	many := func(writes, reads []string) []backend.Op {
		var ops []backend.Op
		for _, k := range writes {
			ops = append(ops, incr(k))
		}
		for _, k := range reads {
			ops = append(ops, backend.ExistsOp(k))
		}
		return ops
	}
	keys := func(prefix string, n int) []string {
		var ks []string
		for i := range n {
			ks = append(ks, fmt.Sprintf("%s%d", prefix, i))
		}
		return ks
	}
	for _, tc := range []struct {
		name string
		// exist are the keys set (to 7, for an hour) before the batch.
		exist []string
		ops   []backend.Op
		// want: each operation's value, or -1 for a key not found.
		want []int64
		// gets: the GETs the batch costs on the server; exists: its EXISTS.
		gets, exists int64
	}{
		{"decision, no lock", nil,
			[]backend.Op{incr("a"), incr("b"), backend.ExistsOp("la"), backend.ExistsOp("lb")},
			[]int64{1, 1, -1, -1}, 0, 1},
		{"decision, one lock", []string{"lb"},
			[]backend.Op{incr("a"), incr("b"), backend.ExistsOp("la"), backend.ExistsOp("lb")},
			[]int64{1, 1, -1, 7}, 2, 1},
		{"reads only", []string{"r2"},
			[]backend.Op{backend.ExistsOp("r1"), backend.ExistsOp("r2"), backend.ExistsOp("r3")},
			[]int64{-1, 7, -1}, 3, 1},
		{"one read, an empty reply", nil,
			[]backend.Op{backend.ExistsOp("r1")},
			[]int64{-1}, 0, 1},
		{"a read of a counter the call writes", nil,
			[]backend.Op{incr("a"), incr("b"), backend.ExistsOp("la"), backend.ExistsOp("a")},
			[]int64{1, 1, -1, 1}, 2, 0},
		{"a read of a counter a read only", []string{"a"},
			[]backend.Op{backend.ExistsOp("b"), incr("c"), backend.ExistsOp("b"), backend.IncrOp("a", 0, time.Hour)},
			[]int64{-1, 1, -1, 7}, 3, 1},
		{"a read before a write", nil,
			[]backend.Op{backend.ExistsOp("la"), incr("a"), backend.ExistsOp("lb")},
			[]int64{-1, 1, -1}, 1, 1},
		{"many keys, apart", []string{"r5"},
			many(keys("w", 10), keys("r", 10)),
			[]int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, 7, -1, -1, -1, -1}, 10, 1},
		{"many keys, one written", nil,
			many(keys("w", 10), append(keys("r", 9), "w3")),
			[]int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1}, 10, 0},
	} {
		for _, guarded := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/guarded=%v", tc.name, guarded), func(t *testing.T) {
				if err := client.FlushAll(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				s := newStore(t, client, &redisstore.Options{GuardGiveBacks: guarded})
				for _, k := range tc.exist {
					if err := client.Set(t.Context(), k, 7, time.Hour).Err(); err != nil {
						t.Fatal(err)
					}
				}
				before := commandCalls(t, admins)
				got := do(t, s, tc.ops...)
				after := commandCalls(t, admins)
				for i, r := range got {
					want := tc.want[i]
					ok := r.Found == (want >= 0) && (want < 0 || r.Value == want && r.TTL > 59*time.Minute && r.TTL <= time.Hour)
					if guarded && r.Found && (r.Expires <= time.Now().UnixNano() || r.Expires > time.Now().Add(time.Hour+time.Minute).UnixNano()) {
						ok = false
					}
					if !ok {
						t.Errorf("op %d (%v): %+v, want value %d (-1: not found), TTL about an hour", i, tc.ops[i], r, want)
					}
				}
				desc, _ := describeCalls(before, after)
				if d := after["get"] - before["get"]; d != tc.gets {
					t.Errorf("%d GET, want %d: %s", d, tc.gets, desc)
				}
				if d := after["exists"] - before["exists"]; d != tc.exists {
					t.Errorf("%d EXISTS, want %d: %s", d, tc.exists, desc)
				}
				if strings.Contains(desc, "evalsha") && after["evalsha"]-before["evalsha"] != 1 {
					t.Errorf("want one script call: %s", desc)
				}
			})
		}
	}
}

// TestTrailingReadsModel compares random batches, a run of operations of
// every kind and then a run of reads (the shape the store marks a when the
// run writes none of the reads' keys), with the memory store's results,
// on every way the store groups calls: one server, a prefix, guarded
// give-backs, one key per call, a Cluster and a Ring. Long batches are
// split between calls; the scripts are flushed now and then, so that
// calls are replayed by EVAL (NOSCRIPT).
func TestTrailingReadsModel(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	stores := map[string]*redisstore.Store{
		"plain":                     newStore(t, client, nil),
		"prefix":                    newStore(t, client, &redisstore.Options{Prefix: "p:"}),
		"guarded":                   newStore(t, client, &redisstore.Options{GuardGiveBacks: true, Prefix: "g:"}),
		"one key per call":          newStore(t, client, &redisstore.Options{OneKeyPerCall: true, Prefix: "k:"}),
		"one key per call, guarded": newStore(t, client, &redisstore.Options{OneKeyPerCall: true, GuardGiveBacks: true, Prefix: "kg:"}),
	}
	cl := testserver.RedisCluster(t)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs})
	t.Cleanup(func() { cc.Close() })
	stores["cluster"] = newStore(t, cc, &redisstore.Options{GuardGiveBacks: true, Prefix: "c:"})
	srv2 := testserver.Redis(t)
	client2 := newClient(t, srv2.Addr, nil)
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": srv.Addr, "b": srv2.Addr}})
	t.Cleanup(func() { ring.Close() })
	stores["ring"] = newStore(t, ring, &redisstore.Options{Prefix: "r:"})
	next := rand.New(rand.NewPCG(11, 0)).IntN // a fixed sequence
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			ref, err := memory.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			for batch := range 300 {
				ntags := 1 + next(60)
				nkeys := 1 + next(4)
				key := func() string { return fmt.Sprintf("%s/{t%d}k%d", name, next(ntags), next(nkeys)) }
				nw, nr := next(150), next(150)
				if next(4) == 0 {
					nw, nr = next(5), next(5)
				}
				var ops []backend.Op
				for range nw {
					k := key()
					switch next(7) {
					case 0, 1, 2:
						ops = append(ops, backend.IncrOp(k, 1, time.Hour))
					case 3:
						ops = append(ops, backend.IncrOp(k, -1, time.Hour))
					case 4:
						ops = append(ops, backend.ExpireOp(k, 2*time.Hour))
					case 5:
						ops = append(ops, backend.DeleteOp(k))
					default:
						ops = append(ops, backend.ExistsOp(k))
					}
				}
				for range nr {
					if next(3) == 0 {
						ops = append(ops, backend.IncrOp(key(), 0, time.Hour))
					} else {
						ops = append(ops, backend.ExistsOp(key()))
					}
				}
				if len(ops) == 0 {
					continue
				}
				if batch%50 == 0 {
					for _, c := range []*goredis.Client{client, client2} {
						if err := c.ScriptFlush(t.Context()).Err(); err != nil {
							t.Fatal(err)
						}
					}
				}
				got := do(t, s, ops...)
				want := do(t, ref, ops...)
				for i := range ops {
					g, w := got[i], want[i]
					ok := g.Found == w.Found && g.Value == w.Value
					if w.Found && ops[i].Kind != backend.Delete {
						d := g.TTL - w.TTL
						ok = ok && d < time.Second && d > -time.Second
					}
					if !ok {
						t.Fatalf("batch %d (%d ops), op %d %v: got %+v, want %+v", batch, len(ops), i, ops[i], g, w)
					}
				}
			}
		})
	}
}

// TestScriptRefusesMisplacedApartReads sends the script a read marked a
// before another operation, which the store never does: the script takes
// the first a as the start of the reads that end the call, and would
// skip every operation after it when the reads find nothing (the
// increment of a counter, here). It must refuse the call instead.
func TestScriptRefusesMisplacedApartReads(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	for _, tc := range []struct {
		kinds string
		keys  []string
		args  []any
		ok    bool
	}{
		{"ia", []string{"c", "l"}, []any{1, 3600000}, true},
		{"ia+", []string{"c", "l"}, []any{1, 3600000}, true},
		{"ai", []string{"l", "c"}, []any{1, 3600000}, false},
		{"aia", []string{"l", "c", "m"}, []any{1, 3600000}, false},
		{"aga", []string{"l", "m", "n"}, nil, false},
		{"ai+", []string{"l", "c"}, []any{1, 3600000}, false},
	} {
		err := client.Eval(t.Context(), redisstore.OpScript, tc.keys, append([]any{tc.kinds}, tc.args...)...).Err()
		if ok := err == nil; ok != tc.ok {
			t.Errorf("kinds %q: error %v, want an error %v", tc.kinds, err, !tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "marked a before another operation") {
			t.Errorf("kinds %q: error %v, want the script's refusal", tc.kinds, err)
		}
	}
}
