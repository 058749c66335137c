// Package lockoutotel turns the events of a lockout policy into
// OpenTelemetry metrics and traces. It is a module of its own
// (github.com/go-lockout/lockout/lockoutotel), so that importing the
// lockout library pulls in no OpenTelemetry or Prometheus module.
//
// Wiring it takes one Observer, set as the policy's observer. It reports
// its metrics in one of two ways. As a Producer (Options.Producer), given
// to the reader or exporter, the cheapest:
//
//	obs, err := lockoutotel.New(&lockoutotel.Options{Producer: true, TracerProvider: tp})
//	if err != nil { ... }
//	exporter, err := otelprom.New(otelprom.WithProducer(obs)) // or sdkmetric.WithProducer(obs) on any reader
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
//	policy, err := lockout.New(store, lockout.Config{Rules: rules, Observer: obs})
//
// Or through the instruments of a MeterProvider (the global one by
// default), for a MeterProvider whose readers you do not make:
//
//	obs, err := lockoutotel.New(&lockoutotel.Options{MeterProvider: mp, TracerProvider: tp})
//
// An application that hears the events itself too can chain observers in
// an ObserverFunc; to keep the decision spans and durations, its observer
// must then be a lockout.DecisionObserver that passes StartDecision and
// EndDecision on to this one.
//
// # Metrics
//
// A Producer reports the same metrics as the instruments would, always
// cumulative, whatever temporality the reader prefers.
// Every instrument carries Options.Attributes too. The Prometheus exporter
// turns dots into underscores and adds the unit and a _total suffix
// (lockout.decisions: lockout_decisions_total; lockout.decision.duration:
// lockout_decision_duration_seconds).
//
//	name                       instrument                unit        attributes
//	lockout.decisions          Counter (asynchronous)    {decision}  lockout.outcome (admitted, refused, success,
//	                                                                 failure), lockout.fallback, and for refusals
//	                                                                 lockout.reason (locked, capacity, denylisted,
//	                                                                 unavailable) and lockout.rule (when a rule refused)
//	lockout.lockouts           Counter (asynchronous)    {lockout}   lockout.rule, lockout.fallback
//	lockout.store.errors       Counter (asynchronous)    {error}     error.type (timeout, full, closed, _OTHER)
//	lockout.journal.dropped    Counter (asynchronous)    {record}    none
//	lockout.journal.unrecorded Counter (asynchronous)    {attempt}   none: refusals over the journal's bound on them
//	lockout.operator.actions   Counter (asynchronous)    {action}    lockout.action (unlock, reset)
//	lockout.degraded           UpDownCounter (async.)    {policy}    none: 1 while the policy's store fails and the
//	                                                                 in-process fallback decides, 0 otherwise
//	lockout.decision.duration  Histogram                 s           lockout.outcome (admitted, refused, error),
//	                                                                 error.type (with error)
//	lockout.store.duration     Histogram                 s           error.type (when the call failed)
//
// lockout.decisions counts each Allow once (admitted or refused) and each
// reported outcome once (success or failure). An Allow that fails with
// another error (an invalid subject, a closed policy, the caller's context
// ending) is no decision: it shows in lockout.decision.duration only, with
// lockout.outcome "error". lockout.decision.duration measures Allow, the
// wait a login has before its password is checked; Success and Failure
// are timed by their spans, and their store calls by
// lockout.store.duration. The histograms' buckets are DurationBuckets:
// 1 µs to 5 s. The store histogram and error counter cover calls to the
// store, not to the in-process fallback of degraded mode. A counter's
// series appears once it counts something; lockout.degraded is always
// reported.
//
// # Traces
//
// One span per decision (lockout.allow, lockout.success, lockout.failure),
// a child span per store call (lockout.store); see Observer. Spans never
// carry the raw username, IP address or user agent, nor rule keys (which
// hold them), unless Options.SubjectAttributes asks for them.
//
// # Cost
//
// Without tracing (a noop.TracerProvider) the Observer allocates nothing
// per decision: its attribute sets are built once, its counters are
// atomic integers of its own, and a decision (Allow then Failure) makes
// two histogram measurements. As a Producer those are a few atomic
// additions in buckets of its own; through a MeterProvider they are the
// SDK's synchronous histogram, about 150 ns each, more when cores measure
// at once. Recording spans costs more: a few allocations per span.
// BenchmarkObserver measures it against a plain policy, on the memory
// store and on Redis; the README gives the numbers.
package lockoutotel
