package lockout

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout/backend/memory"
)

// TestCloseWaitsForCacheLookups: a lookup of the lock cache made without
// the policy's lock (a refusal from the cache while the store is healthy)
// keeps Close from closing the cache until it is done, and ends in its
// refusal; Close returns then.
func TestCloseWaitsForCacheLookups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := memory.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		p, err := New(store, Config{Rules: []Rule{ByUsername(1)}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		alice := Subject{Username: "alice"}
		a, err := p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Failure(ctx); err != nil { // locks alice
			t.Fatal(err)
		}
		if _, err := p.Allow(ctx, alice); !remembered(err) {
			t.Fatalf("alice before Close: %v, want a refusal from the lock cache", err)
		}

		inside, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce() // a failure below must not leave the lookup blocked
		testHookCacheLookup = func() {
			testHookCacheLookup = nil // this lookup only
			close(inside)
			<-release
		}
		defer func() { testHookCacheLookup = nil }()
		refused := make(chan error, 1)
		go func() {
			_, err := p.Allow(ctx, alice)
			refused <- err
		}()
		<-inside
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
		releaseOnce()
		if err := <-refused; !remembered(err) {
			t.Errorf("the lookup under way: %v, want a refusal from the lock cache", err)
		}
		select {
		case <-closed:
		case <-time.After(time.Minute):
			t.Fatal("Close did not return once the lookup was done")
		}
		if _, err := p.Allow(ctx, alice); !errors.Is(err, ErrClosed) {
			t.Errorf("alice after Close: %v, want ErrClosed", err)
		}
	})
}

// remembered reports whether err is a refusal from the lock cache.
func remembered(err error) bool {
	var re *RefusedError
	return errors.As(err, &re) && re.Remembered
}
