package redis_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a TCP proxy in front of a Redis server that can misbehave: hang
// (forward nothing, answer nothing) or drop replies (close the client's
// connection when the server's reply arrives, after the server has run the
// command).
type proxy struct {
	Addr   string
	ln     net.Listener
	target string

	hang atomic.Bool
	drop atomic.Int32 // replies left to drop

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Hang makes the proxy stop forwarding anything, on open connections and
// new ones, until Hang(false).
func (p *proxy) Hang(on bool) { p.hang.Store(on) }

// DropReplies makes the proxy close the connection that receives each of
// the next n replies instead of forwarding it.
func (p *proxy) DropReplies(n int) { p.drop.Store(int32(n)) }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			return
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

func (p *proxy) serve(client net.Conn) {
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Go(func() {
		p.pump(server, client, false)
		client.Close()
	})
	p.pump(client, server, true)
	server.Close()
	wg.Wait()
}

// pump copies from src to dst; requests says src is the client.
func (p *proxy) pump(src, dst net.Conn, requests bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hang.Load() {
			if !requests {
				if d := p.drop.Load(); d > 0 && p.drop.CompareAndSwap(d, d-1) {
					return // the reply is lost; the caller closes both ends
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
