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
// Outage. Every decision runs under Config.Timeout. When the backend fails
// or times out, the policy admits the attempt (the default: fail open) or
// refuses it with ErrUnavailable (Config.FailClosed), and reports the error
// to Hooks.BackendError and the logger. Before it fails open, it reads the
// lock markers alone, in one more call: a store that cannot take a
// reservation (a full one) can often still be read, and a lock it holds is
// still honoured.
//
// # Backend calls per decision
//
//	step                        calls
//	permission, admitted        1
//	refused (locked)            2   (0 when denylisted)
//	failure that does not lock  0   (1 with a sliding window)
//	failure that locks          2
//	success                     1
//
// # Caveats
//
// A refused attempt's give-back is applied to whatever counter holds the key
// when it lands. If the key was reset (a success, a lockout) and reserved
// again within that one round trip, the give-back cancels one reservation of
// the new counter. Lockouts last far longer than a round trip, so this needs
// a success on the key in that window.
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
	// ReasonUnavailable: the backend failed or timed out and the policy
	// fails closed.
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
)

// RefusedError is the error of a refused attempt.
type RefusedError struct {
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
