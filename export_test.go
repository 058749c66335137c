package lockout

import "time"

// RememberLock makes p remember a lock on key for ttl, as a lockout seen
// by p would: benchmarks use it to measure decisions with the lock cache
// in use, as it is in a service once any key has been locked.
func RememberLock(p *Policy, key string, ttl time.Duration) { p.remember(key, ttl, true) }

// RefusedPart returns the part of the journal's bound on refusals' records
// that s's refusals take (-1 without a bound).
func RefusedPart(p *Policy, s Subject) int {
	if p.journal == nil || p.journal.refused == nil {
		return -1
	}
	part := p.journal.refusedPart(&s)
	for i, l := range p.journal.refused {
		if l == part {
			return i
		}
	}
	return -1
}

// CopiedLen returns the number of keys the current degraded period's
// write-back remembers copying (breaker.copied).
func CopiedLen(p *Policy) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.breaker.copied)
}

// DecisionsHeld reports whether decisions wait on p now: a recovery's
// second pass holds the policy's lock.
func DecisionsHeld(p *Policy) bool {
	if p.mu.TryRLock() {
		p.mu.RUnlock()
		return false
	}
	return true
}
