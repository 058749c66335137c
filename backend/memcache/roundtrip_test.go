package memcache

import (
	"fmt"
	"net"
	"testing"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestRoundTrips measures the round trips of wall time that the lockout
// engine's batches cost, over a network whose round trip takes rtt (two
// servers behind delayProxy), and checks them against the package
// documentation. The lower bound shows that reads wait for the writes of
// their hash tags; the upper bound, that nothing else waits.
func TestRoundTrips(t *testing.T) {
	parallel(t)
	const rtt = 250 * time.Millisecond
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	pa, pb := newDelayProxy(t, a.Addr, rtt), newDelayProxy(t, b.Addr, rtt)
	opts := &Options{Timeout: 5 * time.Second, Prefix: fmt.Sprintf("rt%d:", time.Now().UnixNano())}
	s := newStore(t, []string{pa.Addr, pb.Addr}, opts)
	defer s.Close()
	// direct places keys as s does, without the delay: for the setup.
	var sel RendezvousSelector
	if err := sel.SetServers(pa.Addr, pb.Addr); err != nil {
		t.Fatal(err)
	}
	client := gm.NewFromSelector(redirect{&sel, map[string]string{pa.Addr: a.Addr, pb.Addr: b.Addr}})
	defer client.Close()
	direct, err := New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// Three subjects' tags, on both servers.
	on := keysOn(t, 2, pa.Addr, pb.Addr)
	tags := []string{on[pa.Addr][0], on[pb.Addr][0], on[pa.Addr][1]}
	key := func(kind byte, tag string, try int) string { return fmt.Sprintf("lo:%c:{%s}/%d", kind, tag, try) }
	// ops returns a batch of one op per tag for each kind/delta given.
	type opFn func(tag string, try int) backend.Op
	incr := func(kind byte, delta int64) opFn {
		return func(tag string, try int) backend.Op { return backend.IncrOp(key(kind, tag, try), delta, time.Hour) }
	}
	exists := func(kind byte) opFn {
		return func(tag string, try int) backend.Op { return backend.ExistsOp(key(kind, tag, try)) }
	}
	expire := func(kind byte) opFn {
		return func(tag string, try int) backend.Op { return backend.ExpireOp(key(kind, tag, try), time.Hour) }
	}
	del := func(kind byte) opFn {
		return func(tag string, try int) backend.Op { return backend.DeleteOp(key(kind, tag, try)) }
	}
	batch := func(try int, fns ...opFn) []backend.Op {
		var ops []backend.Op
		for _, tag := range tags {
			for _, f := range fns {
				ops = append(ops, f(tag, try))
			}
		}
		return ops
	}

	cases := []struct {
		name  string
		setup []opFn // applied first, untimed: the keys that exist
		ops   []opFn
		rtts  int
	}{
		{"admission", []opFn{incr('a', 1)}, []opFn{incr('a', 1), exists('l')}, 2},
		{"admission, new counters", nil, []opFn{incr('a', 1), exists('l')}, 3},
		{"success", []opFn{incr('a', 1), incr('i', 2)}, []opFn{del('a'), incr('i', -1)}, 2},
		{"success, counter back to zero", []opFn{incr('a', 1), incr('i', 1)}, []opFn{del('a'), incr('i', -1)}, 3},
		{"refusal give-back", []opFn{incr('a', 2)}, []opFn{incr('a', -1)}, 2},
		{"refusal give-back to zero", []opFn{incr('a', 1)}, []opFn{incr('a', -1)}, 3},
		{"lockout, first call", nil, []opFn{incr('l', 1), incr('h', 1)}, 2},
		// A repeat lockout: the history exists, the marker is added, and
		// the read of the history's TTL waits for that add.
		{"lockout, first call, repeat", []opFn{incr('h', 1)}, []opFn{incr('l', 1), incr('h', 1)}, 3},
		{"lockout, second call", []opFn{incr('l', 1), incr('a', 1), incr('h', 1)}, []opFn{expire('l'), del('a'), expire('h')}, 2},
		{"status", []opFn{incr('a', 1), incr('l', 1)}, []opFn{exists('a'), exists('l'), exists('h')}, 1},
	}
	for ci, c := range cases {
		best := time.Hour
		for try := range 3 {
			try += 10 * ci
			if len(c.setup) > 0 {
				do(t, direct, batch(try, c.setup...)...)
			}
			ops := batch(try, c.ops...)
			start := time.Now()
			if err := s.Do(ctx, ops, make([]backend.Result, len(ops))); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			best = min(best, time.Since(start))
		}
		got := float64(best) / float64(rtt)
		t.Logf("%-22s %5.2f round trips (%v)", c.name, got, best.Round(time.Millisecond))
		if got < float64(c.rtts) || got > float64(c.rtts)+0.6 {
			t.Errorf("%s: %.2f round trips of wall time, want %d", c.name, got, c.rtts)
		}
	}
}

// redirect is a server selector that places keys as sel does, then sends
// them to another address: to a server behind a proxy, directly.
type redirect struct {
	sel *RendezvousSelector
	to  map[string]string
}

func (r redirect) PickServer(key string) (net.Addr, error) {
	a, err := r.sel.PickServer(key)
	if err != nil {
		return nil, err
	}
	return net.ResolveTCPAddr("tcp", r.to[a.String()])
}

func (r redirect) Each(f func(net.Addr) error) error {
	for _, to := range r.to {
		a, err := net.ResolveTCPAddr("tcp", to)
		if err != nil {
			return err
		}
		if err := f(a); err != nil {
			return err
		}
	}
	return nil
}
