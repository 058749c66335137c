package memcache

import (
	"context"
	"fmt"
)

// limiter bounds the requests in flight per server. gomemcache dials a new
// connection whenever none is idle, and keeps at most MaxIdleConns of them
// afterwards: a burst of concurrent requests beyond that dials (and later
// closes) a connection per request, and a large enough burst makes dials
// time out. With the limiter, a request waits, within its context, for one
// of MaxIdleConns slots on its server instead.
//
// A nil *limiter does not limit.
type limiter struct {
	nodes []rendezvousNode // the selector's servers; nil: one pool for all keys
	sems  []chan struct{}  // one per node; a server listed twice shares one
}

// newLimiter returns a limiter of n requests per server of sel, or of n in
// all when sel is nil; nil when n <= 0.
func newLimiter(n int, sel *RendezvousSelector) *limiter {
	if n <= 0 {
		return nil
	}
	l := &limiter{}
	if sel != nil {
		if p := sel.nodes.Load(); p != nil && len(*p) > 1 {
			l.nodes = *p
		}
	}
	if l.nodes == nil {
		l.sems = []chan struct{}{make(chan struct{}, n)}
		return l
	}
	byAddr := map[string]chan struct{}{}
	for _, nd := range l.nodes {
		sem := byAddr[nd.addr.String()]
		if sem == nil {
			sem = make(chan struct{}, n)
			byAddr[nd.addr.String()] = sem
		}
		l.sems = append(l.sems, sem)
	}
	return l
}

// sem returns the slots of k's server.
func (l *limiter) sem(k string) chan struct{} {
	if l.nodes == nil {
		return l.sems[0]
	}
	return l.sems[pick(l.nodes, k)]
}

// acquire waits for a slot for a request about k, or for ctx to be done.
func (l *limiter) acquire(ctx context.Context, k string) (chan struct{}, error) {
	if l == nil {
		return nil, nil
	}
	sem := l.sem(k)
	select {
	case sem <- struct{}{}:
		return sem, nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return sem, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("memcache: waiting for a connection: %w", ctx.Err())
	}
}

// release frees a slot acquire returned.
func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}

// group splits keys by server, for one multi-get each; a single group when
// the limiter cannot tell servers apart.
func (l *limiter) group(keys []string) [][]string {
	if l == nil || l.nodes == nil {
		return [][]string{keys}
	}
	var groups [][]string
	var sems []chan struct{}
next:
	for _, k := range keys {
		sem := l.sem(k)
		for i, s := range sems {
			if s == sem {
				groups[i] = append(groups[i], k)
				continue next
			}
		}
		sems = append(sems, sem)
		groups = append(groups, []string{k})
	}
	return groups
}
