package memcache

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestRequests counts the requests (memcached commands) that the lockout
// engine's decisions send, with three rules (username, IP, username+IP) on
// one server, through a proxy that counts them, and checks them against
// the package documentation ("Requests per decision").
func TestRequests(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	proxy := newCountProxy(t, srv.Addr)
	s := newStore(t, []string{proxy.Addr}, &Options{Timeout: testTimeout, Prefix: "rq" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"})
	defer s.Close()
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(100), lockout.ByUsernameAndIP(100)}
	for i := range rules {
		rules[i].Schedule = lockout.Fixed(time.Hour)
	}
	newPolicy := func() *lockout.Policy {
		// No lock cache: every refusal asks the store.
		p, err := lockout.New(s, lockout.Config{Rules: rules, Timeout: testTimeout, LockCacheTTL: lockout.NoLockCache, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	p := newPolicy()
	ctx := t.Context()
	u := lockout.Subject{Username: "alice", IP: "192.0.2.1"}

	count := func(name string, want map[string]int, f func() error) {
		t.Helper()
		proxy.reset()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := proxy.counts()
		total := 0
		for _, n := range got {
			total += n
		}
		t.Logf("%-34s %2d requests %v", name, total, got)
		for verb, n := range want {
			if got[verb] != n {
				t.Errorf("%s: %d %s requests, want %d (all: %v)", name, got[verb], verb, n, got)
			}
		}
		for verb, n := range got {
			if _, ok := want[verb]; !ok && n > 0 {
				t.Errorf("%s: %d unexpected %s requests (all: %v)", name, n, verb, got)
			}
		}
	}
	allow := func() error {
		a, err := p.Allow(ctx, u)
		if err != nil {
			return err
		}
		return a.Failure(ctx)
	}

	// The first call also asks the server whether it may evict keys, once.
	count("admitted, new subject", map[string]int{"incr": 3, "add": 3, "gets": 1, "stats": 1}, allow)
	count("admitted", map[string]int{"incr": 3, "gets": 1}, allow)
	var a *lockout.Attempt
	count("admitted (Allow of the last slot)", map[string]int{"incr": 3, "gets": 1}, func() (err error) {
		a, err = p.Allow(ctx, u)
		return err
	})
	// The failure that locks: the lock marker and the history are new
	// (incr, then add), then the lock's TTL is set and the counter cleared.
	count("failure that locks", map[string]int{"incr": 2, "add": 2, "gets": 1, "cas": 2, "delete": 1}, func() error {
		return a.Failure(ctx)
	})
	// Refused by a lock this process has not seen: the admission, then
	// the give-back of the three reservations. The username counter was
	// cleared by the lockout: its incr misses and adds, and its decrement
	// to zero removes it again (cas); so do those of the others, at 2 and 3.
	p2 := newPolicy()
	count("refused (locked)", map[string]int{"incr": 3, "add": 1, "gets": 2, "decr": 3, "cas": 1}, func() error {
		_, err := p2.Allow(ctx, u)
		if err == nil {
			t.Error("admitted while locked")
		}
		return nil
	})
	v := lockout.Subject{Username: "bob", IP: "192.0.2.2"}
	if a, err := p.Allow(ctx, v); err != nil {
		t.Fatal(err)
	} else {
		a.Failure(ctx)
	}
	a, err := p.Allow(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	// The two counters with the username are deleted (read first, to
	// report whether they existed), the IP's gets its reservation back
	// (decr, then a read of its TTL).
	count("success", map[string]int{"gets": 2, "delete": 2, "decr": 1}, func() error { return a.Success(ctx) })
}

// countProxy forwards connections to a server and counts the commands
// clients send, by verb.
type countProxy struct {
	Addr string

	mu sync.Mutex
	n  map[string]*atomic.Int64
}

func newCountProxy(t testing.TB, target string) *countProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countProxy{Addr: ln.Addr().String(), n: map[string]*atomic.Int64{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() {
				p.forward(c, s)
				s.Close()
			})
			wg.Go(func() {
				io.Copy(c, s)
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// forward copies commands from c to s, counting them.
func (p *countProxy) forward(c, s net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		verb := string(f[0])
		p.counter(verb).Add(1)
		switch verb {
		case "set", "add", "cas", "replace", "append", "prepend":
			// A data block follows: <bytes> is the fifth field.
			if len(f) >= 5 {
				if n, err := strconv.Atoi(string(f[4])); err == nil {
					data := make([]byte, n+2)
					if _, err := io.ReadFull(r, data); err != nil {
						return
					}
					line = append(line, data...)
				}
			}
		}
		if _, err := s.Write(line); err != nil {
			return
		}
	}
}

func (p *countProxy) counter(verb string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.n[verb]
	if c == nil {
		c = new(atomic.Int64)
		p.n[verb] = c
	}
	return c
}

func (p *countProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.n {
		c.Store(0)
	}
}

func (p *countProxy) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	for verb, c := range p.n {
		if n := c.Load(); n > 0 {
			m[verb] = int(n)
		}
	}
	return m
}
