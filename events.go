package lockout

import (
	"context"
	"time"
)

// An Observer hears every event of a policy: each decision and outcome,
// lockouts, operators' unlocks and resets, and changes of degraded mode. It
// is called synchronously, on the goroutine of the decision (or of the
// background probe, for the end of degraded mode), so it must be quick: hand
// slow work, such as sending an email, to another goroutine. A policy with
// no observer builds no events at all.
type Observer interface {
	// Observe is told of e, on the goroutine of the decision or operator
	// action that made it: it must be quick, and must not block.
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of event.
const (
	// EventAdmitted: an attempt may go ahead (Allow returned an Attempt).
	EventAdmitted EventKind = iota + 1
	// EventRefused: an attempt was refused; Reason, Rule, Key and
	// RetryAfter say why and for how long.
	EventRefused
	// EventSuccess and EventFailure: an admitted attempt's outcome.
	EventSuccess
	EventFailure
	// EventLockout: a rule key was locked, for Duration (Forever: until
	// unlocked); Count is its lockouts within the history window, this
	// one included (not a count of failures). Subject is the attempt that
	// locked it: for a rule without the username (an IP rule), whatever
	// username that attempt named, whose account is not locked. Tell a
	// user about a lockout only for a rule keyed by the username alone.
	EventLockout
	// EventUnlock and EventReset: an operator lifted locks, or reset a
	// subject. Operator and Via say who, and through which interface.
	EventUnlock
	EventReset
	// EventDegraded: the store failed (Err) and the fallback decides.
	// EventRecovered: degraded mode ends after Duration: the store
	// answers again, or the policy was closed while degraded (Err then
	// wraps ErrClosed and the error that started degraded mode).
	EventDegraded
	EventRecovered
	// EventJournalDropped: Count journal records were dropped, because the
	// journal's queue was full, its store failed, or the policy was
	// closed. Count is the drops since the last report, reported at most
	// once per 10 s and, while the policy is open, at most 10 s late (the
	// drops of records made after Close, at their next drop 10 s on, or
	// in JournalStats only). Err is the latest drop's error (the store's,
	// or ErrClosed), nil when only the queue was full.
	EventJournalDropped
	// EventStoreCall: a call to the store, of Count operations, started at
	// Time, took Latency and failed with Err (nil: it succeeded). Only a
	// DecisionObserver hears it.
	EventStoreCall
	// EventJournalUnrecorded: Count refused attempts were not recorded in
	// the journal, over JournalConfig.RefusedPerSecond: a flood of
	// refusals, which the journal keeps only a sample of. Count is those
	// since the last report, reported every 10 s while there are new
	// ones and the policy is open (JournalStats.Unrecorded counts them
	// all).
	EventJournalUnrecorded
)

var eventNames = [...]string{
	EventAdmitted:       "admitted",
	EventRefused:        "refused",
	EventSuccess:        "success",
	EventFailure:        "failure",
	EventLockout:        "lockout",
	EventUnlock:         "unlock",
	EventReset:          "reset",
	EventDegraded:       "degraded",
	EventRecovered:      "recovered",
	EventJournalDropped: "journal_dropped",
	EventStoreCall:      "store_call",

	EventJournalUnrecorded: "journal_unrecorded",
}

// String returns the kind's name: "admitted", "refused", "success",
// "failure", "lockout", "unlock", "reset", "degraded", "recovered",
// "journal_dropped", "store_call", "journal_unrecorded".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one thing that happened in a policy. Which fields are set
// depends on Kind.
type Event struct {
	// Kind says what happened; the fields below that apply to it are set.
	Kind EventKind
	// Time is when it happened: for a decision's events (admitted,
	// refused, success, failure), during the decision, at its start when
	// a DecisionObserver measures it.
	Time time.Time
	// Subject is the attempt's subject as the policy counts it: the
	// username canonical, the IP address in its canonical form. For an
	// operator's unlock or reset, the subject given (UnlockKey: the
	// fields the key holds).
	Subject Subject
	// Rule and Key (the rule key's subject part, "u=alice") name the rule
	// key that refused, or that was locked or unlocked.
	Rule, Key string
	// Reason and RetryAfter describe a refusal (Forever: until unlocked).
	Reason     Reason
	RetryAfter time.Duration
	// Duration is a lockout's length (Forever: until unlocked), or how
	// long degraded mode lasted.
	Duration time.Duration
	// Count is a lockout's number within the key's history window, the
	// locks an unlock or a subject's reset lifted, the keys a reset of
	// everything removed (Key "*"), the number of journal records
	// dropped, or a store call's operations.
	Count int64
	// Latency is how long a store call took.
	Latency time.Duration
	// Fallback is set when the in-process fallback decided, because the
	// store was failing.
	Fallback bool
	// Operator and Via say who made an unlock or reset and through which
	// interface, as WithOperator put them in the context.
	Operator, Via string
	// Err is the store error that started degraded mode, that made
	// journal records drop, or that a store call returned.
	Err error
}

type operatorKey struct{}

type operatorID struct{ name, via string }

// WithOperator returns a context that names the operator behind the
// unlocks and resets made with it, and the interface they use ("http",
// "cli", "api"): events and journal records of those actions carry them.
// lockouthttp and the command-line tool set it from their authorizer.
func WithOperator(ctx context.Context, operator, via string) context.Context {
	return context.WithValue(ctx, operatorKey{}, operatorID{operator, via})
}

// OperatorFrom returns what WithOperator put in ctx: empty strings when
// nothing.
func OperatorFrom(ctx context.Context) (operator, via string) {
	id, _ := ctx.Value(operatorKey{}).(operatorID)
	return id.name, id.via
}

// subject returns c as a Subject, for events.
func (c *canonical) subject() Subject {
	return Subject{Username: c.username, IP: c.ipString(), UserAgent: c.userAgent, Fields: c.fields}
}

// observe tells the observer about e, and the journal when e is one of
// what it records. Callers check p.watched() first, so that a policy with
// neither builds no event.
func (p *Policy) observe(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = p.wallNow()
	}
	if p.observer != nil {
		p.observer.Observe(ctx, e)
	}
	if p.journal != nil {
		p.journal.record(ctx, &e)
	}
}

// watched reports whether events are heard: by an observer or a journal.
func (p *Policy) watched() bool { return p.observer != nil || p.journal != nil }
