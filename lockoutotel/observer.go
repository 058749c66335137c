package lockoutotel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// ScopeName is the instrumentation scope of the meter and tracer an
// Observer uses.
const ScopeName = "github.com/go-lockout/lockout/lockoutotel"

// Attribute keys of the measurements and spans.
const (
	// OutcomeKey: admitted, refused, success, failure; "error" for a
	// decision that returned another error (lockout.decision.duration).
	OutcomeKey = attribute.Key("lockout.outcome")
	// ReasonKey: why an attempt was refused: locked, capacity,
	// denylisted, unavailable.
	ReasonKey = attribute.Key("lockout.reason")
	// RuleKey: the rule that refused, or that locked.
	RuleKey = attribute.Key("lockout.rule")
	// FallbackKey: whether the in-process fallback decided, because the
	// store was failing.
	FallbackKey = attribute.Key("lockout.fallback")
	// OperationKey: the call that made a decision: allow, success,
	// failure.
	OperationKey = attribute.Key("lockout.operation")
	// ActionKey: an operator's action: unlock, reset.
	ActionKey = attribute.Key("lockout.action")
	// ErrorTypeKey is OpenTelemetry's error.type: timeout, canceled,
	// full, closed, invalid_subject, reported, or _OTHER.
	ErrorTypeKey = attribute.Key("error.type")
)

// DurationBuckets are the bucket boundaries, in seconds, of the duration
// histograms: from 1 µs (a decision on the memory store) to 5 s (well past
// the policy's default deadline of 500 ms).
var DurationBuckets = []float64{
	0.000001, 0.0000025, 0.000005,
	0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5,
}

// Options configure an Observer. The zero value (or nil) uses the global
// providers.
type Options struct {
	// MeterProvider makes the instruments. Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider makes the spans. Default otel.GetTracerProvider().
	// A noop.TracerProvider turns tracing off: the Observer then costs a
	// decision no context and no span.
	TracerProvider trace.TracerProvider
	// Attributes are added to every measurement and span, to tell
	// several policies apart (attribute.String("lockout.policy",
	// "admin-login")). Keep them few and of low cardinality.
	Attributes []attribute.KeyValue
	// SubjectAttributes puts the subject on the decision spans: the
	// canonical username (user.name), the client address
	// (client.address), the user agent (user_agent.original), and, on
	// lockout and refusal, the rule key (lockout.key, which holds them).
	// Off by default: they are personal data, and traces are often kept
	// longer and more widely than a lockout store. Metrics never carry
	// them.
	SubjectAttributes bool
}

// Observer is a lockout.DecisionObserver that turns a policy's events into
// OpenTelemetry metrics and spans. Set it as lockout.Config.Observer; one
// Observer may serve several policies (their measurements add up; tell
// them apart with Options.Attributes). It is safe for concurrent use.
//
// The instruments are listed in the package documentation. Spans: one per
// decision, named lockout.allow, lockout.success or lockout.failure, with
// the attributes lockout.outcome, lockout.reason, lockout.rule and
// lockout.fallback, an event per lockout, and an error status (with
// error.type) when the decision returns an error other than a refusal;
// under it, one lockout.store span (kind client) per store call, with
// lockout.store.operations, the store's error recorded when it failed.
// Store-call spans are made when the call has returned, with its start and
// end times; they are made only under a recording span.
type Observer struct {
	tracer  trace.Tracer // nil: no tracing
	subject bool

	decisions, lockouts, storeErrors, journalDropped, actions metric.Int64Counter
	degraded                                                  metric.Int64UpDownCounter
	decisionDuration, storeDuration                           metric.Float64Histogram

	base    []attribute.KeyValue
	baseAdd []metric.AddOption

	// Precomputed measurement options for the common cases.
	outcome      [lockout.EventFailure + 1][2]*opts // [kind][fallback]
	decided      [lockout.OpFailure + 1]*opts       // decision.duration, no error
	refusedDur   *opts
	storeOK      *opts
	spanStart    [lockout.OpFailure + 1][]trace.SpanStartOption
	storeSpan    []trace.SpanStartOption
	cache        optCache
	outcomeAttrs [lockout.EventFailure + 1]attribute.KeyValue
}

// opts are the options of one measurement with one attribute set.
type opts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newOpts(kvs ...attribute.KeyValue) *opts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return &opts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// optKey names an attribute set that depends on the event: a refusal's
// rule, a lockout's rule, an error's type.
type optKey struct {
	what     uint8 // which measurement
	reason   lockout.Reason
	op       lockout.Operation
	fallback bool
	rule     string
	name     string // error.type, or an operator's action
}

// Measurements of optKey.what.
const (
	optRefused uint8 = iota + 1
	optLockout
	optDecisionErr
	optStoreErr
	optAction
)

// optCacheMax bounds the attribute sets cached; past it, sets are built
// for each measurement (a policy's rules are few: it is not expected).
const optCacheMax = 4096

// optCache is a copy-on-write map of attribute sets: lookups take no lock.
type optCache struct {
	m  atomic.Pointer[map[optKey]*opts]
	mu sync.Mutex
}

// opts returns the options of the measurement k names.
func (o *Observer) opts(k optKey) *opts {
	if m := o.cache.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	return o.cache.add(k, o.build)
}

// build returns the options of the measurement k names.
func (o *Observer) build(k optKey) *opts {
	switch k.what {
	case optRefused:
		kvs := o.attrs(o.outcomeAttrs[lockout.EventRefused], ReasonKey.String(reasonName(k.reason)), FallbackKey.Bool(k.fallback))
		if k.rule != "" {
			kvs = append(kvs, RuleKey.String(k.rule))
		}
		return newOpts(kvs...)
	case optLockout:
		return newOpts(o.attrs(RuleKey.String(k.rule), FallbackKey.Bool(k.fallback))...)
	case optDecisionErr:
		return newOpts(o.attrs(OperationKey.String(k.op.String()), OutcomeKey.String("error"), ErrorTypeKey.String(k.name))...)
	case optStoreErr:
		return newOpts(o.attrs(ErrorTypeKey.String(k.name))...)
	default: // optAction
		return newOpts(o.attrs(ActionKey.String(k.name))...)
	}
}

// add returns the options of k, building and caching them.
func (c *optCache) add(k optKey, build func(optKey) *opts) *opts {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if o, ok := (*old)[k]; ok {
			return o
		}
		if len(*old) >= optCacheMax {
			return build(k)
		}
	}
	m := make(map[optKey]*opts, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	v := build(k)
	m[k] = v
	c.m.Store(&m)
	return v
}

func lenOf(m *map[optKey]*opts) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// New returns an Observer that makes its instruments with opts'
// MeterProvider and its spans with its TracerProvider.
func New(opts *Options) (*Observer, error) {
	if opts == nil {
		opts = &Options{}
	}
	mp, tp := opts.MeterProvider, opts.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o := &Observer{subject: opts.SubjectAttributes, base: append([]attribute.KeyValue(nil), opts.Attributes...)}
	if _, off := tp.(noop.TracerProvider); !off {
		o.tracer = tp.Tracer(ScopeName)
	}
	if err := o.instruments(mp.Meter(ScopeName)); err != nil {
		return nil, fmt.Errorf("lockoutotel: %w", err)
	}
	o.baseAdd = newOpts(o.base...).add
	for _, k := range []lockout.EventKind{lockout.EventAdmitted, lockout.EventRefused, lockout.EventSuccess, lockout.EventFailure} {
		o.outcomeAttrs[k] = OutcomeKey.String(k.String())
		for fb := range 2 {
			o.outcome[k][fb] = newOpts(o.attrs(o.outcomeAttrs[k], FallbackKey.Bool(fb == 1))...)
		}
	}
	for _, op := range []lockout.Operation{lockout.OpAllow, lockout.OpSuccess, lockout.OpFailure} {
		outcome := op.String()
		if op == lockout.OpAllow {
			outcome = "admitted"
		}
		o.decided[op] = newOpts(o.attrs(OperationKey.String(op.String()), OutcomeKey.String(outcome))...)
		o.spanStart[op] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(o.base...)}
	}
	o.refusedDur = newOpts(o.attrs(OperationKey.String("allow"), OutcomeKey.String("refused"))...)
	o.storeOK = newOpts(o.base...)
	o.storeSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(o.base...)}
	return o, nil
}

// attrs returns the base attributes followed by kvs, in a new slice.
func (o *Observer) attrs(kvs ...attribute.KeyValue) []attribute.KeyValue {
	return append(append(make([]attribute.KeyValue, 0, len(o.base)+len(kvs)), o.base...), kvs...)
}

func (o *Observer) instruments(m metric.Meter) error {
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		errs = append(errs, err)
		return h
	}
	o.decisions = counter("lockout.decisions", "{decision}", "Decisions made: attempts admitted or refused, outcomes reported.")
	o.lockouts = counter("lockout.lockouts", "{lockout}", "Rule keys locked out.")
	o.storeErrors = counter("lockout.store.errors", "{error}", "Store calls that failed (the caller giving up is not counted).")
	o.journalDropped = counter("lockout.journal.dropped", "{record}", "Journal records dropped: queue full, or the journal's store failed.")
	o.actions = counter("lockout.operator.actions", "{action}", "Operators' unlocks and resets.")
	var err error
	o.degraded, err = m.Int64UpDownCounter("lockout.degraded", metric.WithUnit("{policy}"),
		metric.WithDescription("Policies in degraded mode: their store fails and the in-process fallback decides."))
	errs = append(errs, err)
	o.decisionDuration = histogram("lockout.decision.duration", "Time a decision took: Allow, Success or Failure.")
	o.storeDuration = histogram("lockout.store.duration", "Time a call to the store took.")
	return errors.Join(errs...)
}

// Observe turns e into measurements, and into span attributes and events
// of the decision it belongs to.
func (o *Observer) Observe(ctx context.Context, e lockout.Event) {
	switch e.Kind {
	case lockout.EventAdmitted, lockout.EventSuccess, lockout.EventFailure:
		o.decisions.Add(ctx, 1, o.outcome[e.Kind][b2i(e.Fallback)].add...)
		if o.tracer != nil {
			o.annotate(ctx, &e)
		}
	case lockout.EventRefused:
		k := optKey{what: optRefused, reason: e.Reason, rule: e.Rule, fallback: e.Fallback}
		o.decisions.Add(ctx, 1, o.opts(k).add...)
		if o.tracer != nil {
			o.annotate(ctx, &e)
		}
	case lockout.EventLockout:
		k := optKey{what: optLockout, rule: e.Rule, fallback: e.Fallback}
		o.lockouts.Add(ctx, 1, o.opts(k).add...)
		if o.tracer != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				kvs := []attribute.KeyValue{RuleKey.String(e.Rule), attribute.Int64("lockout.count", e.Count),
					attribute.Bool("lockout.forever", e.Duration == lockout.Forever)}
				if e.Duration != lockout.Forever {
					kvs = append(kvs, attribute.Float64("lockout.duration", e.Duration.Seconds()))
				}
				if o.subject {
					kvs = append(kvs, attribute.String("lockout.key", e.Key))
				}
				span.AddEvent("lockout", trace.WithAttributes(kvs...), trace.WithTimestamp(e.Time))
			}
		}
	case lockout.EventStoreCall:
		o.storeCall(ctx, &e)
	case lockout.EventDegraded:
		o.degraded.Add(ctx, 1, o.baseAdd...)
		if o.tracer != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.AddEvent("degraded", trace.WithTimestamp(e.Time))
			}
		}
	case lockout.EventRecovered:
		o.degraded.Add(ctx, -1, o.baseAdd...)
	case lockout.EventJournalDropped:
		o.journalDropped.Add(ctx, e.Count, o.baseAdd...)
	case lockout.EventUnlock, lockout.EventReset:
		o.actions.Add(ctx, 1, o.opts(optKey{what: optAction, name: e.Kind.String()}).add...)
	}
}

// storeCall measures a store call, and makes its span under the decision's.
func (o *Observer) storeCall(ctx context.Context, e *lockout.Event) {
	m := o.storeOK
	var errType string
	if e.Err != nil {
		errType = errorType(e.Err)
		m = o.opts(optKey{what: optStoreErr, name: errType})
		if ctx.Err() == nil { // the caller giving up is not the store's failure
			o.storeErrors.Add(ctx, 1, m.add...)
		}
	}
	o.storeDuration.Record(ctx, e.Latency.Seconds(), m.rec...)
	if o.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	_, span := o.tracer.Start(ctx, "lockout.store", append(o.storeSpan[:len(o.storeSpan):len(o.storeSpan)],
		trace.WithTimestamp(e.Time), trace.WithAttributes(attribute.Int64("lockout.store.operations", e.Count)))...)
	if e.Err != nil {
		span.SetAttributes(ErrorTypeKey.String(errType))
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, e.Err.Error())
	}
	span.End(trace.WithTimestamp(e.Time.Add(e.Latency)))
}

// annotate sets the attributes of a decision's event on its span.
func (o *Observer) annotate(ctx context.Context, e *lockout.Event) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	kvs := make([]attribute.KeyValue, 0, 8)
	kvs = append(kvs, o.outcomeAttrs[e.Kind], FallbackKey.Bool(e.Fallback))
	if e.Kind == lockout.EventRefused {
		kvs = append(kvs, ReasonKey.String(reasonName(e.Reason)))
		if e.Rule != "" {
			kvs = append(kvs, RuleKey.String(e.Rule))
		}
		if e.RetryAfter == lockout.Forever {
			kvs = append(kvs, attribute.Bool("lockout.forever", true))
		} else if e.RetryAfter > 0 {
			kvs = append(kvs, attribute.Float64("lockout.retry_after", e.RetryAfter.Seconds()))
		}
	}
	if o.subject {
		if e.Subject.Username != "" {
			kvs = append(kvs, attribute.String("user.name", e.Subject.Username))
		}
		if e.Subject.IP != "" {
			kvs = append(kvs, attribute.String("client.address", e.Subject.IP))
		}
		if e.Subject.UserAgent != "" {
			kvs = append(kvs, attribute.String("user_agent.original", e.Subject.UserAgent))
		}
		if e.Key != "" {
			kvs = append(kvs, attribute.String("lockout.key", e.Key))
		}
	}
	span.SetAttributes(kvs...)
}

// StartDecision starts the decision's span, unless tracing is off.
func (o *Observer) StartDecision(ctx context.Context, op lockout.Operation) context.Context {
	if o.tracer == nil || op > lockout.OpFailure {
		return ctx
	}
	ctx, _ = o.tracer.Start(ctx, spanNames[op], o.spanStart[op]...)
	return ctx
}

var spanNames = [...]string{lockout.OpAllow: "lockout.allow", lockout.OpSuccess: "lockout.success", lockout.OpFailure: "lockout.failure"}

// EndDecision records the decision's duration, and ends its span.
func (o *Observer) EndDecision(ctx context.Context, op lockout.Operation, took time.Duration, err error) {
	var m *opts
	var errType string
	switch {
	case err == nil && op <= lockout.OpFailure:
		m = o.decided[op]
	case errors.Is(err, lockout.ErrRefused):
		m = o.refusedDur
	default:
		errType = errorType(err)
		m = o.opts(optKey{what: optDecisionErr, op: op, name: errType})
	}
	o.decisionDuration.Record(ctx, took.Seconds(), m.rec...)
	if o.tracer == nil || op > lockout.OpFailure {
		return
	}
	span := trace.SpanFromContext(ctx)
	if errType != "" && span.IsRecording() {
		span.SetAttributes(ErrorTypeKey.String(errType))
		span.SetStatus(codes.Error, errType) // the message may name the subject
	}
	span.End()
}

// errorType returns the error.type of err.
func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, backend.ErrFull):
		return "full"
	case errors.Is(err, lockout.ErrClosed), errors.Is(err, backend.ErrClosed):
		return "closed"
	case errors.Is(err, lockout.ErrInvalidSubject):
		return "invalid_subject"
	case errors.Is(err, lockout.ErrReported):
		return "reported"
	}
	return "_OTHER"
}

// reasonName returns the lockout.reason of r.
func reasonName(r lockout.Reason) string {
	switch r {
	case lockout.ReasonLocked:
		return "locked"
	case lockout.ReasonCapacity:
		return "capacity"
	case lockout.ReasonDenylisted:
		return "denylisted"
	case lockout.ReasonUnavailable:
		return "unavailable"
	}
	return "unknown"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

var _ lockout.DecisionObserver = (*Observer)(nil)
