package backend

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// Journal is an optional capability of a store that keeps a journal of
// login attempts: records appended by the engine, read back newest first,
// and removed by the store itself once they are older than its retention
// period (no cleanup job). A store holds any number of journals, each named
// by the engine (a policy names its journal after its key prefix); the
// records of one journal never show in another.
//
// The contract, which package conformance checks:
//
//   - Append stores every record it is given, in order, or returns an
//     error; the store assigns each record an ID (Append ignores the ID it
//     is given), and the IDs of one journal grow in append order.
//   - Records returns the records that match a Query, newest first (by ID),
//     each as it was appended, Time included to within a millisecond. A
//     store may bound the size of one record (a user agent is the
//     attacker's to choose), cutting the longest values first; it
//     documents the bound, which is at least MinRecordBytes.
//   - Retention: a record is kept at least the store's retention period
//     after its Append and removed, by the store, at most one sweep period
//     after that (the store documents both). A store also bounds the number
//     of records it keeps per journal (an attacker controls how many
//     attempts there are), dropping the oldest first; a journal never makes
//     the store refuse counter operations as full.
//   - Context cancellation is honoured, and after Close both methods return
//     an error wrapping ErrClosed.
type Journal interface {
	// Append adds recs to the journal named name, in order.
	Append(ctx context.Context, name string, recs []Record) error
	// Records returns up to q.Limit records of the journal named name that
	// match q, newest first, and the cursor that continues after them:
	// pass it as q.Before to read the next page. The cursor is empty when
	// the journal holds nothing older. A store may scan a bounded number of
	// records per call, so a page can hold fewer than q.Limit records while
	// the cursor is not empty.
	Records(ctx context.Context, name string, q Query) (recs []Record, next string, err error)
}

// Record is one entry of a journal: an attempt's outcome, a lockout, or an
// operator's action. The engine fills it; the store keeps every field as
// it was given. Empty fields cost nothing to keep.
type Record struct {
	// ID is assigned by the store when it appends the record.
	ID string
	// Time is when the event happened, by the engine's clock.
	Time time.Time
	// Outcome is what happened: "success", "failure", "refused",
	// "lockout", "unlock", "reset" (the engine's words; the store does
	// not interpret them).
	Outcome string
	// Reason says why an attempt was refused ("locked", "capacity",
	// "denylisted", "unavailable").
	Reason string
	// Rule names the rule that refused or locked; Key is that rule key's
	// subject part ("u=alice").
	Rule, Key string
	// Username, IP and UserAgent describe the attempt's subject, as the
	// engine counts it (the username canonical, or all of them keyed
	// hashes when the engine keeps no plain values).
	Username, IP, UserAgent string
	// Fields holds the subject's custom fields.
	Fields map[string]string
	// Fallback is set when the engine's in-process fallback decided,
	// because the store was failing.
	Fallback bool
	// Duration is a lockout's length (-1: until unlocked).
	Duration time.Duration
	// Operator names who made an operator action, as the operator's
	// authorizer gave it, and Via the interface they used ("api",
	// "http", "cli").
	Operator, Via string
}

// Query selects records of a journal. Its zero value selects the newest
// records, DefaultQueryLimit of them.
type Query struct {
	// Username, IP and Outcome, when set, select the records whose field
	// equals them. All that are set must match.
	Username, IP, Outcome string
	// Before, when set, is a cursor from an earlier Records call: only
	// records older than the page it ended are returned.
	Before string
	// Limit bounds the records returned: DefaultQueryLimit when zero, at
	// most MaxQueryLimit.
	Limit int
}

// MinRecordBytes is the least bound a store may put on the string values
// of one record (see Journal): below it, the short values an operator
// filters by (an outcome, a rule, an IP) would be cut too.
const MinRecordBytes = 1024

// DefaultQueryLimit is the number of records a Query with no Limit returns
// at most, and MaxQueryLimit the most any Query returns.
const (
	DefaultQueryLimit = 50
	MaxQueryLimit     = 1000
)

// Match reports whether r matches q's filters (Username, IP, Outcome).
func (q Query) Match(r *Record) bool {
	return (q.Username == "" || q.Username == r.Username) &&
		(q.IP == "" || q.IP == r.IP) &&
		(q.Outcome == "" || q.Outcome == r.Outcome)
}

// PageLimit returns q.Limit as a store should apply it: DefaultQueryLimit
// for zero, MaxQueryLimit at most. A negative limit is an error wrapping
// ErrInvalid.
func (q Query) PageLimit() (int, error) {
	switch {
	case q.Limit < 0:
		return 0, fmt.Errorf("%w: query limit %d: want >= 0", ErrInvalid, q.Limit)
	case q.Limit == 0:
		return DefaultQueryLimit, nil
	default:
		return min(q.Limit, MaxQueryLimit), nil
	}
}

// ValidJournalName reports whether name may name a journal: 1 to 128
// bytes, none of them a space, a control byte, '{' or '}'.
func ValidJournalName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// Bounded returns r with its string values cut, if they (the nine strings
// and the custom fields' names and values) add up to more than maxBytes,
// and whether it cut any: the longest are shortened, all to the same
// length, so that short values (an outcome, an IP) stay whole and an
// attacker's long user agent or username is what gets cut. A value that is
// valid UTF-8 is cut at a rune boundary. Field names are not cut (a cut
// name could take another's place): when they add up to more than half of
// maxBytes, the fields with the longest names are dropped until they do
// not, so that the names of rules' fields, short, stay. A cut record has
// its own Fields map; r's is left alone. A negative maxBytes is taken as
// zero. It is what a store that bounds its records (see Journal) applies.
func (r Record) Bounded(maxBytes int) (Record, bool) {
	maxBytes = max(maxBytes, 0)
	vals := []*string{&r.Outcome, &r.Reason, &r.Rule, &r.Key, &r.Username, &r.IP, &r.UserAgent, &r.Operator, &r.Via}
	total, named := 0, 0
	for _, p := range vals {
		total += len(*p)
	}
	for n, v := range r.Fields {
		total += len(n) + len(v)
		named += len(n)
	}
	if total <= maxBytes {
		return r, false
	}
	names := slices.Sorted(maps.Keys(r.Fields))
	if named > maxBytes/2 {
		// Keep the shortest names (in name order among equals), then
		// put the kept ones back in name order.
		slices.SortStableFunc(names, func(a, b string) int { return len(a) - len(b) })
		for len(names) > 0 && named > maxBytes/2 {
			n := names[len(names)-1]
			named -= len(n)
			total -= len(n) + len(r.Fields[n])
			names = names[:len(names)-1]
		}
		slices.Sort(names)
	}
	custom := make([]string, len(names))
	for i, n := range names {
		custom[i] = r.Fields[n]
		vals = append(vals, &custom[i])
	}
	cutLongest(vals, total-named, maxBytes-named)
	if r.Fields != nil {
		r.Fields = make(map[string]string, len(names))
		for i, n := range names {
			r.Fields[n] = custom[i]
		}
	}
	return r, true
}

// cutLongest shortens the longest of the values vs, whose lengths add up
// to total, all to the same length, until they add up to at most limit.
func cutLongest(vs []*string, total, limit int) {
	if total <= limit {
		return
	}
	lens := make([]int, len(vs))
	for i, p := range vs {
		lens[i] = len(*p)
	}
	slices.Sort(lens)
	// The largest c with sum(min(len, c)) <= limit.
	rem, c := limit, 0
	for i, l := range lens {
		if n := len(lens) - i; l*n > rem {
			c = rem / n
			break
		}
		rem -= l
	}
	for _, p := range vs {
		v := *p
		if len(v) <= c {
			continue
		}
		end := c
		if utf8.ValidString(v) {
			for end > 0 && !utf8.RuneStart(v[end]) {
				end--
			}
		}
		*p = v[:end]
	}
}
