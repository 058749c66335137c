package lockoutotel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
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
	// OutcomeKey: admitted, refused, success, failure; "error" for an
	// Allow that returned another error (lockout.decision.duration).
	OutcomeKey = attribute.Key("lockout.outcome")
	// ReasonKey: why an attempt was refused: locked, capacity,
	// denylisted, unavailable.
	ReasonKey = attribute.Key("lockout.reason")
	// RuleKey: the rule that refused, or that locked.
	RuleKey = attribute.Key("lockout.rule")
	// FallbackKey: whether the in-process fallback decided, because the
	// store was failing.
	FallbackKey = attribute.Key("lockout.fallback")
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
	// lockout and refusal, the rule key (lockout.key, which holds them);
	// and on a failed store call's span, the store's error message (it
	// may quote a key).
	// The username and the user agent are cut to MaxSubjectAttrBytes,
	// and made valid UTF-8.
	// Off by default: they are personal data, and traces are often kept
	// longer and more widely than a lockout store. Metrics never carry
	// them.
	SubjectAttributes bool
	// Producer makes the Observer report its metrics itself, as an
	// OpenTelemetry SDK metric Producer (its Produce method), instead of
	// through MeterProvider's instruments: hand it to the reader, with
	// sdkmetric.WithProducer, or to the Prometheus exporter, with
	// otelprom.WithProducer. MeterProvider is then unused. Same metrics,
	// cumulative; what changes is the cost: the SDK has no asynchronous
	// histogram, and its synchronous one costs a decision two
	// measurements of some 150 ns each (more when cores measure at once),
	// where the Observer's own buckets cost a few atomic additions.
	Producer bool
}

// Observer is a lockout.DecisionObserver that turns a policy's events into
// OpenTelemetry metrics and spans. Set it as lockout.Config.Observer; one
// Observer may serve several policies (their measurements add up; tell
// them apart with Options.Attributes, or give each an Observer of its own
// with different Attributes). It is safe for concurrent use.
//
// The instruments are listed in the package documentation. Its counters
// are asynchronous: the Observer counts in atomic integers of its own, and
// reports their totals when the metrics are collected, which costs a
// decision far less than a synchronous counter does. Two Observers on one
// MeterProvider (or reader) must have different Options.Attributes, or
// their totals would report the same series twice. With
// Options.Producer, the histograms too are the Observer's own, and
// Produce reports everything.
//
// Spans: one per decision, named lockout.allow, lockout.success or
// lockout.failure, with the attributes lockout.outcome, lockout.reason,
// lockout.rule and lockout.fallback, an event per lockout, and an error
// status (with error.type) when the decision returns an error other than
// a refusal; under it, one lockout.store span (kind client) per store
// call, with lockout.store.operations and, when it failed, error.type (the
// store's error message, which may quote a key, only with
// Options.SubjectAttributes). Store-call spans are made when the call has
// returned, with its start and end times, and only under a recording span.
type Observer struct {
	tracer  trace.Tracer // nil: no tracing
	subject bool

	decisionDuration, storeDuration metric.Float64Histogram
	counters                        [nCounters]metric.Int64ObservableCounter
	degradedGauge                   metric.Int64ObservableUpDownCounter
	registration                    metric.Registration

	base    []attribute.KeyValue
	baseSet attribute.Set
	baseObs metric.ObserveOption

	// Producer mode: the metrics are the Observer's own, reported by
	// Produce; the histograms' bucket boundaries in nanoseconds.
	producer     bool
	start        time.Time
	bounds       []float64
	boundsNS     []int64
	unregistered atomic.Bool

	// The counters' cells, and the histograms' series, by key.
	cells cowMap[*cell]
	recs  cowMap[*series]
	// The common cases, looked up without a map.
	outcome  [lockout.EventFailure + 1][2]*cell // decisions: [kind][fallback]
	dropped  *cell
	unrec    *cell // journal.unrecorded
	degraded atomic.Int64
	admitted *series // decision.duration
	refused  *series
	storeOK  *series // store.duration

	spanStart    [lockout.OpFailure + 1][]trace.SpanStartOption
	storeSpan    []trace.SpanStartOption
	outcomeAttrs [lockout.EventFailure + 1]attribute.KeyValue
}

// The counters, by index in Observer.counters and key.what.
const (
	cDecisions = iota
	cLockouts
	cStoreErrors
	cJournalDropped
	cJournalUnrecorded
	cActions
	nCounters
	// Keys of Observer.recs: a series of lockout.decision.duration (name:
	// the outcome, or "error" and the error's type in reason's place) or
	// of lockout.store.duration (name: the error's type, "" for none).
	rDecision
	rStore
)

// instrument describes an instrument.
type instrument struct{ name, unit, desc string }

// The instruments, the counters' by index in Observer.counters.
var (
	counterInstruments = [nCounters]instrument{
		cDecisions:         {"lockout.decisions", "{decision}", "Decisions made: attempts admitted or refused, outcomes reported."},
		cLockouts:          {"lockout.lockouts", "{lockout}", "Rule keys locked out."},
		cStoreErrors:       {"lockout.store.errors", "{error}", "Store calls that failed (the caller giving up is not counted)."},
		cJournalDropped:    {"lockout.journal.dropped", "{record}", "Journal records dropped: queue full, or the journal's store failed."},
		cJournalUnrecorded: {"lockout.journal.unrecorded", "{attempt}", "Refused attempts not recorded in the journal, over its bound on refusals' records."},
		cActions:           {"lockout.operator.actions", "{action}", "Operators' unlocks and resets."},
	}
	degradedInstrument = instrument{"lockout.degraded", "{policy}",
		"Policies in degraded mode: their store fails and the in-process fallback decides."}
	decisionInstrument = instrument{"lockout.decision.duration", "s", "Time Allow took to decide whether an attempt may go ahead."}
	storeInstrument    = instrument{"lockout.store.duration", "s", "Time a call to the store took."}
)

// cell is one series of a counter: the Observer adds to it, and reports its
// total when the metrics are collected. Its count is striped over cache
// lines, so that cores counting at once seldom share one.
type cell struct {
	stripes [cellStripes]struct {
		n atomic.Int64
		_ [56]byte
	}
	counter int
	attrs   attribute.Set
	opt     metric.ObserveOption
}

func newCell(counter int, kvs ...attribute.KeyValue) *cell {
	set := attribute.NewSet(kvs...)
	return &cell{counter: counter, attrs: set, opt: metric.WithAttributeSet(set)}
}

const cellStripes = 8

// add adds n to the cell, on the stripe of the caller's processor.
func (c *cell) add(n int64) { c.stripes[stripe()%cellStripes].n.Add(n) }

// stripes hands out stripe numbers through a sync.Pool, which gives a
// goroutine the one its processor (P) last put back: a processor keeps
// counting on the same cache lines, which then stay in its core's cache. A
// stripe picked at random would move a line between cores at about every
// other count. A number the pool drops (at a collection) is replaced by
// the next one: only the hint is lost.
var stripes = sync.Pool{New: func() any {
	// A pointer into stripeIDs: a token costs no allocation, even when
	// the pool drops them (as it does at random under the race detector).
	return &stripeIDs[uint64(nextStripe.Add(1)-1)%uint64(len(stripeIDs))]
}}

var (
	nextStripe atomic.Int64
	stripeIDs  = func() (ids [cellStripes * histStripes]int) {
		for i := range ids {
			ids[i] = i
		}
		return ids
	}()
)

// stripe returns the caller's processor's stripe number.
func stripe() int {
	p := stripes.Get().(*int)
	n := *p
	stripes.Put(p)
	return n
}

// load returns the cell's total.
func (c *cell) load() (n int64) {
	for i := range c.stripes {
		n += c.stripes[i].n.Load()
	}
	return n
}

// series is one series of a histogram: its attributes as the SDK
// histogram's option, or, in Producer mode, the Observer's own buckets.
type series struct {
	store bool // lockout.store.duration; else lockout.decision.duration
	attrs attribute.Set
	opts  []metric.RecordOption
	h     *hist
}

// record measures d.
func (o *Observer) record(ctx context.Context, s *series, d time.Duration) {
	if s.h != nil {
		s.h.record(o.boundsNS, int64(d))
		return
	}
	inst := o.decisionDuration
	if s.store {
		inst = o.storeDuration
	}
	inst.Record(ctx, d.Seconds(), s.opts...)
}

// hist is a histogram's series in Producer mode: bucket counts, sum, min
// and max, in nanoseconds, striped over cache lines like a cell's count.
// Stripe i is w[i*stride:]: the counts of len(boundsNS)+1 buckets, then
// the sum, the minimum and the maximum.
type hist struct {
	w      []atomic.Int64
	stride int
}

const histStripes = 8

func newHist(buckets int) *hist {
	stride := (buckets + 3 + 7) &^ 7 // whole cache lines
	h := &hist{w: make([]atomic.Int64, histStripes*stride), stride: stride}
	for i := range histStripes {
		h.w[i*stride+buckets+1].Store(math.MaxInt64)
		h.w[i*stride+buckets+2].Store(math.MinInt64)
	}
	return h
}

// record adds ns to the bucket of the first bound not below it (a value
// on a bound is in the bound's bucket, as in the SDK's histogram).
func (h *hist) record(bounds []int64, ns int64) {
	lo, hi := 0, len(bounds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bounds[m] < ns {
			lo = m + 1
		} else {
			hi = m
		}
	}
	w := h.w[stripe()%histStripes*h.stride:]
	n := len(bounds) + 1
	w[n].Add(ns)
	for v := w[n+1].Load(); ns < v && !w[n+1].CompareAndSwap(v, ns); v = w[n+1].Load() {
	}
	for v := w[n+2].Load(); ns > v && !w[n+2].CompareAndSwap(v, ns); v = w[n+2].Load() {
	}
	// The count last: point reads it first, so that a measurement it
	// counts has its sum, minimum and maximum in.
	w[lo].Add(1)
}

// point returns the histogram's data point.
func (h *hist) point(buckets int) (counts []uint64, count uint64, sum, lo, hi int64) {
	counts = make([]uint64, buckets)
	lo, hi = math.MaxInt64, math.MinInt64
	for i := range histStripes {
		w := h.w[i*h.stride:]
		for b := range buckets {
			c := uint64(w[b].Load())
			counts[b] += c
			count += c
		}
		sum += w[buckets].Load()
		lo, hi = min(lo, w[buckets+1].Load()), max(hi, w[buckets+2].Load())
	}
	return counts, count, sum, lo, hi
}

// key names a series whose attributes depend on the event: a refusal's
// rule and reason, a lockout's rule, an error's type, an action.
type key struct {
	what     uint8
	kind     lockout.EventKind
	reason   lockout.Reason
	fallback bool
	rule     string
	name     string // error.type, or an operator's action
}

// cowMapMax bounds the series a cowMap holds; past it, series are built
// for each measurement, and counted nowhere (a policy's rules are few: it
// is not expected).
const cowMapMax = 4096

// cowMap is a copy-on-write map: lookups take no lock.
type cowMap[V any] struct {
	m  atomic.Pointer[map[key]V]
	mu sync.Mutex
}

func (c *cowMap[V]) load(k key) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// add returns the value of k, built and stored if it is new.
func (c *cowMap[V]) add(k key, build func(key) V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		if len(*old) >= cowMapMax {
			return build(k)
		}
	}
	m := make(map[key]V, 1+lenOf(old))
	if old != nil {
		maps.Copy(m, *old)
	}
	v := build(k)
	m[k] = v
	c.m.Store(&m)
	return v
}

func lenOf[V any](m *map[key]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// cell returns the counter cell of k.
func (o *Observer) cell(k key) *cell {
	if c, ok := o.cells.load(k); ok {
		return c
	}
	return o.cells.add(k, o.newCell)
}

func (o *Observer) newCell(k key) *cell {
	var kvs []attribute.KeyValue
	switch k.what {
	case cDecisions:
		kvs = o.attrs(o.outcomeAttrs[lockout.EventRefused], FallbackKey.Bool(k.fallback), ReasonKey.String(reasonName(k.reason)))
		if k.rule != "" {
			kvs = append(kvs, RuleKey.String(k.rule))
		}
	case cLockouts:
		kvs = o.attrs(RuleKey.String(k.rule), FallbackKey.Bool(k.fallback))
	case cStoreErrors:
		kvs = o.attrs(ErrorTypeKey.String(k.name))
	case cActions:
		kvs = o.attrs(ActionKey.String(k.name))
	default:
		kvs = o.attrs()
	}
	return newCell(int(k.what), kvs...)
}

// series returns the histogram series of k.
func (o *Observer) series(k key) *series {
	if r, ok := o.recs.load(k); ok {
		return r
	}
	return o.recs.add(k, o.newSeries)
}

func (o *Observer) newSeries(k key) *series {
	var kvs []attribute.KeyValue
	switch {
	case k.what == rStore && k.name != "":
		kvs = o.attrs(ErrorTypeKey.String(k.name))
	case k.what == rStore:
		kvs = o.attrs()
	case k.name == "error":
		kvs = o.attrs(OutcomeKey.String("error"), ErrorTypeKey.String(k.rule))
	default:
		kvs = o.attrs(OutcomeKey.String(k.name))
	}
	s := &series{store: k.what == rStore, attrs: attribute.NewSet(kvs...)}
	if o.producer {
		s.h = newHist(len(o.bounds) + 1)
	} else {
		s.opts = []metric.RecordOption{metric.WithAttributeSet(s.attrs)}
	}
	return s
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
	o := &Observer{subject: opts.SubjectAttributes, base: slices.Clone(opts.Attributes), producer: opts.Producer}
	if _, off := tp.(noop.TracerProvider); !off {
		o.tracer = tp.Tracer(ScopeName)
	}
	o.baseSet = attribute.NewSet(o.base...)
	o.baseObs = metric.WithAttributeSet(o.baseSet)
	if o.producer {
		o.start = time.Now()
		o.bounds = slices.Clone(DurationBuckets)
		slices.Sort(o.bounds)
		for _, b := range o.bounds {
			o.boundsNS = append(o.boundsNS, int64(math.Round(b*1e9)))
		}
	}
	for _, k := range []lockout.EventKind{lockout.EventAdmitted, lockout.EventRefused, lockout.EventSuccess, lockout.EventFailure} {
		o.outcomeAttrs[k] = OutcomeKey.String(k.String())
	}
	for _, k := range []lockout.EventKind{lockout.EventAdmitted, lockout.EventSuccess, lockout.EventFailure} {
		for fb := range 2 {
			o.outcome[k][fb] = o.cells.add(key{what: cDecisions, kind: k, fallback: fb == 1}, func(key) *cell {
				return newCell(cDecisions, o.attrs(o.outcomeAttrs[k], FallbackKey.Bool(fb == 1))...)
			})
		}
	}
	o.dropped = o.cell(key{what: cJournalDropped})
	o.unrec = o.cell(key{what: cJournalUnrecorded})
	o.admitted = o.series(key{what: rDecision, name: "admitted"})
	for _, op := range []lockout.Operation{lockout.OpAllow, lockout.OpSuccess, lockout.OpFailure} {
		o.spanStart[op] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(o.base...)}
	}
	o.refused = o.series(key{what: rDecision, name: "refused"})
	o.storeOK = o.series(key{what: rStore})
	o.storeSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(o.base...)}
	if o.producer {
		return o, nil
	}
	if err := o.instruments(mp.Meter(ScopeName)); err != nil {
		return nil, fmt.Errorf("lockoutotel: %w", err)
	}
	return o, nil
}

// attrs returns the base attributes followed by kvs, in a new slice.
func (o *Observer) attrs(kvs ...attribute.KeyValue) []attribute.KeyValue {
	return append(append(make([]attribute.KeyValue, 0, len(o.base)+len(kvs)), o.base...), kvs...)
}

func (o *Observer) instruments(m metric.Meter) error {
	var errs []error
	histogram := func(in instrument) metric.Float64Histogram {
		h, err := m.Float64Histogram(in.name, metric.WithUnit(in.unit), metric.WithDescription(in.desc),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		errs = append(errs, err)
		return h
	}
	for i, in := range counterInstruments {
		c, err := m.Int64ObservableCounter(in.name, metric.WithUnit(in.unit), metric.WithDescription(in.desc))
		errs = append(errs, err)
		o.counters[i] = c
	}
	var err error
	o.degradedGauge, err = m.Int64ObservableUpDownCounter(degradedInstrument.name, metric.WithUnit(degradedInstrument.unit),
		metric.WithDescription(degradedInstrument.desc))
	errs = append(errs, err)
	o.decisionDuration = histogram(decisionInstrument)
	o.storeDuration = histogram(storeInstrument)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	observables := []metric.Observable{o.degradedGauge}
	for _, c := range o.counters {
		observables = append(observables, c)
	}
	o.registration, err = m.RegisterCallback(o.collect, observables...)
	return err
}

// collect reports the counters' totals.
func (o *Observer) collect(_ context.Context, obs metric.Observer) error {
	if m := o.cells.m.Load(); m != nil {
		for _, c := range *m {
			if n := c.load(); n != 0 {
				obs.ObserveInt64(o.counters[c.counter], n, c.opt)
			}
		}
	}
	obs.ObserveInt64(o.degradedGauge, o.degraded.Load(), o.baseObs)
	return nil
}

// Produce returns the Observer's metrics, cumulative since New, when
// Options.Producer is set (nothing otherwise): it makes the Observer an
// OpenTelemetry SDK metric Producer (go.opentelemetry.io/otel/sdk/metric).
func (o *Observer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	if !o.producer || o.unregistered.Load() {
		return nil, nil
	}
	now := time.Now()
	var sums [nCounters][]metricdata.DataPoint[int64]
	if m := o.cells.m.Load(); m != nil {
		for _, c := range *m {
			if n := c.load(); n != 0 {
				sums[c.counter] = append(sums[c.counter], metricdata.DataPoint[int64]{Attributes: c.attrs, StartTime: o.start, Time: now, Value: n})
			}
		}
	}
	ms := make([]metricdata.Metrics, 0, nCounters+3)
	for i, in := range counterInstruments {
		if len(sums[i]) > 0 {
			ms = append(ms, metricdata.Metrics{Name: in.name, Description: in.desc, Unit: in.unit,
				Data: metricdata.Sum[int64]{DataPoints: sums[i], Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}})
		}
	}
	ms = append(ms, metricdata.Metrics{Name: degradedInstrument.name, Description: degradedInstrument.desc, Unit: degradedInstrument.unit,
		Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: o.baseSet, StartTime: o.start, Time: now, Value: o.degraded.Load()}}}})
	var hists [2][]metricdata.HistogramDataPoint[float64]
	if m := o.recs.m.Load(); m != nil {
		for _, s := range *m {
			counts, count, sum, lo, hi := s.h.point(len(o.bounds) + 1)
			if count == 0 {
				continue
			}
			hists[b2i(s.store)] = append(hists[b2i(s.store)], metricdata.HistogramDataPoint[float64]{
				Attributes: s.attrs, StartTime: o.start, Time: now, Count: count, Bounds: slices.Clone(o.bounds),
				BucketCounts: counts, Sum: time.Duration(sum).Seconds(),
				Min: metricdata.NewExtrema(time.Duration(lo).Seconds()), Max: metricdata.NewExtrema(time.Duration(hi).Seconds()),
			})
		}
	}
	for i, in := range [2]instrument{decisionInstrument, storeInstrument} {
		if len(hists[i]) > 0 {
			ms = append(ms, metricdata.Metrics{Name: in.name, Description: in.desc, Unit: in.unit,
				Data: metricdata.Histogram[float64]{DataPoints: hists[i], Temporality: metricdata.CumulativeTemporality}})
		}
	}
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: ScopeName}, Metrics: ms}}, nil
}

// Unregister stops reporting the Observer's counters (its histograms stay
// with the MeterProvider; in Producer mode, Produce reports nothing more),
// for an Observer no longer used by any policy.
func (o *Observer) Unregister() error {
	if o.producer {
		o.unregistered.Store(true)
		return nil
	}
	if err := o.registration.Unregister(); err != nil {
		return fmt.Errorf("lockoutotel: %w", err)
	}
	return nil
}

// Observe turns e into measurements, and into span attributes and events
// of the decision it belongs to.
func (o *Observer) Observe(ctx context.Context, e lockout.Event) {
	switch e.Kind {
	case lockout.EventAdmitted, lockout.EventSuccess, lockout.EventFailure:
		o.outcome[e.Kind][b2i(e.Fallback)].add(1)
		if o.tracer != nil {
			o.annotate(ctx, &e)
		}
	case lockout.EventRefused:
		o.cell(key{what: cDecisions, reason: e.Reason, rule: e.Rule, fallback: e.Fallback}).add(1)
		if o.tracer != nil {
			o.annotate(ctx, &e)
		}
	case lockout.EventLockout:
		o.cell(key{what: cLockouts, rule: e.Rule, fallback: e.Fallback}).add(1)
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
		o.degraded.Add(1)
		if o.tracer != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.AddEvent("degraded", trace.WithTimestamp(e.Time))
			}
		}
	case lockout.EventRecovered:
		o.degraded.Add(-1)
	case lockout.EventJournalDropped:
		o.dropped.add(e.Count)
	case lockout.EventJournalUnrecorded:
		o.unrec.add(e.Count)
	case lockout.EventUnlock, lockout.EventReset:
		o.cell(key{what: cActions, name: e.Kind.String()}).add(1)
	}
}

// storeCall measures a store call, and makes its span under the decision's.
func (o *Observer) storeCall(ctx context.Context, e *lockout.Event) {
	rec := o.storeOK
	var errType string
	if e.Err != nil {
		errType = errorType(e.Err)
		rec = o.series(key{what: rStore, name: errType})
		if ctx.Err() == nil { // the caller giving up is not the store's failure
			o.cell(key{what: cStoreErrors, name: errType}).add(1)
		}
	}
	o.record(ctx, rec, e.Latency)
	if o.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	_, span := o.tracer.Start(ctx, "lockout.store", append(o.storeSpan[:len(o.storeSpan):len(o.storeSpan)],
		trace.WithTimestamp(e.Time), trace.WithAttributes(attribute.Int64("lockout.store.operations", e.Count)))...)
	if e.Err != nil {
		span.SetAttributes(ErrorTypeKey.String(errType))
		if o.subject {
			span.RecordError(e.Err)
			span.SetStatus(codes.Error, e.Err.Error())
		} else {
			// The store's message may quote a key (memcached's do),
			// and so the username or the IP address.
			span.SetStatus(codes.Error, errType)
		}
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
			kvs = append(kvs, attribute.String("user.name", cutAttr(e.Subject.Username)))
		}
		if e.Subject.IP != "" {
			kvs = append(kvs, attribute.String("client.address", e.Subject.IP))
		}
		if e.Subject.UserAgent != "" {
			kvs = append(kvs, attribute.String("user_agent.original", cutAttr(e.Subject.UserAgent)))
		}
		if e.Key != "" {
			kvs = append(kvs, attribute.String("lockout.key", e.Key))
		}
	}
	span.SetAttributes(kvs...)
}

// MaxSubjectAttrBytes bounds the username and the user agent a span
// carries (Options.SubjectAttributes): a client chooses them, and a span
// waiting for its exporter holds them.
const MaxSubjectAttrBytes = 256

// cutAttr returns s made valid UTF-8 (a client's user agent need not be,
// and an OTLP exporter cannot marshal a span whose strings are not: it
// drops the whole batch) and cut to at most MaxSubjectAttrBytes, on a
// character boundary; s itself when it is both already.
func cutAttr(s string) string {
	if len(s) <= MaxSubjectAttrBytes && utf8.ValidString(s) {
		return s
	}
	long := len(s) > MaxSubjectAttrBytes
	s = strings.ToValidUTF8(cut(s), "\uFFFD")
	s = cut(s) // the replacement characters may have made it longer
	if long {
		s = strings.Clone(s) // not a slice of the client's megabyte
	}
	return s
}

// cut returns s cut to at most MaxSubjectAttrBytes, before a byte that
// starts a character.
func cut(s string) string {
	if len(s) <= MaxSubjectAttrBytes {
		return s
	}
	i := MaxSubjectAttrBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
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

// EndDecision records the duration of an Allow, and ends the decision's
// span. The time of Success and Failure shows in their spans, and their
// store calls' in lockout.store.duration: a histogram of their own would
// cost every decision a measurement more, for little.
func (o *Observer) EndDecision(ctx context.Context, op lockout.Operation, took time.Duration, err error) {
	var errType string
	if err != nil && !errors.Is(err, lockout.ErrRefused) {
		errType = errorType(err)
	}
	if op == lockout.OpAllow {
		rec := o.admitted
		switch {
		case errType != "":
			rec = o.series(key{what: rDecision, name: "error", rule: errType})
		case err != nil:
			rec = o.refused
		}
		o.record(ctx, rec, took)
	}
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
