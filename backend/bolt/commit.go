package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/go-lockout/lockout/backend"
)

// Group commit.
//
// A bbolt commit costs two fsyncs, and bbolt has one writer at a time. One
// goroutine, the committer, runs every write transaction. A writer hands
// its request to the committer through a channel and waits for the answer.
// The committer takes the first request waiting, adds every other request
// already queued (up to maxGroupOps operations), and commits them in one
// transaction. A lone writer therefore waits for one commit only, never for
// company; writers that arrive while a commit is under way queue up and
// share the next one, so under load one commit serves many callers.
//
// One caller's failure stays its own:
//   - operations are validated before they are queued;
//   - an error while applying a request's operations (a corrupt entry)
//     rolls the transaction back, answers that request with the error, and
//     runs the others again in a fresh transaction: nothing was applied
//     twice, as a rollback leaves nothing behind;
//   - a commit that fails because the file would outgrow its MaxSize fails
//     for the transaction as a whole, whose requests may mostly fit: the
//     group is split in halves, each committed on its own, down to single
//     requests, so that only the requests that need the space get ErrFull;
//   - a single request that finds the file full first makes the journals
//     give their oldest records back (a quarter of each, at least 256
//     records, per round), and is tried again while they have any: the
//     journal never makes a counter write fail with ErrFull.
//
// A caller whose context ends while it waits returns at once. Its request
// is skipped if the committer has not taken it yet, and may be applied if
// it has (the backend contract allows it: on error, any subset of a batch
// may have been applied).
const (
	maxQueue    = 1024 // requests waiting before writers block
	maxGroupOps = 4096 // operations per transaction (a larger request goes alone)
)

// commitMode selects how writes are committed. Only benchmarks change it.
type commitMode uint8

const (
	modeGroup  commitMode = iota // the committer's group commit
	modeUpdate                   // one db.Update per call: the naive baseline
	modeBatch                    // bbolt's db.Batch
)

// request states.
const (
	pending int32 = iota
	taken
	cancelled
)

// request is one caller's write batch, owned by the committer while queued:
// ops is a copy and res a scratch buffer, so that a caller that gives up
// can return while the committer still uses them.
type request struct {
	ops   []backend.Op
	res   []backend.Result
	state atomic.Int32
	done  chan error // buffered: the committer never blocks on it
}

func (s *Store) newRequest(ops []backend.Op) *request {
	r, _ := s.reqPool.Get().(*request)
	if r == nil {
		r = &request{done: make(chan error, 1)}
	}
	r.ops = append(r.ops[:0], ops...)
	if cap(r.res) < len(ops) {
		r.res = make([]backend.Result, len(ops))
	}
	r.res = r.res[:len(ops)]
	r.state.Store(pending)
	return r
}

func (s *Store) freeRequest(r *request) {
	if cap(r.ops) > 64 {
		return // keep the pool's buffers small
	}
	clear(r.ops)
	s.reqPool.Put(r)
}

// submit queues ops for the committer and waits for the outcome.
func (s *Store) submit(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	r := s.newRequest(ops)
	done := ctx.Done()
	if done == nil {
		s.queue <- r
		err := <-r.done
		return s.finish(r, res, err)
	}
	select {
	case s.queue <- r:
	case <-done:
		return fmt.Errorf("lockout/bolt: %w", ctx.Err())
	}
	select {
	case err := <-r.done:
		return s.finish(r, res, err)
	case <-done:
		r.state.CompareAndSwap(pending, cancelled)
		return fmt.Errorf("lockout/bolt: %w", ctx.Err())
	}
}

func (s *Store) finish(r *request, res []backend.Result, err error) error {
	if err == nil {
		copy(res, r.res)
	}
	s.freeRequest(r)
	return err
}

// commitLoop is the committer: it serves the queue until Close.
func (s *Store) commitLoop() {
	defer s.bg.Done()
	var (
		group []*request
		next  *request // taken from the queue, but for the next group
	)
	for {
		group = group[:0]
		if next == nil {
			select {
			case next = <-s.queue:
			case <-s.stop:
				s.drain()
				return
			}
		}
		n := 0
		for next != nil && (n == 0 || n+len(next.ops) <= maxGroupOps) {
			if next.state.CompareAndSwap(pending, taken) {
				group = append(group, next)
				n += len(next.ops)
			}
			next = nil
			select {
			case next = <-s.queue:
			default:
			}
		}
		if len(group) > 0 {
			s.commitGroup(group)
			s.makeRoom()
		}
		clear(group)
	}
}

// drain answers the requests left in the queue after Close. They can only
// be requests whose callers gave up: Close waited for every caller.
func (s *Store) drain() {
	for {
		select {
		case r := <-s.queue:
			r.done <- errClosed
		default:
			return
		}
	}
}

// commitGroup commits group's requests in one transaction, answering each.
func (s *Store) commitGroup(group []*request) {
	for len(group) > 0 {
		failed, failErr := -1, error(nil)
		s.stats.commits.Add(1)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			t, err := s.newTxn(tx, true)
			if err != nil {
				return err
			}
			for i, r := range group {
				if _, err := t.apply(r.ops, r.res); err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			// Rolled back: answer the culprit, run the others again.
			s.answer(group[failed], fmt.Errorf("lockout/bolt: %w", failErr))
			group = append(group[:failed], group[failed+1:]...)
			continue
		}
		if err != nil && errors.Is(err, berrors.ErrMaxSizeReached) && len(group) > 1 {
			h := len(group) / 2
			s.commitGroup(group[:h])
			s.commitGroup(group[h:])
			return
		}
		if err != nil && errors.Is(err, berrors.ErrMaxSizeReached) {
			// The journal gives way to counters: drop its oldest
			// records, and try again while it has any.
			if n, serr := s.shedJournals(); serr == nil && n > 0 {
				s.stats.sheds.Add(1)
				continue
			}
		}
		if err != nil {
			err = fmt.Errorf("lockout/bolt: commit: %w", mapErr(err))
		}
		for _, r := range group {
			s.answer(r, err)
		}
		return
	}
}

func (s *Store) answer(r *request, err error) {
	s.stats.requests.Add(1)
	r.done <- err
}

// updateEach is the naive baseline: one transaction per call.
func (s *Store) updateEach(ops []backend.Op, res []backend.Result) error {
	s.stats.commits.Add(1)
	s.stats.requests.Add(1)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		_, err := s.applyIn(tx, true, ops, res)
		return err
	})
	if err != nil {
		return fmt.Errorf("lockout/bolt: %w", mapErr(err))
	}
	return nil
}

// batchEach is bbolt's own coalescing: db.Batch. Its function may run more
// than once, in rolled-back transactions, and rewrites res every time.
func (s *Store) batchEach(ops []backend.Op, res []backend.Result) error {
	s.stats.requests.Add(1)
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		// The calls of one batch run in turn in one transaction: count
		// transactions, not calls (a rerun after a rollback reuses the id).
		if id := int64(tx.ID()); s.stats.lastBatchTx.Swap(id) != id {
			s.stats.commits.Add(1)
		}
		_, err := s.applyIn(tx, true, ops, res)
		return err
	})
	if err != nil {
		return fmt.Errorf("lockout/bolt: %w", mapErr(err))
	}
	return nil
}
