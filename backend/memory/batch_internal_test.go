package memory

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// pauseCtx is a context whose nth call to Err waits until resume closes.
type pauseCtx struct {
	context.Context
	n              int32
	calls          atomic.Int32
	paused, resume chan struct{}
}

func (c *pauseCtx) Err() error {
	if c.calls.Add(1) == c.n {
		close(c.paused)
		<-c.resume
	}
	return c.Context.Err()
}

// TestRecreateKeepsRoom replaces a live key in a full store, with a
// Delete and then an Incr in one batch (as the engine locks a device),
// and creates another key while the batch is between the two. The
// batch keeps the room of the key it deleted for the key it creates: the
// other creation is refused, and the key is there after the batch. It
// was not: the Delete gave the room back to the store at once, the other
// creation took it, and the batch failed with ErrFull having deleted the
// key (a lock gone).
func TestRecreateKeepsRoom(t *testing.T) {
	s := newStore(t, &Options{MaxKeys: 2, SweepInterval: time.Hour})
	const key = "lockout:l:{u=alice}"
	do(t, s, backend.IncrOp(key, 1, time.Hour), backend.IncrOp("other", 1, time.Hour))
	pl := placer{s: s}
	home := pl.place(key).shard
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprint("new", i); pl.place(k).shard != home {
			other = k
		}
	}
	// Do checks the context at its start, then before its 256th
	// operation: the batch pauses there, after the Delete.
	ops := make([]backend.Op, 256)
	ops[0] = backend.DeleteOp(key)
	for i := 1; i < 255; i++ {
		ops[i] = backend.ExistsOp(key)
	}
	ops[255] = backend.IncrOp(key, 1, time.Hour)
	ctx := &pauseCtx{Context: context.Background(), n: 2, paused: make(chan struct{}), resume: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.Do(ctx, ops, make([]backend.Result, len(ops))) }()
	<-ctx.paused
	_, err := try(s, backend.IncrOp(other, 1, time.Hour))
	close(ctx.resume)
	if err == nil {
		t.Errorf("creating %q during the batch: no error, want ErrFull (the store holds 2 keys, MaxKeys 2)", other)
	} else if !errors.Is(err, backend.ErrFull) {
		t.Errorf("creating %q during the batch: %v, want ErrFull", other, err)
	}
	if err := <-done; err != nil {
		t.Errorf("the batch: %v", err)
	}
	if r := do1(t, s, backend.ExistsOp(key)); !r.Found {
		t.Errorf("%q is gone after the batch that deleted and created it", key)
	}
	wantLen(t, s, 2)
}
