package lockoutotel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/lockoutotel"
)

var discard = slog.New(slog.DiscardHandler)

// flakyStore fails every call while down is set, with an error that
// quotes the first key, as the memcached store's errors do ("memcache:
// incr \"...u=bob...\": ..."); and makes every call take delay.
type flakyStore struct {
	backend.Backend
	down  atomic.Bool
	delay time.Duration
}

var errDown = errors.New("store down")

func (s *flakyStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	time.Sleep(s.delay)
	if s.down.Load() {
		return fmt.Errorf("incr %q: %w", ops[0].Key, errDown)
	}
	return s.Backend.Do(ctx, ops, res)
}

// harness is a policy observed by an Observer, with the metrics and spans
// it made.
type harness struct {
	p      *lockout.Policy
	store  *flakyStore
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	obs    *lockoutotel.Observer
}

// newHarness returns a policy with two rules (username: 3 guesses, IP:
// 100) and a deny list, over a memory store whose calls take delay.
func newHarness(t *testing.T, delay time.Duration, opts lockoutotel.Options) *harness {
	t.Helper()
	mem, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	h := &harness{store: &flakyStore{Backend: mem, delay: delay}, spans: tracetest.NewSpanRecorder()}
	if opts.TracerProvider == nil {
		opts.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	}
	if !opts.Producer {
		h.reader = sdkmetric.NewManualReader()
		opts.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	}
	obs, err := lockoutotel.New(&opts)
	if err != nil {
		t.Fatal(err)
	}
	h.obs = obs
	if opts.Producer {
		// The reader collects nothing until a MeterProvider has it.
		h.reader = sdkmetric.NewManualReader(sdkmetric.WithProducer(obs))
		sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	}
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(100)}
	for i := range rules {
		rules[i].Window = time.Hour
		rules[i].Schedule = lockout.Fixed(time.Minute)
	}
	h.p, err = lockout.New(h.store, lockout.Config{Rules: rules, Observer: obs, Logger: discard,
		DenyUsernames: []string{"mallory"}, Outage: lockout.Fallback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.p.Close() })
	return h
}

// point is one data point of a collected metric.
type point struct {
	attrs map[string]string
	value float64 // a sum's value; a histogram's count
	sum   float64 // a histogram's sum
}

// collect returns every data point of every metric, by metric name.
func (h *harness) collect(t *testing.T) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	attrs := func(s attribute.Set) map[string]string {
		m := map[string]string{}
		for _, kv := range s.ToSlice() {
			m[string(kv.Key)] = kv.Value.String()
		}
		return m
	}
	out := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != lockoutotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, lockoutotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: attrs(dp.Attributes), value: float64(dp.Value)})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: attrs(dp.Attributes), value: float64(dp.Count), sum: dp.Sum})
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// find returns the point of name with exactly attrs, and whether there is one.
func find(got map[string][]point, name string, attrs map[string]string) (point, bool) {
	for _, p := range got[name] {
		if maps.Equal(p.attrs, attrs) {
			return p, true
		}
	}
	return point{}, false
}

// modes runs test with the metrics made by MeterProvider instruments and,
// in a second subtest, by the Observer as a Producer.
func modes(t *testing.T, test func(t *testing.T, producer bool)) {
	for _, producer := range []bool{false, true} {
		t.Run(map[bool]string{false: "instruments", true: "producer"}[producer], func(t *testing.T) { test(t, producer) })
	}
}

// TestMetrics runs a few decisions and checks every data point they make.
func TestMetrics(t *testing.T) { modes(t, testMetrics) }

func testMetrics(t *testing.T, producer bool) {
	const delay = 2 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h := newHarness(t, delay, lockoutotel.Options{Attributes: []attribute.KeyValue{attribute.String("lockout.policy", "web")}, Producer: producer})
		alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
		bob := lockout.Subject{Username: "bob", IP: "192.0.2.2"}
		a, err := h.p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		a.Success(ctx) // one store call
		for range 3 {  // the third locks bob: two store calls
			a, err := h.p.Allow(ctx, bob)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(ctx)
		}
		if _, err := h.p.Allow(ctx, bob); !errors.Is(err, lockout.ErrLocked) { // remembered: no store call
			t.Fatalf("bob after the lockout: %v", err)
		}
		if _, err := h.p.Allow(ctx, lockout.Subject{Username: "mallory"}); !errors.Is(err, lockout.ErrDenylisted) {
			t.Fatalf("mallory: %v", err)
		}
		if _, err := h.p.Allow(ctx, lockout.Subject{IP: "not an address"}); !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Fatalf("invalid subject: %v", err)
		}
		got := h.collect(t)

		with := func(kv ...string) map[string]string {
			m := map[string]string{"lockout.policy": "web"}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		for _, tc := range []struct {
			name  string
			attrs map[string]string
			value float64
			sum   float64 // histograms: the sum, in seconds
		}{
			{"lockout.decisions", with("lockout.outcome", "admitted", "lockout.fallback", "false"), 4, 0},
			{"lockout.decisions", with("lockout.outcome", "success", "lockout.fallback", "false"), 1, 0},
			{"lockout.decisions", with("lockout.outcome", "failure", "lockout.fallback", "false"), 3, 0},
			{"lockout.decisions", with("lockout.outcome", "refused", "lockout.fallback", "false", "lockout.reason", "locked", "lockout.rule", "username"), 1, 0},
			{"lockout.decisions", with("lockout.outcome", "refused", "lockout.fallback", "false", "lockout.reason", "denylisted"), 1, 0},
			{"lockout.lockouts", with("lockout.rule", "username", "lockout.fallback", "false"), 1, 0},
			// Four admissions, a success, the locking failure's two calls.
			{"lockout.store.duration", with(), 7, 7 * delay.Seconds()},
			{"lockout.decision.duration", with("lockout.outcome", "admitted"), 4, 4 * delay.Seconds()},
			{"lockout.decision.duration", with("lockout.outcome", "refused"), 2, 0},
			{"lockout.decision.duration", with("lockout.outcome", "error", "error.type", "invalid_subject"), 1, 0},
		} {
			p, ok := find(got, tc.name, tc.attrs)
			if !ok {
				t.Errorf("%s%v: no data point; have %+v", tc.name, tc.attrs, got[tc.name])
				continue
			}
			if p.value != tc.value || fmt.Sprintf("%.6f", p.sum) != fmt.Sprintf("%.6f", tc.sum) {
				t.Errorf("%s%v = %v (sum %v), want %v (sum %v)", tc.name, tc.attrs, p.value, p.sum, tc.value, tc.sum)
			}
		}
		for _, p := range got["lockout.decision.duration"] {
			if o := p.attrs["lockout.outcome"]; o == "success" || o == "failure" {
				t.Errorf("lockout.decision.duration%v: only Allow is measured", p.attrs)
			}
		}
		for _, name := range []string{"lockout.store.errors", "lockout.journal.dropped", "lockout.journal.unrecorded", "lockout.operator.actions"} {
			if len(got[name]) > 0 {
				t.Errorf("%s: %+v, want no data point", name, got[name])
			}
		}
		for name, points := range got {
			for _, p := range points {
				for k, v := range p.attrs {
					if strings.Contains(v, "alice") || strings.Contains(v, "192.0.2") {
						t.Errorf("%s: attribute %s=%q names the subject", name, k, v)
					}
				}
			}
		}
	})
}

// TestDegradedMetrics checks the degraded gauge and the store's errors
// through an outage, and the operator actions.
func TestDegradedMetrics(t *testing.T) { modes(t, testDegradedMetrics) }

func testDegradedMetrics(t *testing.T, producer bool) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h := newHarness(t, 0, lockoutotel.Options{TracerProvider: noop.NewTracerProvider(), Producer: producer})
		alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
		degraded := func() float64 {
			t.Helper()
			p, _ := find(h.collect(t), "lockout.degraded", map[string]string{})
			return p.value
		}
		decide := func() {
			t.Helper()
			a, err := h.p.Allow(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			a.Success(ctx)
		}
		steps := []struct {
			name         string
			do           func()
			degraded     float64
			errors       float64
			fallbackSeen bool
		}{
			{"healthy", decide, 0, 0, false},
			{"store down", func() { h.store.down.Store(true); decide() }, 1, 1, true},
			{"still down", decide, 1, 1, true},
			{"store up", func() {
				h.store.down.Store(false)
				time.Sleep(2 * lockout.DefaultProbeInterval)
				decide() // drives the probe
				time.Sleep(lockout.DefaultProbeInterval)
				synctest.Wait()
			}, 0, 1, true},
		}
		for _, s := range steps {
			s.do()
			got := h.collect(t)
			if d := degraded(); d != s.degraded {
				t.Errorf("%s: lockout.degraded = %v, want %v", s.name, d, s.degraded)
			}
			p, _ := find(got, "lockout.store.errors", map[string]string{"error.type": "_OTHER"})
			if p.value != s.errors {
				t.Errorf("%s: lockout.store.errors = %v, want %v", s.name, p.value, s.errors)
			}
			_, fb := find(got, "lockout.decisions", map[string]string{"lockout.outcome": "admitted", "lockout.fallback": "true"})
			if fb != s.fallbackSeen {
				t.Errorf("%s: fallback admissions counted: %v, want %v", s.name, fb, s.fallbackSeen)
			}
		}
		if err := h.p.Unlock(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if err := h.p.Reset(ctx, alice); err != nil {
			t.Fatal(err)
		}
		got := h.collect(t)
		for _, action := range []string{"unlock", "reset"} {
			if p, _ := find(got, "lockout.operator.actions", map[string]string{"lockout.action": action}); p.value != 1 {
				t.Errorf("lockout.operator.actions{%s} = %v, want 1", action, p.value)
			}
		}
		// A policy closed while degraded is no longer counted.
		h.store.down.Store(true)
		decide()
		if d := degraded(); d != 1 {
			t.Errorf("down again: lockout.degraded = %v, want 1", d)
		}
		if err := h.p.Close(); err != nil {
			t.Fatal(err)
		}
		if d := degraded(); d != 0 {
			t.Errorf("closed while degraded: lockout.degraded = %v, want 0", d)
		}
	})
}

// TestJournalMetrics checks the journal's counters: the records dropped and
// the refusals not recorded, from their events.
func TestJournalMetrics(t *testing.T) { modes(t, testJournalMetrics) }

func testJournalMetrics(t *testing.T, producer bool) {
	h := newHarness(t, 0, lockoutotel.Options{TracerProvider: noop.NewTracerProvider(), Producer: producer})
	ctx := context.Background()
	for _, e := range []lockout.Event{
		{Kind: lockout.EventJournalDropped, Count: 3},
		{Kind: lockout.EventJournalUnrecorded, Count: 5},
		{Kind: lockout.EventJournalDropped, Count: 4},
		{Kind: lockout.EventJournalUnrecorded, Count: 6},
	} {
		h.obs.Observe(ctx, e)
	}
	got := h.collect(t)
	for name, want := range map[string]float64{"lockout.journal.dropped": 7, "lockout.journal.unrecorded": 11} {
		if p, _ := find(got, name, map[string]string{}); p.value != want {
			t.Errorf("%s = %v, want %v", name, p.value, want)
		}
	}
}

// TestSpans checks the spans of an admission and of a failure that locks,
// with the subject kept out of them and, when asked, put in.
func TestSpans(t *testing.T) {
	const delay = time.Millisecond
	for _, tc := range []struct {
		name    string
		subject bool
	}{{"private", false}, {"subject attributes", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				h := newHarness(t, delay, lockoutotel.Options{SubjectAttributes: tc.subject})
				bob := lockout.Subject{Username: "bob", IP: "192.0.2.2", UserAgent: "curl/8"}
				for range 3 {
					a, err := h.p.Allow(ctx, bob)
					if err != nil {
						t.Fatal(err)
					}
					a.Failure(ctx)
				}
				h.p.Allow(ctx, bob) // refused
				spans := h.spans.Ended()
				var names []string
				for _, s := range spans {
					names = append(names, s.Name())
				}
				// A child ends before its parent.
				want := []string{
					"lockout.store", "lockout.allow", "lockout.failure",
					"lockout.store", "lockout.allow", "lockout.failure",
					"lockout.store", "lockout.allow", "lockout.store", "lockout.store", "lockout.failure",
					"lockout.allow",
				}
				if !slices.Equal(names, want) {
					t.Fatalf("spans %v, want %v", names, want)
				}
				attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
					m := map[string]string{}
					for _, kv := range s.Attributes() {
						m[string(kv.Key)] = kv.Value.String()
					}
					return m
				}
				for i, s := range spans {
					if s.Name() == "lockout.store" {
						j := i + 1 // the parent ends after its children
						for spans[j].Name() == "lockout.store" {
							j++
						}
						parent := spans[j]
						if s.Parent().SpanID() != parent.SpanContext().SpanID() {
							t.Errorf("span %d: store span's parent is not the decision's", i)
						}
						if d := s.EndTime().Sub(s.StartTime()); d != delay {
							t.Errorf("store span lasted %v, want %v", d, delay)
						}
						if attrs(s)["lockout.store.operations"] == "" {
							t.Errorf("store span without lockout.store.operations: %v", attrs(s))
						}
					}
					for k, v := range attrs(s) {
						private := strings.Contains(v, "bob") || strings.Contains(v, "192.0.2") || strings.Contains(v, "curl")
						if private != (tc.subject && slices.Contains([]string{"user.name", "client.address", "user_agent.original", "lockout.key"}, k)) {
							t.Errorf("%s: attribute %s=%q", s.Name(), k, v)
						}
					}
				}
				locking := spans[10]
				if a := attrs(locking); a["lockout.outcome"] != "failure" || a["lockout.fallback"] != "false" {
					t.Errorf("failure span attributes %v", a)
				}
				if ev := locking.Events(); len(ev) != 1 || ev[0].Name != "lockout" {
					t.Errorf("failure span events %+v, want one lockout", ev)
				}
				refused := spans[11]
				a := attrs(refused)
				if a["lockout.outcome"] != "refused" || a["lockout.reason"] != "locked" || a["lockout.rule"] != "username" || a["lockout.retry_after"] != "60" {
					t.Errorf("refused span attributes %v", a)
				}
				if tc.subject && (a["user.name"] != "bob" || a["client.address"] != "192.0.2.2" || a["lockout.key"] != "u=bob") {
					t.Errorf("refused span attributes %v, want the subject's", a)
				}
				if refused.Status().Code == codes.Error {
					t.Errorf("a refusal is no error: status %+v", refused.Status())
				}
			})
		})
	}
}

// TestErrorSpan checks the status of a decision that fails.
func TestErrorSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 0, lockoutotel.Options{})
		if _, err := h.p.Allow(context.Background(), lockout.Subject{IP: "not an address"}); err == nil {
			t.Fatal("invalid subject admitted")
		}
		spans := h.spans.Ended()
		if len(spans) != 1 {
			t.Fatalf("%d spans, want 1", len(spans))
		}
		if st := spans[0].Status(); st.Code != codes.Error || st.Description != "invalid_subject" {
			t.Errorf("status %+v, want an error described as invalid_subject (not the message, which names the subject)", st)
		}
	})
}

// nopObserver is a DecisionObserver that does nothing: the baseline of
// what the policy itself allocates to build events.
type nopObserver struct{}

func (nopObserver) Observe(context.Context, lockout.Event) {}
func (nopObserver) StartDecision(ctx context.Context, _ lockout.Operation) context.Context {
	return ctx
}
func (nopObserver) EndDecision(context.Context, lockout.Operation, time.Duration, error) {}

// TestNoTracingNoCost checks that without tracing the observer leaves the
// decision's context alone and allocates nothing per decision, beyond
// what the policy allocates to build its events.
func TestNoTracingNoCost(t *testing.T) {
	obs, err := lockoutotel.New(&lockoutotel.Options{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		TracerProvider: noop.NewTracerProvider(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := obs.StartDecision(ctx, lockout.OpAllow); got != ctx {
		t.Errorf("StartDecision without tracing returned another context")
	}
	allocs := func(o lockout.Observer) float64 {
		t.Helper()
		mem, err := memory.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		p, err := lockout.New(mem, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(1 << 30), lockout.ByIP(1 << 30)}, Observer: o, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		s := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
		decide := func() {
			a, err := p.Allow(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(ctx)
		}
		decide() // the store has the keys; the observer its attribute sets
		return testing.AllocsPerRun(200, decide)
	}
	plain, observed := allocs(nopObserver{}), allocs(obs)
	if observed > plain {
		t.Errorf("%v allocations per decision observed, %v with an observer that does nothing", observed, plain)
	}
}

// TestDefaults checks that New works with nil options (the global
// providers, no-ops until set).
func TestDefaults(t *testing.T) {
	obs, err := lockoutotel.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lockout.New(must(memory.New(nil)), lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}, Observer: obs, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Check(context.Background(), lockout.Subject{Username: "alice"}, func(context.Context) (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestProducerMatchesInstruments runs the same decisions, an outage and an
// operator's actions under an Observer of each mode, and checks that they
// report the same metrics: names, descriptions, units, kinds, attributes,
// counts, sums, bucket bounds and counts, minimums and maximums.
func TestProducerMatchesInstruments(t *testing.T) {
	var _ sdkmetric.Producer = (*lockoutotel.Observer)(nil)
	collected := func(producer bool) (sm metricdata.ScopeMetrics) {
		synctest.Test(t, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, 3*time.Millisecond, lockoutotel.Options{TracerProvider: noop.NewTracerProvider(), Producer: producer,
				Attributes: []attribute.KeyValue{attribute.String("lockout.policy", "web")}})
			for i := range 12 {
				s := lockout.Subject{Username: fmt.Sprintf("user%d", i%4), IP: fmt.Sprintf("192.0.2.%d", i%3)}
				if i == 7 {
					h.store.down.Store(true)
				}
				if i == 9 {
					h.store.down.Store(false)
					time.Sleep(2 * lockout.DefaultProbeInterval)
				}
				a, err := h.p.Allow(ctx, s)
				if err != nil {
					continue
				}
				if i%5 == 0 {
					a.Success(ctx)
				} else {
					a.Failure(ctx)
				}
			}
			bob := lockout.Subject{Username: "bob", IP: "192.0.2.9"}
			for range 4 { // locks bob, then is refused
				if a, err := h.p.Allow(ctx, bob); err == nil {
					a.Failure(ctx)
				}
			}
			h.p.Allow(ctx, lockout.Subject{IP: "not an address"})
			h.p.Unlock(ctx, bob)
			time.Sleep(lockout.DefaultProbeInterval)
			synctest.Wait()
			var rm metricdata.ResourceMetrics
			if err := h.reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			if len(rm.ScopeMetrics) != 1 {
				t.Fatalf("%d scopes, want 1", len(rm.ScopeMetrics))
			}
			sm = rm.ScopeMetrics[0]
			slices.SortFunc(sm.Metrics, func(a, b metricdata.Metrics) int { return strings.Compare(a.Name, b.Name) })
			for _, m := range sm.Metrics { // the SDK adds float seconds, the Producer integer nanoseconds
				if d, ok := m.Data.(metricdata.Histogram[float64]); ok {
					for i := range d.DataPoints {
						d.DataPoints[i].Sum = math.Round(d.DataPoints[i].Sum*1e9) / 1e9
					}
				}
			}
		})
		return sm
	}
	instruments, producer := collected(false), collected(true)
	var names []string
	for _, m := range instruments.Metrics {
		names = append(names, m.Name)
	}
	if want := []string{"lockout.decision.duration", "lockout.decisions", "lockout.degraded", "lockout.lockouts",
		"lockout.operator.actions", "lockout.store.duration", "lockout.store.errors"}; !slices.Equal(names, want) {
		t.Fatalf("metrics %v, want %v: the scenario misses some", names, want)
	}
	metricdatatest.AssertEqual(t, instruments, producer, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
}

// TestSubjectAttributesCut: a client's long user agent (or username) is
// cut on the span, on a character boundary, so that spans waiting for an
// exporter do not hold what clients send.
func TestSubjectAttributesCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 0, lockoutotel.Options{SubjectAttributes: true})
		ua := "é" + strings.Repeat("x", 100_000)
		long := lockout.Subject{Username: strings.Repeat("é", 400), IP: "192.0.2.2", UserAgent: ua}
		a, err := h.p.Allow(context.Background(), long)
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(context.Background())
		for _, s := range h.spans.Ended() {
			for _, kv := range s.Attributes() {
				switch k, v := string(kv.Key), kv.Value.AsString(); k {
				case "user.name", "user_agent.original":
					if len(v) > lockoutotel.MaxSubjectAttrBytes || !utf8.ValidString(v) || len(v) < lockoutotel.MaxSubjectAttrBytes-4 {
						t.Errorf("%s: %s of %d bytes (valid UTF-8: %v), want about %d", s.Name(), k, len(v), utf8.ValidString(v), lockoutotel.MaxSubjectAttrBytes)
					}
				}
			}
		}
	})
}

// TestStoreSpanPrivate: a failed store call's span must not carry the
// store's error message, which may quote a key and so the username or IP
// address, unless SubjectAttributes asks for the subject.
func TestStoreSpanPrivate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 0, lockoutotel.Options{Producer: true})
		h.store.down.Store(true)
		h.p.Allow(context.Background(), lockout.Subject{Username: "bob", IP: "192.0.2.2"})
		private := func(v string) bool { return strings.Contains(v, "bob") || strings.Contains(v, "192.0.2") }
		var stores int
		for _, s := range h.spans.Ended() {
			if s.Name() == "lockout.store" {
				stores++
				if s.Status().Code != codes.Error {
					t.Errorf("failed store call's span: status %+v, want an error", s.Status())
				}
			}
			if private(s.Status().Description) {
				t.Errorf("%s: status description %q names the subject", s.Name(), s.Status().Description)
			}
			for _, kv := range s.Attributes() {
				if private(kv.Value.String()) {
					t.Errorf("%s: attribute %s=%q names the subject", s.Name(), kv.Key, kv.Value.String())
				}
			}
			for _, ev := range s.Events() {
				for _, kv := range ev.Attributes {
					if private(kv.Value.String()) {
						t.Errorf("%s: event %s: attribute %s=%q names the subject", s.Name(), ev.Name, kv.Key, kv.Value.String())
					}
				}
			}
		}
		if stores == 0 {
			t.Fatal("no store span")
		}
	})
}

// TestSubjectAttributesValidUTF8: a client's user agent (or a username,
// under a Canonicalize that keeps bytes as they are) need not be UTF-8,
// and an OTLP exporter cannot marshal a span with an invalid string: the
// whole batch, every request's spans, would be dropped. The span carries
// them made valid.
func TestSubjectAttributesValidUTF8(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := memory.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		spans := tracetest.NewSpanRecorder()
		obs, err := lockoutotel.New(&lockoutotel.Options{Producer: true, SubjectAttributes: true,
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})
		if err != nil {
			t.Fatal(err)
		}
		p, err := lockout.New(mem, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}, Observer: obs, Logger: discard,
			Canonicalize: func(s string) (string, error) { return s, nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for _, s := range []lockout.Subject{
			{Username: "bob\xff", IP: "192.0.2.2", UserAgent: "curl/\xff\xfe8"},
			{Username: strings.Repeat("\xffa", 300), IP: "192.0.2.2", UserAgent: strings.Repeat("a\xe9", 1000)},
		} {
			a, err := p.Allow(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(context.Background())
		}
		var checked int
		for _, s := range spans.Ended() {
			for _, kv := range s.Attributes() {
				switch k, v := string(kv.Key), kv.Value.AsString(); k {
				case "user.name", "user_agent.original":
					checked++
					if !utf8.ValidString(v) || len(v) > lockoutotel.MaxSubjectAttrBytes {
						t.Errorf("%s: %s=%q: %d bytes, valid UTF-8: %v", s.Name(), k, v, len(v), utf8.ValidString(v))
					}
				}
			}
		}
		if checked != 8 {
			t.Errorf("%d subject attributes checked, want 8", checked)
		}
	})
}
