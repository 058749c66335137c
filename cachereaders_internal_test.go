package lockout

import (
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout/backend/memory"
)

// TestCloseWaitsForCacheReaders: Close closes the lock cache only once
// the lookups made without the policy's lock (cacheReaders) that began
// before it are done; one that begins after it touches nothing.
func TestCloseWaitsForCacheReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := memory.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		p, err := New(store, Config{Rules: []Rule{ByUsername(1)}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		p.remember("k", time.Hour, true) // makes the cache
		tok := p.readers.enter()         // a lookup under way
		closed := make(chan struct{})
		go func() {
			p.Close()
			close(closed)
		}()
		time.Sleep(time.Second)
		select {
		case <-closed:
			t.Fatal("Close returned while a lookup of the cache was under way")
		default:
		}
		if !p.closed.Load() {
			t.Fatal("Close has not begun")
		}
		if _, ok := p.cache.c.Get("k"); !ok {
			t.Error("the cache was closed under a lookup")
		}
		p.readers.leave(tok)
		<-closed
		if _, ok := p.cache.c.Get("k"); ok {
			t.Error("the cache is still open after Close")
		}
	})
}
