// Package lockout stops password guessing: it limits failed login attempts
// per username, per client IP (or IPv6 prefix), per username+IP pair and per
// any other field, and locks a key out for a cooloff that can grow with every
// repeat offence.
//
// An application asks a [Policy] before it verifies a password and reports
// the outcome afterwards:
//
//	a, err := policy.Allow(ctx, lockout.Subject{Username: name, IP: ip})
//	if err != nil {
//		// Refused (errors.Is(err, lockout.ErrRefused); a *RefusedError says
//		// why and when to retry) or an invalid subject: do not verify.
//		return err
//	}
//	if verifyPassword(name, password) {
//		a.Success(ctx)
//	} else {
//		a.Failure(ctx)
//	}
//
// or lets [Policy.Check] do all three. The state lives in a store behind the
// small interface of package backend: Redis, memcached, memory or bbolt.
//
// # Semantics
//
// Reserve before verify. Allow reserves one attempt on the counter of every
// applicable rule key, and reads every lock marker, in one backend call. An
// attempt is admitted only when no key is locked and no counter is past its
// limit, so at most Limit password verifications are admitted per rule key
// between two resets or lockouts, however many requests run at once. A
// refused attempt gives its reservations back (a second call) and never
// verifies a password.
//
// Failure. The reservation already counts the attempt, so a failure usually
// costs no backend call (one with a sliding window, to refresh it). The
// failure of the attempt that holds a key's last allowed slot locks that key:
// a lockout history counter kept in the backend says how many lockouts the
// key had within the rule's history window, the rule's Schedule turns that
// into a duration, and the lock marker is set while the counter is cleared.
// A locked key is refused without counting and without extending the lock,
// and the refusal says when to retry.
//
// Success. A success resets the counters of rules keyed by the username. On
// rules without it (an IP rule), it only gives back the attempt's own
// reservation, so one valid account cannot reset an IP's counter.
//
// Abandoned attempts. An attempt reported as neither success nor failure
// keeps its reservation: it counts against the limit like a failure. Only a
// reported failure starts a lockout, so a key whose last slot was abandoned
// is refused with ErrCapacity until its window ends.
//
// Lists. Addresses and prefixes in Config.AllowIPs, and names in
// Config.AllowUsernames, are never counted nor locked; Config.DenyIPs and
// Config.DenyUsernames are always refused. The deny lists win.
//
// Subjects. Usernames are canonicalised (PRECIS UsernameCaseMapped by
// default), so "Alice", "ALICE" and "Ａｌｉｃｅ" share a counter; an empty
// username makes username rules not apply. IP addresses are parsed with
// net/netip: "::ffff:192.0.2.1" is 192.0.2.1, IPv6 is keyed by a prefix (/64
// by default), and an address that does not parse is an error, never a
// shared bucket.
//
// Keys. Every key is field-tagged and escaped, so a username can never touch
// an IP's or another rule's key; long values are hashed so keys stay within
// MaxKeyLen; and the subject part is a Redis Cluster hash tag.
//
// Outage. Every store call runs under Config.Timeout. When the store fails,
// times out or reports itself full, the policy goes into degraded mode
// (Config.Outage): by default an in-process fallback store, with the same
// rules and keys, decides until the store answers again, so that per key and
// per process at most Limit guesses reach the password check for the whole
// outage. A circuit breaker sends decisions straight to the fallback while
// the store is down, probing it in the background at most once per
// Config.ProbeInterval, and what the fallback counted is written back to the
// store when it recovers: an outage is never a fresh start. FailClosed
// refuses every attempt during an outage instead, and AdmitUncounted admits
// them unprotected. Errors go to Hooks.BackendError and the logger, the start
// and end of degraded mode to Hooks.Degraded.
//
// Lock cache. The policy remembers the locks it has seen, for at most
// Config.LockCacheTTL (1 s by default), in a bounded in-process cache: a
// locked key that keeps trying is refused with no backend call, during an
// outage too. An unlock made through another process takes effect here
// within that bound. The cache never remembers that a key is not locked.
//
// A policy holds background resources once it has used them: call
// [Policy.Close] when done with it.
//
// # Backend calls per decision
//
//	step                        calls
//	permission, admitted        1
//	refused (locked)            2   (0 when the lock is remembered or denylisted)
//	failure that does not lock  0   (1 with a sliding window)
//	failure that locks          2
//	success                     1
//	any step during an outage   0   (the fallback decides, in process)
//
// # Caveats
//
// A give-back (of a refused attempt, of a success on a rule without the
// username, of a wrong password tried again) is a decrement. On a store
// that guards give-backs (backend.ExpiryGuard: memory, bbolt, Redis 7 with
// its GuardGiveBacks option) it applies only to the counter it reserved
// on: on a fixed window, one that expires exactly when that counter does;
// on a sliding window, one that expires before that plus the window, which
// a counter made after it ended never does (one made again after a lockout
// or a reset cleared it may). On the
// others (memcached, Redis without the option) a plain
// decrement lands on whatever counter holds the key, so on a fixed window
// it is not sent when the counter may end before it lands (within the
// call's deadline): the reservation then counts until its counter ends,
// moments later. On a sliding window there it is always sent (skipped, its
// count would stay for a whole window once a failure refreshed the
// counter), so an attempt in flight when a counter ends can still take a
// count from the next one. An attempt reserved in an outage's fallback
// since written back gives nothing back. If the key was reset (a success,
// a lockout) and reserved again before a give-back lands, the give-back
// cancels one reservation of the new counter. Lockouts last far longer
// than a round trip, so this needs a success on the key in that time.
//
// Lockout history is a counter that expires HistoryWindow after the latest
// lockout, not a log of lockout times: a key that keeps offending within the
// window keeps escalating.
package lockout

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reason says why an attempt was refused.
type Reason uint8

// The reasons for a refusal.
const (
	// ReasonLocked: a rule key is locked out.
	ReasonLocked Reason = iota + 1
	// ReasonCapacity: every attempt a rule key allows is already taken by
	// attempts not yet reported (in flight, or abandoned).
	ReasonCapacity
	// ReasonDenylisted: the IP or username is on a deny list.
	ReasonDenylisted
	// ReasonUnavailable: the store failed or timed out and the policy
	// fails closed, or the fallback that decides during an outage is full.
	ReasonUnavailable
)

// String returns the reason's name.
func (r Reason) String() string {
	switch r {
	case ReasonLocked:
		return "locked"
	case ReasonCapacity:
		return "capacity"
	case ReasonDenylisted:
		return "denylisted"
	case ReasonUnavailable:
		return "backend unavailable"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Errors for errors.Is. Every refusal is a *RefusedError that matches
// ErrRefused and the sentinel of its Reason.
var (
	ErrRefused     = errors.New("lockout: attempt refused")
	ErrLocked      = errors.New("lockout: locked out")
	ErrCapacity    = errors.New("lockout: too many attempts in flight")
	ErrDenylisted  = errors.New("lockout: denylisted")
	ErrUnavailable = errors.New("lockout: backend unavailable")

	// ErrReported is returned when an attempt's outcome is reported twice.
	ErrReported = errors.New("lockout: attempt already reported")

	// ErrClosed is wrapped by the errors of calls made after Policy.Close.
	ErrClosed = errors.New("lockout: policy is closed")
)

// RefusedError is the error of a refused attempt.
type RefusedError struct {
	// Reason says why: a lock, every slot taken, a deny list, or the
	// store being unavailable.
	Reason Reason
	// Rule is the name of the rule that refused, for ReasonLocked and
	// ReasonCapacity: the one with the longest wait when several did.
	Rule string
	// Key is that rule's subject part, e.g. "u=alice,ip=192.0.2.1".
	Key string
	// RetryAfter is how long until the attempt may be admitted again; zero
	// when unknown (denylisted, unavailable) or Forever.
	RetryAfter time.Duration
	// Forever is set when the lock never ends by itself.
	Forever bool
	// Err is the backend's error, for ReasonUnavailable.
	Err error
	// Fallback is set when the in-process fallback store decided the
	// refusal, because the store was failing.
	Fallback bool
	// Remembered is set when the policy refused from a lock it remembered
	// (see Config.LockCacheTTL), without a backend call.
	Remembered bool
}

// Error implements error.
func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("lockout: attempt refused: ")
	b.WriteString(e.Reason.String())
	if e.Rule != "" {
		fmt.Fprintf(&b, " by rule %s", e.Rule)
	}
	switch {
	case e.Forever:
		b.WriteString(", until unlocked")
	case e.RetryAfter > 0:
		fmt.Fprintf(&b, ", retry after %v", e.RetryAfter.Round(time.Millisecond))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Is reports whether target is ErrRefused or the sentinel of e's Reason.
func (e *RefusedError) Is(target error) bool {
	switch target {
	case ErrRefused:
		return true
	case ErrLocked:
		return e.Reason == ReasonLocked
	case ErrCapacity:
		return e.Reason == ReasonCapacity
	case ErrDenylisted:
		return e.Reason == ReasonDenylisted
	case ErrUnavailable:
		return e.Reason == ReasonUnavailable
	}
	return false
}

// Unwrap returns the backend's error, if any.
func (e *RefusedError) Unwrap() error { return e.Err }
