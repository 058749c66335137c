package lockout

import (
	"fmt"
	"time"
)

// Field names a part of a Subject that a rule is keyed by. The predefined
// fields are Username, IP and UserAgent; any other name refers to
// Subject.Fields[name].
type Field string

// The predefined fields.
const (
	Username  Field = "username"
	IP        Field = "ip"
	UserAgent Field = "useragent"
)

// Success says what a successful login does to a rule's counter.
type Success uint8

const (
	// SuccessAuto resets the counter of a rule keyed by the username and
	// only gives back the attempt's own reservation on any other rule, so
	// that one valid account cannot reset an IP's counter.
	SuccessAuto Success = iota
	// SuccessReset deletes the counter. On a rule without the username,
	// this lets whoever knows one valid password reset the rule's counter:
	// ask for it only knowingly.
	SuccessReset
	// SuccessRelease gives back the attempt's own reservation: the success
	// does not count, and the earlier failures stay.
	SuccessRelease
)

// The defaults for a Rule's zero fields.
const (
	DefaultLimit         = 5
	DefaultWindow        = 15 * time.Minute
	DefaultHistoryWindow = 24 * time.Hour
	DefaultIPv6Prefix    = 64
	DefaultIPv4Prefix    = 32
)

// DefaultSchedule is the lockout schedule of a rule that names none: one
// minute, doubling with every lockout in the history window, up to an hour.
var DefaultSchedule = Exponential(time.Minute, 2, time.Hour)

// Rule limits failed attempts per key, where a key is the values of the
// rule's Fields in a Subject. The zero value of each field but Fields means
// its documented default.
type Rule struct {
	// Name identifies the rule in keys, errors and status: 1 to 40 ASCII
	// letters, digits, '-', '_', '.' or '+', unique within a Policy. Empty means
	// the fields joined by '+', e.g. "username+ip".
	Name string
	// Fields is what the rule counts by. Required.
	Fields []Field
	// Limit is how many attempts may fail within Window before the key is
	// locked: the Limit-th failure locks it. At most Limit password
	// verifications are admitted per key between two resets or lockouts,
	// however many run at once. Default DefaultLimit.
	Limit int
	// Window is how long failures are counted: fixed from the first
	// attempt, or refreshed by each failure when Sliding is set. Default
	// DefaultWindow. Forever keeps failures until a success resets them, a
	// lockout clears them or an operator unlocks the key
	// (django-defender's cooloff 0, django-axes' COOLOFF_TIME None); like
	// every Forever, it is never a default.
	//
	// The window starts when a counter is created: by the first attempt
	// reserved on a key that holds none. A success on a rule that does not
	// reset (an IP rule under SuccessAuto, or SuccessRelease) gives its
	// reservation back, and a counter brought back to zero is removed, so
	// a success before any failure leaves no counter: the window then
	// starts at the first failure's attempt, as django-lockout's does.
	// Only attempts in flight at once share a counter: a success whose
	// reservation overlaps the first failure's moves the window's start
	// earlier by at most the time the success's password check took.
	Window time.Duration
	// Sliding makes each failure refresh Window.
	Sliding bool
	// Schedule picks each lockout's duration from the number of lockouts
	// within HistoryWindow. Default DefaultSchedule.
	Schedule Schedule
	// HistoryWindow is how long lockouts are remembered for escalation: the
	// history ends HistoryWindow after the latest lock ends (after it
	// starts, for a lock without end). Default DefaultHistoryWindow.
	HistoryWindow time.Duration
	// OnSuccess says what a success does. Default SuccessAuto.
	OnSuccess Success
	// IPv6Prefix is the prefix length IPv6 addresses are keyed by, so that
	// a client cannot walk its /64 for fresh counters. Default 64.
	IPv6Prefix int
	// IPv4Prefix is the prefix length IPv4 addresses are keyed by.
	// Default 32 (one address).
	IPv4Prefix int
}

// ByUsername returns a rule keyed by the username, with the given limit and
// the defaults for everything else.
func ByUsername(limit int) Rule { return Rule{Fields: []Field{Username}, Limit: limit} }

// ByIP returns a rule keyed by the client IP (an IPv6 /64), with the given
// limit and the defaults for everything else.
func ByIP(limit int) Rule { return Rule{Fields: []Field{IP}, Limit: limit} }

// ByUsernameAndIP returns a rule keyed by the username and client IP
// together, with the given limit and the defaults for everything else.
func ByUsernameAndIP(limit int) Rule {
	return Rule{Fields: []Field{Username, IP}, Limit: limit}
}

// ByFields returns a rule keyed by the given fields together, with the
// given limit and the defaults for everything else.
func ByFields(limit int, fields ...Field) Rule { return Rule{Fields: fields, Limit: limit} }

// rule is a validated Rule with its defaults applied.
type rule struct {
	Rule
	hasUsername bool
	reset       bool // a success deletes the counter
	device      bool // the device rule (Config.Devices)
}

const (
	maxRuleName  = 40
	maxFieldName = 32
	maxFields    = 8
)

func (r Rule) compile() (rule, error) {
	if len(r.Fields) == 0 {
		return rule{}, fmt.Errorf("rule %q has no fields", r.Name)
	}
	if len(r.Fields) > maxFields {
		return rule{}, fmt.Errorf("rule %q has %d fields, at most %d are allowed", r.Name, len(r.Fields), maxFields)
	}
	out := rule{Rule: r}
	out.Fields = append([]Field(nil), r.Fields...)
	seen := map[Field]bool{}
	for _, f := range r.Fields {
		if !validName(string(f), maxFieldName, false) {
			return rule{}, fmt.Errorf("rule %q: field %q: want 1 to %d ASCII letters, digits, '-', '_' or '.'", r.Name, f, maxFieldName)
		}
		if seen[f] {
			return rule{}, fmt.Errorf("rule %q: field %q named twice", r.Name, f)
		}
		seen[f] = true
		if f == Username {
			out.hasUsername = true
		}
	}
	if out.Name == "" {
		for i, f := range r.Fields {
			if i > 0 {
				out.Name += "+"
			}
			out.Name += string(f)
		}
		if len(out.Name) > maxRuleName {
			return rule{}, fmt.Errorf("rule keyed by %v needs a Name: the default one is over %d bytes", r.Fields, maxRuleName)
		}
	}
	if !validName(out.Name, maxRuleName, true) {
		return rule{}, fmt.Errorf("rule name %q: want 1 to %d ASCII letters, digits, '-', '_', '.' or '+'", out.Name, maxRuleName)
	}
	if out.Limit == 0 {
		out.Limit = DefaultLimit
	}
	if out.Window == 0 {
		out.Window = DefaultWindow
	}
	if out.HistoryWindow == 0 {
		out.HistoryWindow = DefaultHistoryWindow
	}
	if out.Schedule == nil {
		out.Schedule = DefaultSchedule
	}
	if out.IPv6Prefix == 0 {
		out.IPv6Prefix = DefaultIPv6Prefix
	}
	if out.IPv4Prefix == 0 {
		out.IPv4Prefix = DefaultIPv4Prefix
	}
	switch {
	case out.Limit < 0:
		return rule{}, fmt.Errorf("rule %q: limit %d: want > 0", out.Name, out.Limit)
	case out.Window < 0 && out.Window != Forever:
		return rule{}, fmt.Errorf("rule %q: window %v: want > 0 or Forever", out.Name, out.Window)
	case out.HistoryWindow < 0:
		return rule{}, fmt.Errorf("rule %q: history window %v: want > 0", out.Name, out.HistoryWindow)
	case out.IPv6Prefix < 1 || out.IPv6Prefix > 128:
		return rule{}, fmt.Errorf("rule %q: IPv6 prefix /%d: want 1 to 128", out.Name, out.IPv6Prefix)
	case out.IPv4Prefix < 1 || out.IPv4Prefix > 32:
		return rule{}, fmt.Errorf("rule %q: IPv4 prefix /%d: want 1 to 32", out.Name, out.IPv4Prefix)
	case out.OnSuccess > SuccessRelease:
		return rule{}, fmt.Errorf("rule %q: unknown OnSuccess %d", out.Name, out.OnSuccess)
	}
	if v, ok := out.Schedule.(validator); ok {
		if err := v.validate(); err != nil {
			return rule{}, fmt.Errorf("rule %q: schedule: %w", out.Name, err)
		}
	}
	out.reset = out.OnSuccess == SuccessReset || (out.OnSuccess == SuccessAuto && out.hasUsername)
	return out, nil
}

// validName reports whether s is 1 to n bytes of [A-Za-z0-9._-], and '+'
// when plus is set.
func validName(s string, n int, plus bool) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || plus && c == '+') {
			return false
		}
	}
	return true
}
