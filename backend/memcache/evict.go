package memcache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// ErrEvicting is wrapped by the errors of a store made by NewServers for
// the keys of a server that may evict them: memcached started without -M
// (its default) drops the least recently used items when it is full, and
// an evicted counter or lock marker silently unlocks an attacker, who can
// fill the server with keys of his own making (every failed attempt on a
// new username makes some). The policy then decides in its fallback, as
// for a server that is down, and logs the error. Run memcached with -M
// and enough -m, or set Options.AllowEviction.
var ErrEvicting = errors.New("memcache: the server may evict keys (memcached runs without -M)")

// errNoCAS is wrapped by the errors of a store made by NewServers for the
// keys of a server run with -C: without compare-and-swap, every cas fails,
// so Expire (a lock's duration), the removal of a counter at zero and the
// restart of an expired counter could never succeed.
var errNoCAS = errors.New("memcache: the server runs without CAS (memcached -C); the store needs it")

// evictionChecks asks each server, before the first request to it and
// after a broken connection (a restart, maybe with other settings),
// whether it may evict keys ("stats settings": "STAT evictions on").
type evictionChecks struct {
	nodes   []rendezvousNode
	checks  []*evictionCheck // by node; a server listed twice shares one
	timeout time.Duration
}

// evictionCheck is the check of one server.
type evictionCheck struct {
	addr net.Addr
	ok   atomic.Bool   // evictions are off
	turn chan struct{} // held (1 buffered) while asking; waited for within ctx
	// Guarded by turn: the latest check that failed, its error, and for
	// how long calls get it without asking again: evictionRecheck for a
	// server that may evict; as long as asking took for one that did not
	// answer, so that the calls queued behind a hung server fail at once
	// instead of each waiting Timeout in turn.
	failed time.Time
	hold   time.Duration
	err    error
}

// evictionRecheck is how long a server found evicting is not asked again.
const evictionRecheck = time.Second

func newEvictionChecks(sel *RendezvousSelector, timeout time.Duration) *evictionChecks {
	c := &evictionChecks{timeout: timeout}
	if p := sel.nodes.Load(); p != nil {
		c.nodes = *p
	}
	byAddr := map[string]*evictionCheck{}
	for _, nd := range c.nodes {
		e := byAddr[nd.addr.String()]
		if e == nil {
			e = &evictionCheck{addr: nd.addr, turn: make(chan struct{}, 1)}
			byAddr[nd.addr.String()] = e
		}
		c.checks = append(c.checks, e)
	}
	return c
}

// check returns nil when the server of k cannot evict keys, asking it the
// first time; otherwise an error, wrapping ErrEvicting when it can.
func (c *evictionChecks) check(ctx context.Context, k string) error {
	if len(c.checks) == 0 {
		return nil
	}
	e := c.checks[pick(c.nodes, k)]
	if e.ok.Load() {
		return nil
	}
	select {
	case e.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("memcache: %w", ctx.Err())
	}
	defer func() { <-e.turn }()
	if e.ok.Load() {
		return nil
	}
	if e.err != nil && time.Since(e.failed) < e.hold {
		return e.err
	}
	asked := time.Now()
	on, err := evictionsOn(ctx, e.addr, c.timeout)
	switch {
	case errors.Is(err, errNoCAS):
		// Like an evicting server: asked again after evictionRecheck.
		e.err = fmt.Errorf("memcache: %s: %w: run it without -C, or set Options.AllowEviction", e.addr, err)
		e.failed, e.hold = time.Now(), evictionRecheck
		return e.err
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("memcache: %w", ctx.Err())
	case err != nil && pastDeadline(ctx):
		// The connection's deadline was ctx's: the read timed out as
		// the context's timer was about to fire.
		return fmt.Errorf("memcache: %w", context.DeadlineExceeded)
	case err != nil:
		// Held for as long as asking took: the calls that queued behind
		// a server that hung get its error at once, and a refused
		// connection is tried again at the next call.
		e.err = fmt.Errorf("memcache: asking %s whether it may evict keys: %w", e.addr, err)
		e.failed = time.Now()
		e.hold = e.failed.Sub(asked)
		return e.err
	case on:
		e.err = fmt.Errorf("memcache: %s: %w: run it with -M (and enough -m), or set Options.AllowEviction", e.addr, ErrEvicting)
		e.failed, e.hold = time.Now(), evictionRecheck
		return e.err
	}
	e.ok.Store(true)
	e.err = nil
	return nil
}

// pastDeadline reports whether ctx's deadline has come.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// reset makes every server be asked again before its next request.
func (c *evictionChecks) reset() {
	for _, e := range c.checks {
		e.ok.Store(false)
	}
}

// evictionsOn asks the server at addr for its settings, and reports
// whether it may evict keys.
func evictionsOn(ctx context.Context, addr net.Addr, timeout time.Duration) (bool, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return false, err
	}
	defer nc.Close()
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return false, err
	}
	// A cancelled ctx interrupts the exchange, as a deadline would.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write([]byte("stats settings\r\n")); err != nil {
		return false, err
	}
	return parseEvictions(bufio.NewReader(nc))
}

// parseEvictions reads the answer to "stats settings" from r, up to its
// END, and reports whether it says "STAT evictions on". An answer saying
// "STAT cas_enabled no" (memcached -C) is an error wrapping errNoCAS.
func parseEvictions(r *bufio.Reader) (bool, error) {
	on, seen, noCAS := false, false, false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "END":
			if !seen {
				return false, errors.New("stats settings has no evictions line (a proxy?): set Options.AllowEviction once the servers are known to run with -M")
			}
			if noCAS {
				return false, errNoCAS
			}
			return on, nil
		case line == "ERROR" || strings.HasPrefix(line, "CLIENT_ERROR") || strings.HasPrefix(line, "SERVER_ERROR"):
			return false, fmt.Errorf("stats settings: %s", line)
		}
		if v, ok := strings.CutPrefix(line, "STAT evictions "); ok {
			on, seen = v != "off", true
		}
		if line == "STAT cas_enabled no" {
			noCAS = true
		}
	}
}
