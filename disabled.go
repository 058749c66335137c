package lockout

import (
	"context"
	"iter"
	"log/slog"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Disabled returns a Policy that admits every attempt, counts nothing, locks
// nothing and keeps no state: django-axes' AXES_ENABLED = False, for tests
// of the code around a policy (a login handler, an HTTP stack) that must
// not trip over lockouts. It is a *Policy like any other, so the code under
// test, lockouthttp's Middleware and Operator included, takes it unchanged.
//
// It still checks subjects as New's default does: a username that
// CanonicalizeUsername rejects, or an IP that does not parse, is an error
// wrapping ErrInvalidSubject, so tests keep seeing the errors production
// would. Attempts report Success and Failure without error; Status lists no
// rule, Locks yields nothing, Unlock and Reset do nothing; Close works as
// usual, and calls after it return ErrClosed.
//
// Never use it in production: nothing is counted.
func Disabled() *Policy {
	p := &Policy{
		store:   emptyStore{},
		prefix:  DefaultPrefix,
		canon:   CanonicalizeUsername,
		timeout: DefaultTimeout,
		log:     slog.New(slog.DiscardHandler),
		started: time.Now(),
		// No rules: Allow admits without a backend call, and the
		// outcomes have nothing to report.
		fallbackMaxKeys: DefaultFallbackMaxKeys,
		probeInterval:   DefaultProbeInterval,
		cacheTTL:        NoLockCache,
		cacheSize:       DefaultLockCacheSize,
		breaker:         breaker{wb: make(chan struct{}, 1)},
	}
	p.readers.init(1)
	return p
}

// emptyStore is the store of a Disabled policy: it holds nothing, keeps
// nothing, and lists nothing.
type emptyStore struct{}

func (emptyStore) Do(_ context.Context, ops []backend.Op, res []backend.Result) error {
	if err := backend.ValidateBatch(ops, res); err != nil {
		return err
	}
	clear(res[:len(ops)])
	return nil
}

func (emptyStore) Close() error { return nil }

func (emptyStore) Keys(context.Context, string) iter.Seq2[string, error] {
	return func(func(string, error) bool) {}
}
