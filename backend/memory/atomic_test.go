package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// TestTagGroupsAreAtomic is a litmus test of Harness.AtomicTags: writers
// apply batches whose operations on one hash tag keep an invariant between
// that tag's keys, and readers read the keys in one batch, concurrently.
// A reader must never see half of a writer's batch.
func TestTagGroupsAreAtomic(t *testing.T) {
	const writers, readers, rounds = 3, 3, 1500
	tests := []struct {
		name string
		// write returns writer g's batch number i on the keys of tag.
		write func(tag string, g, i int) []backend.Op
		// read returns the reader's batch, and check the violation its
		// results show, if any.
		read  func(tag string) []backend.Op
		check func(res []backend.Result) error
	}{
		{
			// Two counters incremented together always read equal.
			name: "counters move together",
			write: func(tag string, g, i int) []backend.Op {
				return []backend.Op{
					backend.IncrOp("a:"+tag, 1, time.Hour),
					backend.IncrOp("b:"+tag, 1, time.Hour),
				}
			},
			read: func(tag string) []backend.Op {
				return []backend.Op{backend.ExistsOp("b:" + tag), backend.IncrOp("a:"+tag, 0, time.Hour)}
			},
			check: func(res []backend.Result) error {
				if res[0].Value != res[1].Value {
					return fmt.Errorf("b = %d, a = %d", res[0].Value, res[1].Value)
				}
				return nil
			},
		},
		{
			// The engine's lock: a batch sets the lock marker and deletes
			// the counter, another does the reverse. Exactly one of them
			// exists between batches. The keys are created and deleted
			// over and over, and the lock marker's TTL switches between
			// NoExpiry and a finite one.
			name: "lock marker replaces counter",
			write: func(tag string, g, i int) []backend.Op {
				if (g+i)%2 == 0 {
					ttl := time.Hour
					if i%4 < 2 {
						ttl = backend.NoExpiry
					}
					return []backend.Op{
						backend.DeleteOp("counter:" + tag),
						backend.IncrOp("lock:"+tag, 1, time.Minute),
						backend.ExpireOp("lock:"+tag, ttl),
					}
				}
				return []backend.Op{
					backend.IncrOp("counter:"+tag, 1, time.Hour),
					backend.DeleteOp("lock:" + tag),
				}
			},
			read: func(tag string) []backend.Op {
				return []backend.Op{backend.ExistsOp("lock:" + tag), backend.ExistsOp("counter:" + tag)}
			},
			check: func(res []backend.Result) error {
				if res[0].Found == res[1].Found {
					return fmt.Errorf("lock found = %v, counter found = %v: want exactly one", res[0].Found, res[1].Found)
				}
				return nil
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, nil)
			// Four tags, so that batches also span several stripes; each
			// writer batch touches one tag, plus one key of another tag.
			tags := []string{"{t0}", "{t1}", "{t2}", "{t3}"}
			for _, tag := range tags {
				do(t, s, tc.write(tag, 0, 1)...)
			}
			var done atomic.Bool
			var writing, reading sync.WaitGroup
			errs := make(chan error, writers+readers)
			for g := range writers {
				writing.Go(func() {
					res := make([]backend.Result, 8)
					for i := range rounds {
						tag := tags[(g+i)%len(tags)]
						ops := append(tc.write(tag, g, i), backend.IncrOp(fmt.Sprintf("other:{%d}", i%7), 1, time.Hour))
						if err := s.Do(context.Background(), ops, res[:len(ops)]); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			var reads atomic.Int64
			for range readers {
				reading.Go(func() {
					res := make([]backend.Result, 4)
					for i := 0; !done.Load(); i++ {
						tag := tags[i%len(tags)]
						ops := tc.read(tag)
						if err := s.Do(context.Background(), ops, res[:len(ops)]); err != nil {
							errs <- err
							return
						}
						reads.Add(1)
						if err := tc.check(res); err != nil {
							errs <- fmt.Errorf("tag %s, read %d: %w: saw half of a batch", tag, i, err)
							return
						}
					}
				})
			}
			writing.Wait()
			done.Store(true)
			reading.Wait()
			t.Logf("%d reads during %d writes", reads.Load(), writers*rounds)
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
