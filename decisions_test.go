package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// decisionRecorder is a DecisionObserver that writes down, in order, every
// decision's start and end and every event, as "start allow", "store_call",
// "admitted", "end allow", and checks that each decision's events and
// store calls carry the context its start returned.
type decisionRecorder struct {
	mu     sync.Mutex
	log    []string
	events []lockout.Event
	ends   []decisionEnd
	open   int // decisions started and not ended
	bad    []string
}

type decisionEnd struct {
	op   lockout.Operation
	took time.Duration
	err  error
}

// decisionKey marks the contexts StartDecision returns: its value is the
// decision's operation.
type decisionKey struct{}

func (r *decisionRecorder) StartDecision(ctx context.Context, op lockout.Operation) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, "start "+op.String())
	r.open++
	return context.WithValue(ctx, decisionKey{}, op)
}

func (r *decisionRecorder) EndDecision(ctx context.Context, op lockout.Operation, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, "end "+op.String())
	r.ends = append(r.ends, decisionEnd{op, took, err})
	r.open--
	if got, _ := ctx.Value(decisionKey{}).(lockout.Operation); got != op {
		r.bad = append(r.bad, fmt.Sprintf("end %v: context of %v", op, got))
	}
}

func (r *decisionRecorder) Observe(ctx context.Context, e lockout.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, e.Kind.String())
	r.events = append(r.events, e)
	if _, ok := ctx.Value(decisionKey{}).(lockout.Operation); r.open > 0 && !ok {
		r.bad = append(r.bad, e.Kind.String()+": not the decision's context")
	}
}

// take returns what was heard since the last take, and clears it.
func (r *decisionRecorder) take() (log []string, events []lockout.Event, ends []decisionEnd, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	log, events, ends, bad = r.log, r.events, r.ends, r.bad
	r.log, r.events, r.ends, r.bad = nil, nil, nil, nil
	return log, events, ends, bad
}

// slowStore makes every call take delay (in a synctest bubble: exactly),
// fails them with err when set, and checks that each carries a decision's
// context.
type slowStore struct {
	backend.Backend
	mu      sync.Mutex
	delay   time.Duration
	err     error
	noValue int // calls made without a decision's context
}

func (s *slowStore) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	s.mu.Lock()
	delay, err := s.delay, s.err
	if _, ok := ctx.Value(decisionKey{}).(lockout.Operation); !ok {
		s.noValue++
	}
	s.mu.Unlock()
	time.Sleep(delay)
	if err != nil {
		return err
	}
	return s.Backend.Do(ctx, ops, res)
}

// TestDecisionObserver walks decisions through a policy whose observer is
// a DecisionObserver, and checks what it hears, in order: each decision's
// start and end around its events and store calls, the time each took,
// and the error each returned.
func TestDecisionObserver(t *testing.T) {
	const delay = 3 * time.Millisecond
	errDown := errors.New("store down")
	alice := lockout.Subject{Username: "alice", IP: "192.0.2.7"}
	ctx := context.Background()
	type env struct {
		p     *lockout.Policy
		store *slowStore
		held  []*lockout.Attempt // attempts the setup hands to the run
	}
	admit := func(t *testing.T, e *env) *lockout.Attempt {
		t.Helper()
		a, err := e.p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		name    string
		cfg     lockout.Config
		setup   func(t *testing.T, e *env) // before the recorder is cleared
		run     func(t *testing.T, e *env) error
		log     []string
		took    []time.Duration // of each decision, in order
		errWant func(error) bool
		check   func(t *testing.T, events []lockout.Event)
	}{{
		name: "admitted",
		run:  func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, alice); return err },
		log:  []string{"start allow", "store_call", "admitted", "end allow"},
		took: []time.Duration{delay},
		check: func(t *testing.T, evs []lockout.Event) {
			sc := evs[0]
			if sc.Latency != delay || sc.Count != 2 || sc.Err != nil || sc.Time.IsZero() {
				t.Errorf("store call %+v: want Latency %v, Count 2 (one rule: Incr, Exists), no error", sc, delay)
			}
		},
	}, {
		name:  "success",
		setup: func(t *testing.T, e *env) { e.held = append(e.held, admit(t, e)) },
		run:   func(t *testing.T, e *env) error { return e.held[0].Success(ctx) },
		log:   []string{"start success", "success", "store_call", "end success"},
		took:  []time.Duration{delay},
	}, {
		name:  "failure that locks",
		setup: func(t *testing.T, e *env) { e.held = append(e.held, admit(t, e), admit(t, e)) },
		run: func(t *testing.T, e *env) error {
			e.held[0].Failure(ctx)
			return e.held[1].Failure(ctx)
		},
		// The first failure costs no store call; the second locks in two.
		log:  []string{"start failure", "failure", "end failure", "start failure", "failure", "store_call", "store_call", "lockout", "end failure"},
		took: []time.Duration{0, 2 * delay},
	}, {
		name: "reported twice",
		setup: func(t *testing.T, e *env) {
			a := admit(t, e)
			a.Failure(ctx)
			e.held = append(e.held, a)
		},
		run:     func(t *testing.T, e *env) error { return e.held[0].Failure(ctx) },
		log:     []string{"start failure", "end failure"},
		took:    []time.Duration{0},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrReported) },
	}, {
		name: "refused by the store, given back",
		cfg:  lockout.Config{LockCacheTTL: lockout.NoLockCache},
		setup: func(t *testing.T, e *env) {
			for range 2 {
				admit(t, e).Failure(ctx)
			}
		},
		run:     func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, alice); return err },
		log:     []string{"start allow", "store_call", "store_call", "refused", "end allow"},
		took:    []time.Duration{2 * delay},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrLocked) },
		check: func(t *testing.T, evs []lockout.Event) {
			if r := evs[2]; r.Reason != lockout.ReasonLocked || r.Rule != "username" {
				t.Errorf("refused event %+v", r)
			}
		},
	}, {
		name: "refused by a remembered lock",
		setup: func(t *testing.T, e *env) {
			for range 2 {
				admit(t, e).Failure(ctx)
			}
			synctest.Wait() // the lock cache applies its sets in the background
		},
		run:     func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, alice); return err },
		log:     []string{"start allow", "refused", "end allow"},
		took:    []time.Duration{0},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrLocked) },
	}, {
		name:    "denylisted",
		cfg:     lockout.Config{DenyUsernames: []string{"alice"}},
		run:     func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, alice); return err },
		log:     []string{"start allow", "refused", "end allow"},
		took:    []time.Duration{0},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrDenylisted) },
	}, {
		name:    "invalid subject",
		run:     func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, lockout.Subject{IP: "nope"}); return err },
		log:     []string{"start allow", "end allow"},
		took:    []time.Duration{0},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrInvalidSubject) },
	}, {
		name: "store fails",
		cfg:  lockout.Config{Outage: lockout.FailClosed},
		setup: func(t *testing.T, e *env) {
			e.store.mu.Lock()
			defer e.store.mu.Unlock()
			e.store.err = errDown
		},
		run:     func(t *testing.T, e *env) error { _, err := e.p.Allow(ctx, alice); return err },
		log:     []string{"start allow", "store_call", "degraded", "refused", "end allow"},
		took:    []time.Duration{delay},
		errWant: func(err error) bool { return errors.Is(err, lockout.ErrUnavailable) },
		check: func(t *testing.T, evs []lockout.Event) {
			if sc := evs[0]; !errors.Is(sc.Err, errDown) || sc.Latency != delay {
				t.Errorf("store call %+v: want the store's error and Latency %v", sc, delay)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &decisionRecorder{}
				store := &slowStore{Backend: newStore(t)}
				cfg := tc.cfg
				cfg.Rules = []lockout.Rule{lockout.ByUsername(2)}
				cfg.Observer, cfg.Logger = rec, discard
				p, err := lockout.New(store, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				e := &env{p: p, store: store}
				if tc.setup != nil {
					tc.setup(t, e)
				}
				store.mu.Lock()
				store.delay = delay
				store.mu.Unlock()
				rec.take()
				err = tc.run(t, e)
				switch {
				case tc.errWant == nil && err != nil:
					t.Errorf("error %v, want none", err)
				case tc.errWant != nil && !tc.errWant(err):
					t.Errorf("error %v, not the one wanted", err)
				}
				log, evs, ends, bad := rec.take()
				if !slices.Equal(log, tc.log) {
					t.Fatalf("heard\n\t%s\nwant\n\t%s", strings.Join(log, ", "), strings.Join(tc.log, ", "))
				}
				for _, b := range bad {
					t.Error(b)
				}
				if store.noValue > 0 {
					t.Errorf("%d store calls without the decision's context", store.noValue)
				}
				var took []time.Duration
				for _, end := range ends {
					took = append(took, end.took)
				}
				if !slices.Equal(took, tc.took) {
					t.Errorf("decisions took %v, want %v", took, tc.took)
				}
				if last := ends[len(ends)-1]; last.err != err && !errors.Is(last.err, err) {
					t.Errorf("EndDecision heard error %v, the call returned %v", last.err, err)
				}
				if tc.check != nil {
					tc.check(t, evs)
				}
			})
		})
	}
}

// TestStoreCallEventsOnlyForDecisionObservers checks that a plain Observer
// hears no EventStoreCall.
func TestStoreCallEventsOnlyForDecisionObservers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p, err := lockout.New(newStore(t), lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}, Observer: rec, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		a, err := p.Allow(ctx, lockout.Subject{Username: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		a.Success(ctx)
		if got, want := kinds(rec.take()), []string{"admitted", "success"}; !slices.Equal(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})
}

// TestOperationString names every operation, and no other.
func TestOperationString(t *testing.T) {
	for _, tc := range []struct {
		op   lockout.Operation
		want string
	}{
		{0, "unknown"},
		{lockout.OpAllow, "allow"},
		{lockout.OpSuccess, "success"},
		{lockout.OpFailure, "failure"},
		{lockout.OpFailure + 1, "unknown"},
	} {
		if got := tc.op.String(); got != tc.want {
			t.Errorf("Operation(%d).String() = %q, want %q", tc.op, got, tc.want)
		}
	}
}
