package lockouthttp

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

// TestGroupLocks checks that the page groups locks by subject: a user's
// username and username+IP locks together, another user apart, locks
// without a username by IP address (an IPv6 prefix as one), then by their
// other fields.
func TestGroupLocks(t *testing.T) {
	ctx := context.Background()
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rules := []lockout.Rule{
		lockout.ByUsername(4),
		lockout.ByUsernameAndIP(2),
		lockout.ByIP(2),
		lockout.ByFields(2, lockout.IP, lockout.UserAgent),
		lockout.ByFields(2, "tenant"),
		lockout.ByFields(2, lockout.UserAgent),
	}
	p, err := lockout.New(store, lockout.Config{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fail := func(s lockout.Subject, n int) {
		t.Helper()
		for range n {
			a, err := p.Allow(ctx, s)
			if err != nil {
				t.Fatalf("%+v: %v", s, err)
			}
			a.Failure(ctx)
		}
	}
	longUA := "Mozilla/5.0 " + strings.Repeat("x", 80) // hashed in keys
	// alice: username+IP locks from two addresses, then her username lock.
	fail(lockout.Subject{Username: "alice", IP: "192.0.2.1"}, 2)
	fail(lockout.Subject{Username: "alice", IP: "192.0.2.2"}, 2)
	// bob: one username+IP lock.
	fail(lockout.Subject{Username: "bob", IP: "192.0.2.3"}, 2)
	// No username: an IP lock and an IP+user agent lock of one address,
	// an IPv6 prefix, a tenant, a long user agent.
	fail(lockout.Subject{IP: "198.51.100.9", UserAgent: "curl/8"}, 2)
	fail(lockout.Subject{IP: "2001:db8::1"}, 1)
	fail(lockout.Subject{IP: "2001:db8::2"}, 1)
	fail(lockout.Subject{Fields: map[string]string{"tenant": "acme"}}, 2)
	fail(lockout.Subject{UserAgent: longUA}, 2)
	// A user agent that looks like a hashed value, and is not one: it
	// unlocks by its subject like any other.
	lookalike := "~" + strings.Repeat("a", 23)
	fail(lockout.Subject{UserAgent: lookalike}, 2)

	o := NewOperator(p, OperatorConfig{})
	list, err := o.locks(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	groups := groupLocks(list.Locks)
	type want struct {
		kind, label string
		subjects    []string
		unlock      string // the form's action
	}
	wants := []want{
		{"user", "alice", []string{"u=alice", "u=alice,ip=192.0.2.1", "u=alice,ip=192.0.2.2"}, "unlock"},
		{"user", "bob", []string{"u=bob,ip=192.0.2.3"}, "unlock"},
		{"ip", "192.0.2.1", []string{"ip=192.0.2.1"}, "unlock"},
		{"ip", "192.0.2.2", []string{"ip=192.0.2.2"}, "unlock"},
		{"ip", "192.0.2.3", []string{"ip=192.0.2.3"}, "unlock"},
		{"ip", "198.51.100.9", []string{"ip=198.51.100.9", "ip=198.51.100.9,ua=curl/8"}, "unlock"},
		{"ip", "2001:db8::/64", []string{"ip=2001:db8::/64"}, "unlock"},
		{"other", "f.tenant=acme", []string{"f.tenant=acme"}, "unlock"},
		{"other", `ua="` + lookalike + `"`, []string{`ua="` + lookalike + `"`}, "unlock"},
		{"other", "ua=curl/8", []string{"ua=curl/8"}, "unlock"},
		{"other", "", nil, "unlock-key"}, // the hashed user agent
	}
	if len(groups) != len(wants) {
		for _, g := range groups {
			t.Logf("group %s %s: %d locks", g.Kind, g.Label, len(g.Locks))
		}
		t.Fatalf("%d groups, want %d", len(groups), len(wants))
	}
	for i, w := range wants {
		g := groups[i]
		var subjects []string
		for _, lk := range g.Locks {
			subjects = append(subjects, lk.Subject)
		}
		if g.Kind != w.kind || (w.label != "" && g.Label != w.label) || (w.subjects != nil && !slices.Equal(subjects, w.subjects)) || g.UnlockAction() != w.unlock {
			t.Errorf("group %d: %s %q %v %s, want %s %q %v %s", i, g.Kind, g.Label, subjects, g.UnlockAction(), w.kind, w.label, w.subjects, w.unlock)
		}
	}
	// The IPv6 group unlocks by an address of its prefix.
	if g := groups[6]; g.Subject.IP != "2001:db8::" {
		t.Errorf("IPv6 group subject %+v", g.Subject)
	}

	// Each group's Unlock lifts exactly its locks (an IP group's, those
	// holding the IP: here, the username+IP lock of alice from it too).
	for _, g := range groups {
		var err error
		if g.Keys != nil {
			_, err = o.do(ctx, "unlock-key", actionParams{keys: g.Keys})
		} else {
			_, err = o.do(ctx, "unlock", actionParams{subject: g.Subject})
		}
		if err != nil {
			t.Fatalf("unlock %s %s: %v", g.Kind, g.Label, err)
		}
	}
	if list, _ := o.locks(ctx, 100); len(list.Locks) != 0 {
		t.Errorf("locks left after every group's unlock: %+v", list.Locks)
	}
}

func TestRetryAt(t *testing.T) {
	now := mustTime(t, "2026-01-02T14:00:30.5Z")
	for _, tt := range []struct {
		secs int64
		want string
	}{
		{1, "14:00:32 UTC"},
		{90, "14:02:01 UTC"},
		{240, "14:05 UTC"}, // 14:04:30.5, rounded up
		{3600, "15:01 UTC"},
	} {
		if got := retryAt(now, tt.secs); got != tt.want {
			t.Errorf("retryAt(+%ds) = %q, want %q", tt.secs, got, tt.want)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// TestShowValue: a cell shows a client's value as it is, separators
// included, unless it holds a look-alike or a hidden character.
func TestShowValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"Mozilla/5.0 (KHTML, like Gecko)", "Mozilla/5.0 (KHTML, like Gecko)"},
		{"~tilde", "~tilde"},
		{"аdmin", `"\u0430dmin"`},
		{"curl/8.5.0 \u202e0.5.8/lruc", `"curl/8.5.0 \u202e0.5.8/lruc"`},
		{"a,аdmin", `"a,\u0430dmin"`},
	} {
		if got := showValue(tc.in); got != tc.want {
			t.Errorf("showValue(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzParseAttemptQuery checks the attempts query's parameters: an
// outcome of the list or none, a positive limit at most
// backend.MaxQueryLimit; anything else a badQuery (400), never a panic.
func FuzzParseAttemptQuery(f *testing.F) {
	f.Add("alice", "192.0.2.1", "failure", "", "50")
	f.Add("", "", "nope", "x", "-1")
	f.Add("", "", "", "", "99999999999999999999")
	f.Fuzz(func(t *testing.T, username, ip, outcome, before, limit string) {
		q, err := parseAttemptQuery(username, ip, outcome, before, limit)
		if err != nil {
			if _, ok := err.(badQuery); !ok {
				t.Fatalf("parseAttemptQuery: %T %v, want a badQuery", err, err)
			}
			return
		}
		if outcome != "" && !slices.Contains(outcomes, outcome) || q.Limit < 0 || q.Limit > backend.MaxQueryLimit || limit != "" && q.Limit == 0 {
			t.Fatalf("parseAttemptQuery(%q, %q) = %+v", outcome, limit, q)
		}
		if q.Username != username || q.IP != ip || q.Outcome != outcome || q.Before != before {
			t.Fatalf("parseAttemptQuery changed the subject or cursor: %+v", q)
		}
	})
}
