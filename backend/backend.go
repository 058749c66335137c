// Package backend defines the contract between the lockout engine and the
// stores that keep its state: expiring integer counters, changed in batches.
//
// A store implements [Backend]. Its one data method, Do, carries a batch of
// operations ([Op]) over many keys, so that a store can serve a whole lockout
// decision in one round trip: a Redis pipeline, one bbolt transaction, one
// lock pass in memory, or concurrent requests to memcached.
//
// # Operations
//
// Four kinds of operation exist, each atomic per key:
//
//   - [Incr] adds Delta to a counter. A missing key is created holding Delta
//     with the TTL given; an existing key keeps its TTL. The result holds the
//     new value and the key's remaining TTL. An Incr with a negative Delta
//     never creates a missing key and never takes a counter below zero; when
//     it brings a counter to zero (or would take it below), the key is
//     removed: the result reports Found=false, Value=0, TTL=0, and a later
//     Exists finds nothing. A concurrent Incr that lands after the removal
//     creates the key afresh; one that lands before it is never lost (exact
//     under concurrency still holds: the removal happens only if the value
//     is still zero, atomically). So a reservation given back leaves no key
//     behind, and refused traffic cannot fill a capped store. An Incr with
//     Delta zero never creates a missing key either: it reads a counter
//     without changing it.
//   - [Expire] sets the TTL of an existing key. [NoExpiry] persists it. A
//     missing key stays missing.
//   - [Exists] reports whether a key exists, its value and its remaining TTL.
//   - [Delete] removes a key. Deleting a missing key is not an error.
//
// A TTL is either positive or [NoExpiry]; zero or any other negative value is
// rejected with [ErrInvalid] wherever a TTL is used (an Incr with a positive
// Delta, an Expire), so that a forgotten TTL never silently means "forever".
//
// # Guarantees
//
// Every store keeps these rules, and package conformance checks them:
//
//   - Exact under concurrency: N goroutines each adding 1 M times leave N*M;
//     no update is ever lost.
//   - Expiry is never early. A store has a TTL granularity (memcached: one
//     second) and rounds a TTL up to it, never down. An expired key is never
//     reported as existing, and a reported remaining TTL never exceeds the TTL
//     asked for plus the granularity.
//   - Any non-empty key is accepted: any bytes, long ones too. A store with key
//     rules of its own (memcached: at most 250 bytes, no spaces or control
//     bytes) maps keys internally without collisions.
//   - Within one batch, operations on the same key are applied in batch
//     order, and a read (Exists, or an Incr with Delta zero) takes effect
//     after every write that precedes it in the batch on a key with the same
//     hash tag (see [HashTag]): it sees those writes, and whatever they saw.
//     Other operations may be applied in any order, or concurrently. The
//     engine relies on this: it reserves an attempt on a counter and then
//     reads the lock marker of the same rule key, which shares the counter's
//     hash tag, in one batch. A store may do more, applying the operations
//     of one hash tag in a batch as one atomic step (memory, bbolt, and Redis
//     with its per-slot scripts do); package conformance lets a store declare
//     it.
//   - A batch as a whole is not atomic: when Do returns an error, any subset
//     of its operations may have been applied.
//   - Context cancellation and deadlines are honoured: Do returns promptly with
//     an error wrapping the context's error.
//   - After Close, every call returns an error wrapping [ErrClosed].
//   - A store that reaches its capacity (a cap on live keys, a maximum file
//     size) returns an error wrapping [ErrFull]. It never silently drops or
//     evicts a live key: lost state would unlock an attacker.
//
// # Optional capabilities
//
// Capabilities that not every store can offer are separate small interfaces,
// found by type assertion: [Lister] enumerates keys, [Journal] keeps a journal
// of attempts, [Nonblocking] says Do never waits, [ExpiryGuard] makes a
// decrement conditional on the key's expiry. A caller that needs a
// capability the store lacks reports an error wrapping [ErrUnsupported].
package backend

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
)

// Backend is a store of expiring integer counters. Its methods are safe for
// concurrent use.
type Backend interface {
	// Do applies ops and writes the outcome of ops[i] to results[i].
	// results must be at least as long as ops. On error, the results are
	// undefined and any subset of ops may have been applied.
	Do(ctx context.Context, ops []Op, results []Result) error

	// Close releases the store's resources. Calls made after Close return an
	// error wrapping ErrClosed; Close itself may be called more than once.
	// A store built over a client the caller passed in does not close that
	// client.
	Close() error
}

// Lister is implemented by stores that can enumerate their keys, for an
// operator's view of current lockouts.
type Lister interface {
	// Keys yields every live key that begins with prefix, in no particular
	// order. A key that exists for the whole iteration is yielded at least
	// once; one created, deleted or expiring during it may or may not be. A
	// key is never yielded after its expiry was observed by the store. An
	// error ends the iteration as the last pair yielded.
	Keys(ctx context.Context, prefix string) iter.Seq2[string, error]
}

// Kind says what an [Op] does.
type Kind uint8

// The kinds of operation.
const (
	// Incr adds Op.Delta to a counter, creating a missing key with Op.TTL
	// when Delta is positive, and removing the key when a negative Delta
	// brings it to zero.
	Incr Kind = iota + 1
	// Expire sets the TTL of an existing key to Op.TTL.
	Expire
	// Exists reads a key: whether it exists, its value and its TTL.
	Exists
	// Delete removes a key.
	Delete
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Incr:
		return "incr"
	case Expire:
		return "expire"
	case Exists:
		return "exists"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// NoExpiry is the TTL that makes a key persist. It is the only non-positive
// TTL the contract accepts, and the remaining TTL reported for a key that
// never expires.
const NoExpiry time.Duration = -1

// Op is one operation of a batch.
type Op struct {
	Kind Kind
	// Key names the counter. It must not be empty; any other string is
	// accepted.
	Key string
	// Delta is added by Incr. It is ignored by the other kinds.
	Delta int64
	// TTL is the lifetime of a key that Incr creates, or the new lifetime
	// Expire sets: positive, or NoExpiry. Ignored by Exists and Delete, and
	// by an Incr whose Delta is not positive.
	TTL time.Duration
	// SkipTTL tells the store that the caller of an Incr does not need the
	// remaining TTL of a key that already existed: the store may report a
	// TTL of zero for it, where reading it costs (Redis saves a PTTL). A
	// store that knows the TTL anyway reports it.
	SkipTTL bool
	// IfExpiresBefore, when not zero, makes an Incr with a negative Delta
	// conditional on a store that implements [ExpiryGuard]: it applies
	// only to a key that expires before IfExpiresBefore, on the clock of
	// Result.Expires; any other key is left as it is, and its result
	// reported. A key without expiry never qualifies. The policy's
	// give-backs use it to decrement only the counter they reserved on,
	// never one made after it ended. Other kinds and stores ignore it.
	IfExpiresBefore int64
}

// IncrOp returns an Incr operation.
func IncrOp(key string, delta int64, ttl time.Duration) Op {
	return Op{Kind: Incr, Key: key, Delta: delta, TTL: ttl}
}

// ExpireOp returns an Expire operation.
func ExpireOp(key string, ttl time.Duration) Op {
	return Op{Kind: Expire, Key: key, TTL: ttl}
}

// ExistsOp returns an Exists operation.
func ExistsOp(key string) Op { return Op{Kind: Exists, Key: key} }

// DeleteOp returns a Delete operation.
func DeleteOp(key string) Op { return Op{Kind: Delete, Key: key} }

// IsRead reports whether op only reads: an Exists, or an Incr with Delta
// zero. Within a batch, a read takes effect after every write before it on
// a key with the same hash tag (see the package doc).
func (op Op) IsRead() bool {
	return op.Kind == Exists || op.Kind == Incr && op.Delta == 0
}

// Validate reports whether op is well formed, with an error wrapping
// ErrInvalid if not. Stores call it (or [ValidateBatch]) before applying
// anything.
func (op Op) Validate() error {
	if op.Key == "" {
		return fmt.Errorf("%w: %s with an empty key", ErrInvalid, op.Kind)
	}
	switch op.Kind {
	case Incr:
		if op.Delta > 0 && !ValidTTL(op.TTL) {
			return fmt.Errorf("%w: incr of %q with TTL %v (want > 0 or NoExpiry)", ErrInvalid, op.Key, op.TTL)
		}
	case Expire:
		if !ValidTTL(op.TTL) {
			return fmt.Errorf("%w: expire of %q with TTL %v (want > 0 or NoExpiry)", ErrInvalid, op.Key, op.TTL)
		}
	case Exists, Delete:
	default:
		return fmt.Errorf("%w: unknown operation %s", ErrInvalid, op.Kind)
	}
	return nil
}

// ValidTTL reports whether ttl is positive or NoExpiry.
func ValidTTL(ttl time.Duration) bool { return ttl > 0 || ttl == NoExpiry }

// ValidateBatch checks every op and that results can hold their outcomes.
func ValidateBatch(ops []Op, results []Result) error {
	if len(results) < len(ops) {
		return fmt.Errorf("%w: %d results for %d operations", ErrInvalid, len(results), len(ops))
	}
	for i := range ops {
		if !ops[i].valid() {
			return fmt.Errorf("op %d: %w", i, ops[i].Validate())
		}
	}
	return nil
}

// valid reports whether Validate returns nil, without building the error:
// a store validates every operation of every call.
func (op *Op) valid() bool {
	if op.Key == "" {
		return false
	}
	switch op.Kind {
	case Incr:
		return op.Delta <= 0 || ValidTTL(op.TTL)
	case Expire:
		return ValidTTL(op.TTL)
	case Exists, Delete:
		return true
	}
	return false
}

// Result is the outcome of one [Op].
type Result struct {
	// Value is the counter's value after the operation: for Incr and Exists,
	// and zero when the key does not exist.
	Value int64
	// Found reports, for Incr, Expire and Exists, whether the key exists
	// after the operation, and for Delete, whether it existed before.
	Found bool
	// TTL is the key's remaining lifetime when Found (for Incr, Expire and
	// Exists): positive, or NoExpiry. It is zero otherwise.
	TTL time.Duration
	// Expires is when the key expires, when Found and its TTL is not
	// NoExpiry, on a store that implements [ExpiryGuard]: in nanoseconds on
	// the store's own clock, whose epoch is the store's (compare it only
	// with other values of the same store). Zero otherwise.
	Expires int64
}

// Errors stores return, wrapped, for callers to test with errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("lockout/backend: store is closed")
	// ErrFull is returned when a store has reached its capacity. The store
	// keeps its existing keys; the operation that would have exceeded the
	// capacity is not applied.
	ErrFull = errors.New("lockout/backend: store is full")
	// ErrInvalid is returned for a malformed operation: an empty key, an
	// unknown kind, or a TTL that is neither positive nor NoExpiry.
	ErrInvalid = errors.New("lockout/backend: invalid operation")
	// ErrUnsupported is returned when a store lacks an optional capability.
	// It wraps errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("lockout/backend: not supported by this store: %w", errors.ErrUnsupported)
)

// HashTag returns the part of key that decides which keys belong together,
// as Redis Cluster defines it: the bytes between the first '{' and the first
// '}' after it, when there is at least one; otherwise the whole key. Keys
// with the same hash tag are in the same Redis Cluster slot.
func HashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// Do1 applies a single operation: a convenience for callers outside hot paths.
func Do1(ctx context.Context, b Backend, op Op) (Result, error) {
	var r [1]Result
	err := b.Do(ctx, []Op{op}, r[:])
	return r[0], err
}

// ExpiryGuard is an optional capability of a store that reports when keys
// expire (Result.Expires) and applies a decrement only to a key that
// expires before a given time (Op.IfExpiresBefore), in one atomic step.
//
// The lockout engine gives back a reservation (of a refused attempt, say)
// with a decrement. Plain, it lands on whatever counter holds the key: one
// made after the reserved counter ended loses a count, a guess more for an
// attacker who times attempts at a window's end. A counter made after the
// reserved one ended expires at least a window after it did, while the
// reserved one, however often a sliding window refreshed it, expires
// before that: the engine decrements only a key that expires before the
// reserved counter's Expires plus the window.
type ExpiryGuard interface {
	Backend
	// GuardsExpiry reports whether the store reports Expires and honours
	// IfExpiresBefore.
	GuardsExpiry() bool
}

// Nonblocking is an optional capability of a store whose Do never waits for
// I/O, or for long on a lock: the memory store. The engine calls such a
// store without a deadline of its own (a deadline costs a timer and a
// context per call, more than the memory store's whole decision), and so
// does not honour Config.Timeout for it.
type Nonblocking interface {
	Backend
	// Nonblocking reports whether Do never blocks.
	Nonblocking() bool
}
