package lockout

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// The memory of wrong passwords is written in the background, on a store
// whose calls are round trips (all but the memory store): a failure that
// is not a repeat would otherwise cost a call of its own, where a plain
// failure costs none. The writer sends the writes queued within
// memoryLinger together, in one call. Until the store surely holds them,
// the policy's own decisions add them to what they read (adjust), so a
// repeat right after its first failure is recognised by this process.
// Another process sees a wrong password memoryLinger late, and then counts
// a repeat once more: the memory is only ever late or lost (when the
// queue is full, or its call fails), and a wrong password it does not
// remember counts, as without it. It never remembers a password that was
// not counted.

// memoryLinger is how long the writer gathers the memory's writes.
const memoryLinger = 5 * time.Millisecond

// memoryQueue bounds the writes waiting.
const memoryQueue = 4096

// memoryWrite is what a counted wrong password leaves: the username's
// sequence moves to seq+1, and the fingerprint's key holds seq+1.
type memoryWrite struct {
	seqKey, fpKey string
	seq           int64
}

// memoryWriter writes the memory of wrong passwords in the background.
type memoryWriter struct {
	p     *Policy
	mu    sync.Mutex
	queue []memoryWrite
	// The sequence numbers the writes queued, in flight or just written
	// set, by key: the store holds at least these once they are written.
	// A decision whose read of the store may have come before the write
	// takes the larger (adjust). Entries go a grace period after their
	// write: longer than a decision's store call may take.
	targets map[string]target
	expiry  []expiring // targets whose writes ended, in that order
	grace   int64      // Policy.now units
	lastLog atomic.Int64
	flushMu sync.Mutex // one flush at a time
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// expiring is a target whose writes ended at written (Policy.now).
type expiring struct {
	key     string
	written int64
}

// target is a sequence number a key will hold: owner is the sequence key
// of its username, n the writes of the key queued or in flight, written
// when the last of them ended (Policy.now; 0 while n > 0).
type target struct {
	owner      string
	seq        int64
	n, written int64
}

func newMemoryWriter(p *Policy) *memoryWriter {
	w := &memoryWriter{
		p:       p,
		targets: map[string]target{},
		grace:   2 * int64(p.timeout),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	unlabeled(func() { go w.run() })
	return w
}

// add queues m, unless the queue is full or the writer stopped: the
// password is then not remembered (a repeat of it counts).
func (w *memoryWriter) add(m memoryWrite) {
	w.mu.Lock()
	select {
	case <-w.stop:
		w.mu.Unlock()
		return
	default:
	}
	if len(w.queue) >= memoryQueue {
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, m)
	t := w.targets[m.seqKey]
	w.targets[m.seqKey] = target{owner: m.seqKey, seq: max(t.seq, m.seq+1), n: t.n + 1}
	t = w.targets[m.fpKey]
	w.targets[m.fpKey] = target{owner: m.seqKey, seq: m.seq + 1, n: t.n + 1}
	first := len(w.queue) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// adjust raises what Allow read of a username's sequence (seqKey) and of
// a fingerprint (fpKey) to what this process's writes set: the store holds
// them a moment later.
func (w *memoryWriter) adjust(seqKey, fpKey string, seq, fp *backend.Result) {
	now := w.p.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range [2]struct {
		key string
		r   *backend.Result
	}{{seqKey, seq}, {fpKey, fp}} {
		t, ok := w.targets[a.key]
		switch {
		case !ok:
		case t.n == 0 && now-t.written > w.grace:
			delete(w.targets, a.key) // the store's read is the truth now
		case !a.r.Found || a.r.Value < t.seq:
			a.r.Value, a.r.Found = t.seq, true
		}
	}
}

// forget writes what is queued, then drops what the writer knows of the
// username whose sequence key is seqKey (of every username: ""): for an
// operator's reset, which then clears the store.
func (w *memoryWriter) forget(seqKey string) {
	w.flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, t := range w.targets {
		if seqKey == "" || t.owner == seqKey {
			delete(w.targets, k)
		}
	}
}

// run writes what is queued, memoryLinger after the first write of a
// batch, until close; then what is left.
func (w *memoryWriter) run() {
	defer close(w.done)
	linger := time.NewTimer(memoryLinger)
	linger.Stop()
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			w.flush()
			return
		}
		linger.Reset(memoryLinger)
		select {
		case <-linger.C:
		case <-w.stop:
			linger.Stop()
			w.flush()
			return
		}
		w.flush()
	}
}

// flush writes the queue in one call, and starts the grace period of its
// targets. It calls the store (or, while the policy is degraded, its
// fallback) itself, not through the policy: no hook, observer or breaker
// hears it, so that none can call back into the policy from here. A
// failed write is only logged: the memory is lost, which is safe.
func (w *memoryWriter) flush() {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	batch := w.queue
	w.queue = nil
	w.mu.Unlock()
	if len(batch) > 0 {
		window := w.p.fp.window
		ops := make([]backend.Op, 0, 4*len(batch))
		for _, m := range batch {
			ops = appendMemoryOps(ops, m, window)
		}
		store := w.p.store
		if w.p.breaker.state.Load() == degraded && w.p.fallback != nil {
			store = w.p.fallback
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.p.timeout)
		err := store.Do(ctx, ops, make([]backend.Result, len(ops)))
		cancel()
		if err != nil {
			w.lost(len(batch), err)
		}
	}
	now := w.p.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range batch {
		for _, k := range [2]string{m.seqKey, m.fpKey} {
			if t, ok := w.targets[k]; ok && t.n > 0 {
				if t.n--; t.n == 0 {
					t.written = now
					w.expiry = append(w.expiry, expiring{k, now})
				}
				w.targets[k] = t
			}
		}
	}
	// Drop the targets whose grace ended, oldest first.
	i := 0
	for ; i < len(w.expiry) && now-w.expiry[i].written > w.grace; i++ {
		e := w.expiry[i]
		if t, ok := w.targets[e.key]; ok && t.n == 0 && t.written == e.written {
			delete(w.targets, e.key)
		}
	}
	w.expiry = append(w.expiry[:0], w.expiry[i:]...)
}

// lost logs n wrong passwords whose memory a failed write lost, at most
// once per memoryLogEvery.
func (w *memoryWriter) lost(n int, err error) {
	now := time.Now().UnixNano()
	if last := w.lastLog.Load(); now-last < int64(memoryLogEvery) || !w.lastLog.CompareAndSwap(last, now) {
		return
	}
	w.p.log.LogAttrs(context.Background(), slog.LevelWarn, "lockout: the memory of wrong passwords was not written (they count again)",
		slog.Int("passwords", n), slog.Any("error", err))
}

// memoryLogEvery is how often lost memory is logged, at most.
const memoryLogEvery = 10 * time.Second

// close writes what is queued and stops the writer.
func (w *memoryWriter) close() {
	w.once.Do(func() {
		w.mu.Lock()
		close(w.stop)
		w.mu.Unlock()
		<-w.done
	})
}

// appendMemoryOps appends the operations of m to ops: the next sequence
// number, and the fingerprint holding it, both kept for window.
func appendMemoryOps(ops []backend.Op, m memoryWrite, window time.Duration) []backend.Op {
	return append(ops,
		backend.IncrOp(m.seqKey, 1, window), backend.ExpireOp(m.seqKey, window),
		backend.DeleteOp(m.fpKey), backend.IncrOp(m.fpKey, m.seq+1, window))
}
