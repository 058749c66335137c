package lockout

import (
	"context"
	"time"
)

// An Operation names the call that makes a decision, for a
// DecisionObserver.
type Operation uint8

// The operations that make decisions.
const (
	// OpAllow is Policy.Allow (and the first half of Policy.Check).
	OpAllow Operation = iota + 1
	// OpSuccess is Attempt.Success.
	OpSuccess
	// OpFailure is Attempt.Failure.
	OpFailure
)

// String returns the operation's name: "allow", "success", "failure".
func (o Operation) String() string {
	switch o {
	case OpAllow:
		return "allow"
	case OpSuccess:
		return "success"
	case OpFailure:
		return "failure"
	}
	return "unknown"
}

// A DecisionObserver is an Observer that also hears each decision start
// and end, and each store call: what latency histograms and traces need
// (package lockoutotel, a module of its own, is one). The policy finds it
// by a type assertion on Config.Observer when New runs, as it finds the
// optional capabilities of a store.
//
// A decision is one call of Allow, Attempt.Success or Attempt.Failure (a
// second report, which returns ErrReported, too). The policy calls
// StartDecision first, and makes the decision with the context it returns:
// the decision's store calls, its events (Observe) and the hooks get that
// context. When the decision returns, the policy calls EndDecision with
// that context, how long the decision took and the error it returns (a
// *RefusedError for a refusal, nil for an admission or a report that went
// through).
//
// A DecisionObserver also hears EventStoreCall events, which other
// observers do not: one for each call to the store (not to the
// in-process fallback of degraded mode), when it returns. Store calls made
// outside decisions (an operator's unlock or reset, the write-back that
// ends degraded mode) are reported too, with their own context.
//
// Like Observe, both methods are called synchronously, on the decision's
// goroutine: they must be quick. A policy without a DecisionObserver reads
// no clock for them.
type DecisionObserver interface {
	Observer
	// StartDecision is called when a decision starts, and returns the
	// context the decision runs with: ctx, or one derived from it.
	StartDecision(ctx context.Context, op Operation) context.Context
	// EndDecision is called when the decision returns, with the context
	// StartDecision returned.
	EndDecision(ctx context.Context, op Operation, took time.Duration, err error)
}
