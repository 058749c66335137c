package memcache

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// delayProxy forwards connections to a server, holding back every request
// byte for a fixed delay: a network whose round trip lasts that long, so
// that the round trips a call costs show in its wall time above the noise
// of a busy machine.
type delayProxy struct {
	Addr string

	ln     net.Listener
	target string
	delay  time.Duration
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
	open   atomic.Int64 // client connections not closed by the client
}

// newDelayProxy starts a proxy to target that delays requests by delay; it
// is stopped when t ends.
func newDelayProxy(t testing.TB, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{Addr: ln.Addr().String(), ln: ln, target: target, delay: delay}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *delayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.open.Add(1)
		p.wg.Go(func() {
			p.forward(c, s)
			p.open.Add(-1)
		})
		p.wg.Go(func() {
			io.Copy(c, s)
			c.Close()
		})
	}
}

// forward copies client c to server s, each chunk delay after it arrived.
func (p *delayProxy) forward(c, s net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 1024)
	p.wg.Go(func() {
		defer s.Close()
		for ch := range q {
			time.Sleep(time.Until(ch.due))
			if _, err := s.Write(ch.b); err != nil {
				c.Close()
				for range q {
				}
				return
			}
		}
	})
	defer close(q)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(p.delay)}
		}
		if err != nil {
			return
		}
	}
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
