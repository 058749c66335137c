package lockout

import (
	"sync"
	"sync/atomic"
)

// procTokens picks one of n parts of a structure for the calling
// goroutine, through a sync.Pool of tokens, which hands a goroutine the
// token its processor (P) last put back: a part picked so stays in one
// core's cache, where one picked by subject or at random would move
// between cores at almost every use. It is only a hint: two goroutines may
// pick the same part, and a token the pool drops (at a collection) is
// made again, for the next part in turn.
type procTokens struct {
	pool sync.Pool    // of *int: a part's index
	next atomic.Int64 // the part of the next token made
}

// init makes tokens for n parts.
func (t *procTokens) init(n int) {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	t.pool.New = func() any {
		// A pointer into ids: a token costs no allocation, even when the
		// pool drops them (as it does at random under the race detector).
		return &ids[(t.next.Add(1)-1)%int64(n)]
	}
}

// pick returns the index of the part for the calling goroutine.
func (t *procTokens) pick() int {
	tok := t.pool.Get().(*int)
	i := *tok
	t.pool.Put(tok)
	return i
}
