package lockout

import "time"

// RememberLock makes p remember a lock on key for ttl, as a lockout seen
// by p would: benchmarks use it to measure decisions with the lock cache
// in use, as it is in a service once any key has been locked.
func RememberLock(p *Policy, key string, ttl time.Duration) { p.remember(key, ttl, true) }
