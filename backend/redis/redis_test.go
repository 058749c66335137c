package redis_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// lateSlack is how much longer than its deadline a call may take before a
// test calls it late: scheduling delays on a busy 2-core machine under -race.
// The clients' ReadTimeouts in those tests are well above deadline+lateSlack.
const lateSlack = 300 * time.Millisecond

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the fault tests provoke many.
	goredis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// newClient returns a go-redis client for addr with go-redis's defaults
// (MaxRetries 3, no ContextTimeoutEnabled) unless edit changes them, closed
// when the test ends.
func newClient(t testing.TB, addr string, edit func(*goredis.Options)) *goredis.Client {
	t.Helper()
	o := &goredis.Options{Addr: addr}
	if edit != nil {
		edit(o)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func newStore(t testing.TB, c goredis.UniversalClient, opts *redisstore.Options) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, c, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t testing.TB, s backend.Backend, ops ...backend.Op) []backend.Result {
	t.Helper()
	res := make([]backend.Result, len(ops))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Do(ctx, ops, res); err != nil {
		t.Fatalf("Do: %v", err)
	}
	return res
}

// The journal settings of the stores the conformance suite gets: a short
// retention, so that its retention check sleeps little, and a small cap.
// Records disappear from Records as soon as they are past the retention
// (by the server's clock, which is the tests' clock): JournalSweep is 0.
const (
	journalRetention = 2 * time.Second
	journalMax       = 200
)

// journalOptions are the options of the stores the conformance suite
// checks: short journal bounds, and give-backs guarded (the test servers
// run Redis 7).
func journalOptions() *redisstore.Options {
	return &redisstore.Options{JournalRetention: journalRetention, JournalMax: journalMax, GuardGiveBacks: true}
}

// harness describes, to the conformance suite, the stores newStore makes
// with journalOptions on a fresh server (standalone, Sentinel or Cluster):
// one script call per slot (per batch on a plain client), so the
// operations of one tag are atomic.
func harness(fresh func(t testing.TB) backend.Backend) conformance.Harness {
	return conformance.Harness{
		New:                fresh,
		Granularity:        redisstore.Granularity,
		Lister:             true,
		ExpiryGuard:        true, // the test servers run Redis 7 (PEXPIRETIME)
		AtomicTags:         true,
		Journal:            true,
		JournalRetention:   journalRetention,
		JournalMax:         journalMax,
		JournalRecordBytes: redisstore.DefaultJournalRecordBytes,
	}
}

// TestConformance and TestCluster run in parallel with each other, after the
// other tests of the package: they take most of its time, mostly sleeping
// while keys expire, and each has servers of its own.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	conformance.Run(t, harness(func(t testing.TB) backend.Backend {
		testserver.FlushRedis(t, srv.Addr)
		return newStore(t, client, journalOptions())
	}))
}

// TestCluster runs the cluster checks on one 3-master Redis Cluster, in
// parallel with TestConformance.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := testserver.RedisCluster(t)
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs})
	t.Cleanup(func() { client.Close() })
	var masters []*goredis.Client
	for _, a := range cl.Addrs {
		masters = append(masters, newClient(t, a, nil))
	}
	fresh := func(t testing.TB) *redisstore.Store {
		testserver.FlushRedis(t, cl.Addrs...)
		return newStore(t, client, journalOptions())
	}

	t.Run("Conformance", func(t *testing.T) {
		conformance.Run(t, harness(func(t testing.TB) backend.Backend { return fresh(t) }))
	})

	// The hostile keys land on every master, so the conformance checks
	// exercise them all.
	t.Run("KeysSpread", func(t *testing.T) {
		s := fresh(t)
		keys := conformance.HostileKeys()
		ops := make([]backend.Op, len(keys))
		for i, k := range keys {
			ops[i] = backend.IncrOp(k, 1, time.Minute)
		}
		do(t, s, ops...)
		for _, m := range masters {
			n, err := m.DBSize(t.Context()).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("master %s holds none of the %d keys", m.Options().Addr, len(keys))
			}
		}
	})

	t.Run("ScriptReload", func(t *testing.T) {
		checkReload(t, fresh(t), masters)
	})

	// The store groups operations by the slot it computes; Redis must agree.
	t.Run("KeySlot", func(t *testing.T) {
		keys := append(conformance.HostileKeys(),
			"a{b}c", "{}x", "x{}{y}", "{{a}}", "{a}{b}", "a{", "a}b{c", "{\x00}", "\xff{\xfe}")
		for i := range 200 {
			keys = append(keys, fmt.Sprintf("lockout:{user:%d}:fail", i))
		}
		for _, k := range keys {
			want, err := client.ClusterKeySlot(t.Context(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := redisstore.KeySlot(k); int64(got) != want {
				t.Errorf("slot of %q = %d, Redis says %d", k, got, want)
			}
		}
	})

	// A master stops: calls end on time; it comes back empty, without the
	// script, and the same store and client work again.
	t.Run("NodeRestart", func(t *testing.T) {
		cl.RequireControl(t)
		s := fresh(t)
		var ops []backend.Op
		for i := range 30 {
			ops = append(ops, backend.IncrOp(fmt.Sprintf("restart/%d", i), 1, time.Minute))
		}
		do(t, s, ops...)
		cl.Nodes[0].Stop()
		const deadline = 200 * time.Millisecond
		// A call that ignores its deadline is late every time; a busy
		// machine (CI runs packages in parallel) may make one call late.
		var late []string
		for range 5 {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			err := s.Do(ctx, ops, make([]backend.Result, len(ops)))
			took := time.Since(start)
			cancel()
			if err == nil {
				t.Error("a batch touching a stopped master succeeded")
			}
			if took > deadline+lateSlack {
				late = append(late, fmt.Sprintf("%v (%v)", took, err))
			}
		}
		if len(late) > 1 {
			t.Errorf("%d of 5 batches touching a stopped master took longer than the deadline (%v) and %v: %v", len(late), deadline, lateSlack, late)
		} else if len(late) == 1 {
			t.Logf("one of 5 batches touching a stopped master was late: %v", late[0])
		}
		cl.Nodes[0].Start()
		// The cluster is healthy again; the client may need a moment to
		// notice.
		reads := make([]backend.Op, len(ops))
		for i, op := range ops {
			reads[i] = backend.ExistsOp(op.Key)
		}
		rs := make([]backend.Result, len(ops))
		var err error
		for try := 0; try < 50; try++ {
			if err = s.Do(t.Context(), reads, rs); err == nil {
				t.Logf("calls work again after %d failed tries", try)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after the master came back: %v", err)
		}
		lost := 0
		for _, r := range rs {
			if !r.Found {
				lost++ // on the restarted master
			}
		}
		if lost == 0 || lost == len(ops) {
			t.Errorf("%d of %d counters gone, want those of the restarted master only", lost, len(ops))
		}
		for i, r := range do(t, s, ops...) {
			if r.Value != rs[i].Value+1 {
				t.Errorf("incr of %s after the restart: %+v, want value %d", ops[i].Key, r, rs[i].Value+1)
			}
		}
	})

	// The round trips and commands of each step of a decision, with three
	// rules, on a client of its own whose nodes count round trips.
	t.Run("PolicyRoundTrips", func(t *testing.T) {
		testserver.FlushRedis(t, cl.Addrs...)
		trips := newTripCounter()
		client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs})
		client.OnNewNode(func(node *goredis.Client) { node.AddHook(trips.hook(node.Options().Addr)) })
		client.AddHook(trips.hook(""))
		t.Cleanup(func() { client.Close() })
		checkRoundTrips(t, newStore(t, client, nil), trips, masters)
	})

	// Many operations on one slot, more than one script call takes,
	// interleaved with operations on other slots.
	t.Run("SameSlotBatch", func(t *testing.T) {
		s := fresh(t)
		var ops []backend.Op
		for i := range 300 {
			ops = append(ops,
				backend.IncrOp(fmt.Sprintf("{same}/%d", i%50), 1, time.Minute),
				backend.IncrOp(fmt.Sprintf("other/%d", i%50), 1, time.Minute))
		}
		for i, r := range do(t, s, ops...) {
			if want := int64(i/100 + 1); r.Value != want {
				t.Fatalf("op %d (%s): value %d, want %d", i, ops[i].Key, r.Value, want)
			}
		}
	})

	// While a slot migrates (CLUSTER SETSLOT MIGRATING/IMPORTING, as
	// redis-cli --cluster reshard does it), Redis refuses a script call with
	// several keys of the slot unless all of them exist on the node asked
	// (TRYAGAIN), and a decision always names a lock marker that does not
	// exist. The call fails, nothing of it is applied, and a one-key call
	// still works.
	t.Run("Migrating", func(t *testing.T) {
		s := fresh(t)
		ctx := t.Context()
		counter, marker := "lockout:a:r:{u=alice}:n", "lockout:a:r:{u=alice}:lock"
		do(t, s, backend.IncrOp(counter, 1, time.Minute))
		slot := redisstore.KeySlot(counter)
		var src, dst *goredis.Client
		var srcID, dstID string
		for _, m := range masters {
			id, err := m.Do(ctx, "cluster", "myid").Text()
			if err != nil {
				t.Fatal(err)
			}
			switch n, err := m.ClusterCountKeysInSlot(ctx, slot).Result(); {
			case err != nil:
				t.Fatal(err)
			case n > 0:
				src, srcID = m, id
			case dst == nil:
				dst, dstID = m, id
			}
		}
		if err := dst.Do(ctx, "cluster", "setslot", slot, "importing", srcID).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, m := range []*goredis.Client{src, dst} {
				if err := m.Do(context.Background(), "cluster", "setslot", slot, "stable").Err(); err != nil {
					t.Errorf("SETSLOT STABLE: %v", err)
				}
			}
		})
		if err := src.Do(ctx, "cluster", "setslot", slot, "migrating", dstID).Err(); err != nil {
			t.Fatal(err)
		}
		decision := []backend.Op{backend.IncrOp(counter, 1, time.Minute), backend.ExistsOp(marker)}
		err := s.Do(ctx, decision, make([]backend.Result, 2))
		if err == nil || !strings.Contains(err.Error(), "TRYAGAIN") {
			t.Fatalf("a decision on a migrating slot: %v, want TRYAGAIN", err)
		}
		if r := do(t, s, backend.IncrOp(counter, 1, time.Minute))[0]; r.Value != 2 {
			t.Errorf("one-key incr on a migrating slot: %+v, want value 2 (the refused call applied nothing)", r)
		}
	})
}

func TestPrefix(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	ctx := t.Context()
	if err := client.Set(ctx, "foreign", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, "lo:*", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, client, &redisstore.Options{Prefix: "lo:*", ScanCount: 2})
	var ops []backend.Op
	for i := range 10 {
		ops = append(ops, backend.IncrOp(fmt.Sprintf("k%d", i), 1, time.Minute))
	}
	do(t, s, ops...)
	if v, err := client.Get(ctx, "lo:*k3").Int(); err != nil || v != 1 {
		t.Errorf(`GET "lo:*k3" = %d, %v; want 1 (the prefix is prepended)`, v, err)
	}
	var got []string
	for k, err := range s.Keys(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	if len(got) != 10 {
		t.Errorf("Keys = %q, want k0..k9 only (no foreign keys, no prefix)", got)
	}
	for _, k := range got {
		if !strings.HasPrefix(k, "k") {
			t.Errorf("Keys yields %q", k)
		}
	}
	// The store's own "" key is lo:* itself, a foreign string "1": Exists
	// reads it like any counter.
	if r := do(t, s, backend.ExistsOp("k9"))[0]; !r.Found || r.Value != 1 {
		t.Errorf("exists k9 = %+v", r)
	}
}

// TestCloseKeepsClient checks that Close does not close the caller's client.
func TestCloseKeepsClient(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Errorf("client after store Close: %v", err)
	}
	if _, err := backend.Do1(t.Context(), s, backend.ExistsOp("k")); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestScriptReload(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	admin := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	checkReload(t, s, []*goredis.Client{admin})

	// A restart loses the data and the script; the same client and store
	// work again, and the first call already does.
	srv.Stop()
	srv.Start()
	rs := do(t, s, backend.IncrOp("a", 1, time.Minute), backend.IncrOp("b", 2, time.Minute))
	if rs[0].Value != 1 || rs[1].Value != 2 {
		t.Fatalf("after restart: %+v, want fresh counters", rs)
	}
	checkReload(t, s, []*goredis.Client{admin})
}

// checkReload flushes the script cache of every node, then checks that a
// batch over many keys (all nodes) works and that the script is cached
// again everywhere.
func checkReload(t *testing.T, s backend.Backend, nodes []*goredis.Client) {
	t.Helper()
	ctx := t.Context()
	const n = 60
	var ops []backend.Op
	for i := range n {
		ops = append(ops, backend.IncrOp(fmt.Sprintf("reload/%d", i), 1, time.Minute))
	}
	before := do(t, s, ops...)
	for _, c := range nodes {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// One batch of every kind of operation on every key, in order.
	var batch []backend.Op
	for i := range n {
		k := fmt.Sprintf("reload/%d", i)
		batch = append(batch,
			backend.IncrOp(k, 2, time.Minute),
			backend.DeleteOp(k),
			backend.IncrOp(k, 5, time.Minute),
			backend.IncrOp(k, -1, time.Minute),
			backend.ExpireOp(k, backend.NoExpiry),
			backend.ExistsOp(k),
		)
	}
	rs := do(t, s, batch...)
	for i := range n {
		r := rs[6*i : 6*i+6]
		if r[0].Value != before[i].Value+2 || !r[1].Found || r[2].Value != 5 || r[3].Value != 4 ||
			r[4].TTL != backend.NoExpiry || r[5].Value != 4 || r[5].TTL != backend.NoExpiry {
			t.Fatalf("key %d after SCRIPT FLUSH: %+v (ops out of order or lost)", i, r)
		}
	}
	for _, c := range nodes {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, "number_of_cached_scripts:1") {
			t.Errorf("node %s: script not cached again after the batch:\n%s", c.Options().Addr, grepLine(info, "cached_scripts"))
		}
	}
}

func grepLine(text, sub string) string {
	for l := range strings.Lines(text) {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestNoDoubleCount loses the reply of an increment after the server ran
// it. go-redis retries such a command by default (MaxRetries 3), which
// counts the attempt twice; the store's commands are never retried.
func TestNoDoubleCount(t *testing.T) {
	srv := testserver.Redis(t)
	p := newProxy(t, srv.Addr)
	client := newClient(t, p.Addr, nil) // go-redis defaults: MaxRetries 3
	direct := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	ctx := t.Context()

	// The hazard is real: a bare INCR through the proxy counts twice.
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	p.DropReplies(1)
	_ = client.Incr(ctx, "bare").Err()
	if v, _ := direct.Get(ctx, "bare").Int(); v != 2 {
		t.Fatalf("bare go-redis INCR with a lost reply counted %d, want 2: the proxy does not provoke a retry", v)
	}

	tests := []struct {
		name string
		n    int
		s    *redisstore.Store
	}{
		{"one op", 1, s},
		{"one script call", 3, s},
		{"pipeline", 3, newStore(t, client, &redisstore.Options{OneKeyPerCall: true})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ops []backend.Op
			for i := range tc.n {
				ops = append(ops, backend.IncrOp(fmt.Sprintf("%s/%d", tc.name, i), 1, time.Minute))
			}
			do(t, tc.s, ops...) // warm: a pooled connection
			p.DropReplies(1)
			res := make([]backend.Result, tc.n)
			err := tc.s.Do(ctx, ops, res)
			if err == nil {
				t.Fatal("Do with a lost reply succeeded")
			}
			t.Logf("Do with a lost reply: %v", err)
			for _, op := range ops {
				if v, err := direct.Get(ctx, op.Key).Int(); err != nil || v != 2 {
					t.Errorf("%s = %d (%v), want 2: increment applied twice or not at all", op.Key, v, err)
				}
			}
			// And the store goes on working.
			for i, r := range do(t, tc.s, ops...) {
				if r.Value != 3 {
					t.Errorf("op %d after the lost reply: %+v, want 3", i, r)
				}
			}
		})
	}
}

func TestOneKeyPerCall(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	s := newStore(t, client, &redisstore.Options{OneKeyPerCall: true})
	checkReload(t, s, []*goredis.Client{client})
}

// TestDeadlines checks that calls end on time, with the context's error,
// when the server hangs and the client's ReadTimeout is long: with a client
// that has ContextTimeoutEnabled (calls with a deadline run on the caller's
// goroutine and the socket deadline ends them) and with one that has not
// (calls run on a goroutine of their own).
func TestDeadlines(t *testing.T) {
	for _, ctxTimeouts := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			testDeadlines(t, ctxTimeouts)
		})
	}
}

func testDeadlines(t *testing.T, ctxTimeouts bool) {
	srv := testserver.Redis(t)
	p := newProxy(t, srv.Addr)
	client := newClient(t, p.Addr, func(o *goredis.Options) {
		o.ReadTimeout = 2 * time.Second
		o.ContextTimeoutEnabled = ctxTimeouts
	})
	s := newStore(t, client, nil)
	do(t, s, backend.IncrOp("k", 1, time.Minute))
	base := settledGoroutines(t, 0)

	p.Hang(true)
	const deadline = 200 * time.Millisecond
	ops := []backend.Op{backend.IncrOp("k", 1, time.Minute), backend.ExistsOp("j")}
	// Single command and pipeline.
	for _, oneKey := range []bool{false, true} {
		s := s
		if oneKey {
			p.Hang(false)
			s = newStore(t, client, &redisstore.Options{OneKeyPerCall: true})
			p.Hang(true)
		}
		for _, n := range []int{1, 2} {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			err := s.Do(ctx, ops[:n], make([]backend.Result, n))
			took := time.Since(start)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("batch of %d (OneKeyPerCall %v) on a hung server: err = %v, want DeadlineExceeded", n, oneKey, err)
			}
			if took > deadline+lateSlack {
				t.Errorf("batch of %d (OneKeyPerCall %v) on a hung server took %v, deadline %v", n, oneKey, took, deadline)
			}
		}
	}
	// Cancellation without a deadline, which go-redis never applies to a
	// socket: the call runs on a goroutine of its own either way.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := s.Do(ctx, ops, make([]backend.Result, 2))
	if took := time.Since(start); !errors.Is(err, context.Canceled) || took > 100*time.Millisecond+lateSlack {
		t.Errorf("cancelled call on a hung server: %v after %v, want Canceled after about 100ms", err, took)
	}
	// Cancellation before a deadline: at once without ContextTimeoutEnabled,
	// at the deadline with it (as documented).
	ctx, cancel = context.WithTimeout(t.Context(), 2*deadline)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	err = s.Do(ctx, ops, make([]backend.Result, 2))
	took, bound := time.Since(start), 100*time.Millisecond+lateSlack
	if ctxTimeouts {
		bound = 2*deadline + lateSlack
	}
	if !errors.Is(err, context.Canceled) || took > bound {
		t.Errorf("call with a deadline cancelled on a hung server: %v after %v, want Canceled within %v", err, took, bound)
	}
	cancel()
	// Keys too.
	ctx, cancel = context.WithTimeout(t.Context(), deadline)
	start = time.Now()
	yields := 0
	for _, err := range s.Keys(ctx, "") {
		yields++
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Keys on a hung server: %v, want DeadlineExceeded", err)
		}
		break
	}
	if yields != 1 {
		t.Errorf("Keys on a hung server yielded %d times, want its error", yields)
	}
	cancel()
	if took := time.Since(start); took > deadline+lateSlack {
		t.Errorf("Keys on a hung server took %v", took)
	}
	// And New.
	ctx, cancel = context.WithTimeout(t.Context(), deadline)
	start = time.Now()
	if _, err := redisstore.New(ctx, client, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New on a hung server: %v, want DeadlineExceeded", err)
	}
	cancel()
	if took := time.Since(start); took > deadline+lateSlack {
		t.Errorf("New on a hung server took %v", took)
	}

	p.Hang(false)
	// The abandoned calls finish within the client's ReadTimeout.
	settledGoroutines(t, base)
	if r := do(t, s, backend.ExistsOp("k")); !r[0].Found {
		t.Errorf("after the server answers again: %+v", r[0])
	}
}

// settledGoroutines waits until at most want+slack goroutines run (want 0:
// until the count stops changing) and returns the count.
func settledGoroutines(t *testing.T, want int) int {
	t.Helper()
	const slack = 4
	deadline := time.Now().Add(15 * time.Second)
	last := -1
	for {
		runtime.GC()
		n := runtime.NumGoroutine()
		switch {
		case want == 0 && n == last:
			return n
		case want > 0 && n <= want+slack:
			return n
		case time.Now().After(deadline):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d; stacks:\n%s", n, want+slack, buf)
		}
		last = n
		time.Sleep(200 * time.Millisecond)
	}
}

// TestServerRestart stops the server under traffic from many goroutines:
// every call ends within its deadline, with an error while the server is
// down; after the server comes back (empty, without the script), the same
// store and client work again; no goroutine is left behind.
func TestServerRestart(t *testing.T) {
	srv := testserver.Redis(t)
	srv.RequireControl(t)
	client := newClient(t, srv.Addr, func(o *goredis.Options) { o.ReadTimeout = time.Second })
	s := newStore(t, client, nil)
	do(t, s, backend.IncrOp("warm", 1, time.Minute))
	base := settledGoroutines(t, 0)

	const (
		workers  = 16
		deadline = 200 * time.Millisecond
	)
	var (
		stop              atomic.Bool
		ok, failed, late  atomic.Int64
		lastOK            atomic.Int64 // unix nanos of the last success
		wg                sync.WaitGroup
		mu                sync.Mutex
		slowest           time.Duration
		wrongErr, example error
	)
	for g := range workers {
		wg.Go(func() {
			res := make([]backend.Result, 3)
			for i := 0; !stop.Load(); i++ {
				ops := []backend.Op{
					backend.IncrOp(fmt.Sprintf("user/%d", g), 1, time.Minute),
					backend.IncrOp(fmt.Sprintf("ip/%d", i%7), 1, time.Minute),
					backend.ExistsOp(fmt.Sprintf("lock/%d", g)),
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				err := s.Do(ctx, ops, res)
				took := time.Since(start)
				cancel()
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
				if took > deadline+lateSlack {
					late.Add(1)
				}
				if err == nil {
					ok.Add(1)
					lastOK.Store(time.Now().UnixNano())
					continue
				}
				failed.Add(1)
				mu.Lock()
				if example == nil {
					example = err
				}
				if !strings.HasPrefix(err.Error(), "lockout/redis: ") && wrongErr == nil {
					wrongErr = err
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	okBefore := ok.Load()
	srv.Stop()
	time.Sleep(500 * time.Millisecond)
	failedDown := failed.Load()
	srv.Start()
	restarted := time.Now()
	for time.Since(restarted) < 5*time.Second && lastOK.Load() < restarted.Add(200*time.Millisecond).UnixNano() {
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d calls succeeded before the stop, %d failed while down (e.g. %v), %d succeeded in all; slowest call %v",
		okBefore, failedDown, example, ok.Load(), slowest)
	if okBefore == 0 {
		t.Error("no call succeeded before the stop")
	}
	if failedDown == 0 {
		t.Error("no call failed while the server was down")
	}
	if n := late.Load(); n > 0 {
		t.Errorf("%d calls took longer than their deadline %v + %v (slowest %v)", n, deadline, lateSlack, slowest)
	}
	if wrongErr != nil {
		t.Errorf("error not from the store: %v", wrongErr)
	}
	if lastOK.Load() < restarted.UnixNano() {
		t.Fatal("no call succeeded after the server came back")
	}
	rs := do(t, s, backend.ExistsOp("user/0"), backend.IncrOp("fresh", 1, time.Minute))
	if !rs[0].Found || rs[1].Value != 1 {
		t.Errorf("after the restart: %+v", rs)
	}
	settledGoroutines(t, base)
}

func TestFull(t *testing.T) {
	srv := testserver.Redis(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	client := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	ctx := t.Context()
	do(t, s, backend.IncrOp("before", 3, time.Minute))
	// Fill the server with ever smaller values, so that even a small write
	// is refused (a refused big SET only shows that its own argument did not
	// fit). A write may still slip in as memory moves; try a few times.
	var fullErr error
	for try := 0; try < 20 && fullErr == nil; try++ {
		fill(t, client, try)
		_, err := backend.Do1(ctx, s, backend.IncrOp(fmt.Sprintf("new/%d", try), 1, time.Minute))
		switch {
		case err == nil:
			continue
		case !errors.Is(err, backend.ErrFull):
			t.Fatalf("incr on a full server: %v, want ErrFull", err)
		}
		fullErr = err
		t.Logf("incr on a full server: %v", err)
		if r := do(t, s, backend.ExistsOp(fmt.Sprintf("new/%d", try)))[0]; r.Found {
			t.Errorf("the refused increment created its key: %+v", r)
		}
	}
	if fullErr == nil {
		t.Fatal("no increment was refused on a full server")
	}
	if _, err := backend.Do1(ctx, s, backend.IncrOp("before", 1, time.Minute)); !errors.Is(err, backend.ErrFull) {
		t.Errorf("incr of an existing key on a full server: %v, want ErrFull", err)
	}
	// Reads, expiries and deletes still work, and nothing was evicted.
	if r := do(t, s, backend.ExistsOp("before"))[0]; r.Value != 3 {
		t.Errorf("exists on a full server: %+v, want value 3", r)
	}
	if r := do(t, s, backend.ExistsOp("new"))[0]; r.Found {
		t.Errorf("the refused increment created its key: %+v", r)
	}
	if r := do(t, s, backend.ExpireOp("before", time.Hour))[0]; !r.Found || r.Value != 3 {
		t.Errorf("expire on a full server: %+v", r)
	}
	if r := do(t, s, backend.DeleteOp("before"))[0]; !r.Found {
		t.Errorf("delete on a full server: %+v", r)
	}
}

// fill writes values of decreasing size until the server refuses each size.
func fill(t *testing.T, c *goredis.Client, round int) {
	t.Helper()
	ctx := t.Context()
	for _, size := range []int{64 << 10, 4 << 10, 256, 16} {
		v := strings.Repeat("x", size)
		for i := 0; ; i++ {
			err := c.Set(ctx, fmt.Sprintf("filler/%d/%d/%d", round, size, i), v, 0).Err()
			if goredis.IsOOMError(err) {
				break
			}
			if err != nil {
				t.Fatalf("filling: %v", err)
			}
			if i > 1<<16 {
				t.Fatal("the server never filled up")
			}
		}
	}
}

func TestEvictionRefused(t *testing.T) {
	srv := testserver.Redis(t, "--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru")
	client := newClient(t, srv.Addr, nil)
	_, err := redisstore.New(t.Context(), client, nil)
	if err == nil || !strings.Contains(err.Error(), "noeviction") || !errors.Is(err, redisstore.ErrEvicting) {
		t.Errorf("New with maxmemory-policy volatile-lru: %v, want an error naming noeviction, wrapping ErrEvicting", err)
	}
	if _, err := redisstore.New(t.Context(), client, &redisstore.Options{AllowEviction: true}); err != nil {
		t.Errorf("New with AllowEviction: %v", err)
	}
}

// TestEvictionCheckedAgain reconfigures a server that New accepted, so
// that it may evict keys (as CONFIG SET, or a failover to a master with
// other settings, would): the store's next check finds it, and Do fails,
// so that the engine's fallback decides, until the server is set back.
func TestEvictionCheckedAgain(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	const every = 20 * time.Millisecond
	configure := func(policy string) {
		t.Helper()
		for _, kv := range [][2]string{{"maxmemory", "1gb"}, {"maxmemory-policy", policy}} {
			if err := client.ConfigSet(t.Context(), kv[0], kv[1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	incr := []backend.Op{backend.IncrOp("k", 1, time.Hour)}
	// until calls Do until done says its error will do, or for d.
	until := func(s *redisstore.Store, d time.Duration, done func(error) bool) error {
		var err error
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every / 2) {
			if err = s.Do(t.Context(), incr, make([]backend.Result, 1)); done(err) {
				break
			}
		}
		return err
	}
	for _, tc := range []struct {
		name  string
		opts  redisstore.Options
		fails bool
	}{
		{"checked", redisstore.Options{EvictionCheckInterval: every}, true},
		{"only New checks", redisstore.Options{EvictionCheckInterval: -1}, false},
		{"AllowEviction", redisstore.Options{AllowEviction: true, EvictionCheckInterval: every}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			configure("noeviction")
			s := newStore(t, client, &tc.opts)
			do(t, s, incr...)
			configure("allkeys-lru")
			t.Cleanup(func() { configure("noeviction") })
			if !tc.fails {
				if err := until(s, 25*every, func(err error) bool { return err != nil }); err != nil {
					t.Fatalf("Do: %v, want no error: this store does not check again", err)
				}
				return
			}
			err := until(s, 5*time.Second, func(err error) bool { return err != nil })
			if !errors.Is(err, redisstore.ErrEvicting) || !strings.Contains(err.Error(), "allkeys-lru") {
				t.Fatalf("Do on a server set to allkeys-lru after New: %v, want an error naming allkeys-lru, wrapping ErrEvicting", err)
			}
			configure("noeviction")
			if err := until(s, 5*time.Second, func(err error) bool { return err == nil }); err != nil {
				t.Fatalf("Do after the server was set back to noeviction: %v", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := redisstore.New(t.Context(), nil, nil); err == nil {
		t.Error("New(nil client) succeeded")
	}
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	if _, err := redisstore.New(t.Context(), client, &redisstore.Options{ScanCount: -1}); err == nil {
		t.Error("New with a negative ScanCount succeeded")
	}
	// A prefix must keep the keys of one hash tag in one slot.
	for _, prefix := range []string{"a{", "{}:", "x{y"} {
		if _, err := redisstore.New(t.Context(), client, &redisstore.Options{Prefix: prefix}); err == nil {
			t.Errorf("New with Prefix %q succeeded", prefix)
		}
	}
	for _, prefix := range []string{"{lockout}:", "a}b", "a{b}{"} {
		if _, err := redisstore.New(t.Context(), client, &redisstore.Options{Prefix: prefix}); err != nil {
			t.Errorf("New with Prefix %q: %v", prefix, err)
		}
	}
	down := newClient(t, "127.0.0.1:1", func(o *goredis.Options) { o.DialerRetries = 1 })
	if _, err := redisstore.New(t.Context(), down, nil); err == nil {
		t.Error("New with an unreachable server succeeded")
	}
}

func TestLargeValues(t *testing.T) {
	srv := testserver.Redis(t)
	s := newStore(t, newClient(t, srv.Addr, nil), nil)
	const big = 1<<62 + 1 // not a float64
	rs := do(t, s,
		backend.IncrOp("k", big, time.Minute),
		backend.IncrOp("k", 2, time.Minute),
		backend.IncrOp("k", -1, time.Minute),
		backend.ExistsOp("k"),
	)
	for i, want := range []int64{big, big + 2, big + 1, big + 1} {
		if rs[i].Value != want {
			t.Errorf("op %d: value %d, want %d", i, rs[i].Value, want)
		}
	}
	// Overflow is an error, and changes nothing.
	if _, err := backend.Do1(t.Context(), s, backend.IncrOp("k", 1<<62, time.Minute)); err == nil {
		t.Error("incr beyond int64 succeeded")
	}
	if r := do(t, s, backend.ExistsOp("k"))[0]; r.Value != big+1 {
		t.Errorf("after the overflow: value %d, want %d", r.Value, int64(big+1))
	}
}

// TestRing checks the store over a go-redis Ring of two servers: keys are
// spread over both shards, and Keys lists both.
func TestRing(t *testing.T) {
	a, b := testserver.Redis(t), testserver.Redis(t)
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
	t.Cleanup(func() { ring.Close() })
	s := newStore(t, ring, nil)
	var ops []backend.Op
	for i := range 50 {
		ops = append(ops, backend.IncrOp(fmt.Sprintf("k%d", i), int64(i+1), time.Minute))
	}
	for i, r := range do(t, s, ops...) {
		if r.Value != int64(i+1) {
			t.Errorf("incr %d = %+v", i, r)
		}
	}
	n := 0
	for _, err := range s.Keys(t.Context(), "k") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 50 {
		t.Errorf("Keys over the ring: %d keys, want 50", n)
	}
	// Keys with one hash tag go in one script call, to the shard of the tag.
	var tagged []backend.Op
	for i := range 20 {
		tagged = append(tagged,
			backend.IncrOp(fmt.Sprintf("a:{%d}", i), 1, time.Minute), backend.ExistsOp(fmt.Sprintf("l:{%d}", i)),
			backend.IncrOp(fmt.Sprintf("l:{%d}", i), 2, time.Minute), backend.ExistsOp(fmt.Sprintf("a:{%d}", i)))
	}
	rs := do(t, s, tagged...)
	for i := 0; i < len(rs); i += 4 {
		if rs[i].Value != 1 || rs[i+1].Found || rs[i+2].Value != 2 || rs[i+3].Value != 1 {
			t.Errorf("tagged batch over the ring, ops %d-%d: %+v", i, i+3, rs[i:i+4])
		}
	}
	for _, srv := range []*testserver.Server{a, b} {
		if size := newClient(t, srv.Addr, nil).DBSize(t.Context()).Val(); size == 0 {
			t.Errorf("shard %s holds no key", srv.Addr)
		}
	}
}

// TestLongTTL sets the longest TTLs a time.Duration holds. Rounding them up
// to milliseconds overflowed int64 for those within a millisecond of
// math.MaxInt64: the store sent PEXPIRE a negative TTL, and Redis deleted
// the key at once (a lock of math.MaxInt64, as an exponential schedule
// whose maximum is math.MaxInt64 gives, was gone when set), while the
// Incr reported it found with a TTL of 1 ms.
func TestLongTTL(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	s := newStore(t, client, nil)
	const years = 200 * 365 * 24 * time.Hour
	for _, ttl := range []time.Duration{math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 - 999_999, math.MaxInt64 - time.Millisecond} {
		check := func(what string, r backend.Result) {
			t.Helper()
			if !r.Found || r.TTL < years {
				t.Errorf("%s with TTL %d: %+v, want found with a TTL of centuries", what, ttl, r)
			}
		}
		rs := do(t, s, backend.IncrOp("incr", 1, ttl), backend.IncrOp("expire", 1, time.Hour))
		check("incr", rs[0])
		check("expire", do(t, s, backend.ExpireOp("expire", ttl))[0])
		rs = do(t, s, backend.ExistsOp("incr"), backend.ExistsOp("expire"))
		check("exists after incr", rs[0])
		check("exists after expire", rs[1])
		do(t, s, backend.DeleteOp("incr"), backend.DeleteOp("expire"))
	}
	// The journal's retention too: with math.MaxInt64 it removed every
	// record as it was appended.
	j := newStore(t, client, &redisstore.Options{JournalRetention: math.MaxInt64})
	if err := j.Append(t.Context(), "long", []backend.Record{{Outcome: "failure", Username: "alice"}}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := j.Records(t.Context(), "long", backend.Query{})
	if err != nil || len(recs) != 1 {
		t.Errorf("Records with a JournalRetention of math.MaxInt64: %d records, %v; want the one appended", len(recs), err)
	}
}
