package lockout

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-lockout/lockout/backend"
	"golang.org/x/text/secure/precis"
)

func mustRule(t testing.TB, r Rule) rule {
	t.Helper()
	cr, err := r.compile()
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// subjectKey returns the attempts key of r for s, and false when r does not
// apply to s or s is invalid.
func subjectKey(t testing.TB, prefix string, r *rule, s Subject) (string, bool) {
	p := &Policy{prefix: prefix, canon: CanonicalizeUsername}
	c, err := p.canonicalize(s)
	if err != nil {
		return "", false
	}
	subj, ok := appendSubject(nil, r, &c)
	// A decision builds its keys in place (buildKeys): the same.
	p.rules = []rule{*r}
	a := &Attempt{p: p, c: c}
	a.buildKeys(&a.c)
	if !ok {
		if len(a.rules) != 0 {
			t.Fatalf("rule %s, subject %+v: buildKeys made keys for a subject it cannot key", r.Name, s)
		}
		return "", false
	}
	key := string(appendKey(nil, prefix, kindAttempts, r.Name, subj))
	lock := string(appendKey(nil, prefix, kindLock, r.Name, subj))
	if len(a.rules) != 1 || a.attemptsKey(a.rules[0]) != key || a.lockKey(a.rules[0]) != lock {
		t.Fatalf("rule %s, subject %+v: buildKeys made %q, want %q and %q", r.Name, s, a.keys, key, lock)
	}
	return key, true
}

func TestKeyExamples(t *testing.T) {
	user := mustRule(t, ByUsername(3))
	ip := mustRule(t, ByIP(3))
	pair := mustRule(t, ByUsernameAndIP(3))
	custom := mustRule(t, Rule{Name: "tenant-user", Fields: []Field{"tenant", Username}})
	ua := mustRule(t, Rule{Fields: []Field{UserAgent}})
	long := strings.Repeat("x", 200)
	tests := []struct {
		r    *rule
		s    Subject
		want string
	}{
		{&user, Subject{Username: "Alice"}, "lockout:a:username:{u=alice}"},
		{&user, Subject{Username: "203.0.113.5"}, "lockout:a:username:{u=203.0.113.5}"},
		{&ip, Subject{IP: "203.0.113.5"}, "lockout:a:ip:{ip=203.0.113.5}"},
		{&ip, Subject{IP: "::ffff:203.0.113.5"}, "lockout:a:ip:{ip=203.0.113.5}"},
		{&ip, Subject{IP: "2001:db8:1:2:3:4:5:6"}, "lockout:a:ip:{ip=2001:db8:1:2::/64}"},
		{&ip, Subject{IP: "fe80::1%eth0"}, "lockout:a:ip:{ip=fe80::/64}"},
		{&pair, Subject{Username: "bob@example.com", IP: "192.0.2.1"}, "lockout:a:username+ip:{u=bob@example.com,ip=192.0.2.1}"},
		{&user, Subject{Username: "a,b=c{d}%"}, "lockout:a:username:{u=a%2Cb%3Dc%7Bd%7D%25}"},
		{&custom, Subject{Username: "x", Fields: map[string]string{"tenant": "acme"}}, "lockout:a:tenant-user:{f.tenant=acme,u=x}"},
		{&ua, Subject{UserAgent: "curl/8.0 (x)"}, "lockout:a:useragent:{ua=curl/8.0%20%28x%29}"},
		{&ua, Subject{UserAgent: long}, "lockout:a:useragent:{ua=~" + hashOf(long) + "}"},
	}
	for _, tc := range tests {
		got, ok := subjectKey(t, DefaultPrefix, tc.r, tc.s)
		if !ok || got != tc.want {
			t.Errorf("key of %+v = %q (%v), want %q", tc.s, got, ok, tc.want)
		}
	}
	// Rules that do not apply.
	for _, tc := range []struct {
		r *rule
		s Subject
	}{
		{&user, Subject{IP: "192.0.2.1"}},
		{&pair, Subject{Username: "bob"}},
		{&custom, Subject{Username: "bob"}},
		{&ua, Subject{}},
	} {
		if k, ok := subjectKey(t, DefaultPrefix, tc.r, tc.s); ok {
			t.Errorf("rule %s applies to %+v: %q", tc.r.Name, tc.s, k)
		}
	}
}

func hashOf(v string) string {
	return string(appendValue(nil, v)[1:])
}

func TestParseKey(t *testing.T) {
	pair := mustRule(t, ByUsernameAndIP(3))
	u := mustRule(t, ByUsername(3))
	rules := []rule{u, pair}
	long := strings.Repeat("y", 100)
	k, _ := subjectKey(t, "app:v1", &pair, Subject{Username: "Eve,{x}", IP: "2001:db8::7"})
	kind, info, err := parseKey("app:v1", rules, k)
	if err != nil || kind != kindAttempts || info.Rule != "username+ip" || len(info.Subject) != 2 ||
		info.Subject[0] != (SubjectField{Tag: "u", Value: "eve,{x}"}) || info.Subject[1] != (SubjectField{Tag: "ip", Value: "2001:db8::/64"}) {
		t.Errorf("parseKey(%q) = %c %+v %v", k, kind, info, err)
	}
	if s := info.String(); s != `username+ip:u="eve,{x}",ip=2001:db8::/64` {
		t.Errorf("String() = %q", s)
	}
	k, _ = subjectKey(t, "app:v1", &u, Subject{Username: long})
	if _, info, err := parseKey("app:v1", rules, k); err != nil || !strings.HasPrefix(info.Subject[0].Value, "~") || !info.Subject[0].Hashed {
		t.Errorf("parseKey of a hashed value: %+v %v", info, err)
	}
	// A value that looks like a hash, but is not one: an operator's tools
	// must not take it for the hash of another value.
	lookalike := "~" + strings.Repeat("a", hashLen)
	k, _ = subjectKey(t, "app:v1", &u, Subject{Username: lookalike})
	if _, info, err := parseKey("app:v1", rules, k); err != nil || info.Subject[0].Value != lookalike || info.Subject[0].Hashed {
		t.Errorf("parseKey(%q) of a value beginning with '~': %+v %v", k, info, err)
	}
	for _, good := range []string{
		"app:v1:l:username:{u=a}",
		"app:v1:h:username:{u=%25}",
		"app:v1:a:username+ip:{u=a,ip=192.0.2.1}",
		"app:v1:a:username+ip:{u=a,ip=2001:db8::/64}",
		"app:v1:a:username+ip:{u=a,ip=10.0.0.0/8}",
		"app:v1:a:username:{u=~" + strings.Repeat("A", hashLen) + "}",
	} {
		if _, _, err := parseKey("app:v1", rules, good); err != nil {
			t.Errorf("parseKey(%q): %v", good, err)
		}
	}
	for _, bad := range []string{
		"", "app:v1", "other:a:x:{u=a}", "app:v1:a:x", "app:v1:a:x:{u=a", "app:v1:a:x:{u}", "app:v1:a:x:{u=%G0}", "app:v1:a:x:{u=%4}",
		"app:v1:a:x:{u=a}",                        // no such rule
		"app:v1:x:username:{u=a}",                 // no such kind
		"app:v1:la:username:{u=a}",                // a kind of two bytes
		"app:v1:l:l:username:{u=a}",               // rule "l:username"
		"app:v1:a:username:{ip=a}",                // the wrong tag
		"app:v1:a:username:{u=a,ip=192.0.2.1}",    // a field too many
		"app:v1:a:username+ip:{u=a}",              // a field too few
		"app:v1:a:username+ip:{ip=192.0.2.1,u=a}", // fields out of order
		"app:v1:a:username:{u=}",                  // an empty value
		"app:v1:a:username:{u=a}x",                // trailing bytes
		"app:v1:a:username:{u=a}}",                // a raw '}'
		"app:v1:a:username:{u={a}",                // a raw '{'
		"app:v1:a:username:{u=a b}",               // a raw space
		"app:v1:a:username:{u=%61}",               // a needless escape
		"app:v1:a:username:{u=%7e}",               // a lower-case escape
		"app:v1:a:username:{u=~abc}",              // a hash too short
		"app:v1:a:username:{u=~" + strings.Repeat("*", hashLen) + "}",
		"app:v1:a:username:{u=" + strings.Repeat("a", maxValueLen+1) + "}", // should have been hashed
		"app:v1:a:username+ip:{u=a,ip=192.0.2.1/32}",                       // a full-length prefix
		"app:v1:a:username+ip:{u=a,ip=10.0.0.1/8}",                         // an unmasked prefix
		"app:v1:a:username+ip:{u=a,ip=::ffff:192.0.2.1}",                   // a mapped address
		"app:v1:a:username+ip:{u=a,ip=fe80::1%25eth0}",                     // a zone
		"app:v1:a:username+ip:{u=a,ip=2001:DB8::1}",                        // not canonical
		"app:v1:a:username+ip:{u=a,ip=x}",
	} {
		if _, _, err := parseKey("app:v1", rules, bad); !errors.Is(err, errBadKey) {
			t.Errorf("parseKey(%q) = %v, want errBadKey", bad, err)
		}
	}
}

// overlapping are policies whose prefixes begin one another, with the same
// rules and rules named like kinds, fields and prefix parts, so that keys
// of one look as much as possible like keys of another.
var overlapping = []string{"p", "p:l", "p:l:ip", "p:a", "p:", "q", "q:l:x", "q:l", "l", "x"}

func overlappingRules(t testing.TB) []rule {
	return []rule{
		mustRule(t, ByIP(1)),
		mustRule(t, ByUsername(1)),
		mustRule(t, Rule{Name: "l", Fields: []Field{IP}}),
		mustRule(t, Rule{Name: "x", Fields: []Field{"l", Username}}),
	}
}

// TestKeyOwnership checks that a key belongs to one policy only, however
// their prefixes overlap: every key a policy makes parses under its own
// prefix and rules and under no other.
func TestKeyOwnership(t *testing.T) {
	rules := overlappingRules(t)
	s := Subject{Username: "l:ip:{u=a}", IP: "2001:db8::1", Fields: map[string]string{"l": "ip"}}
	p := &Policy{canon: CanonicalizeUsername}
	c, err := p.canonicalize(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, owner := range overlapping {
		for i := range rules {
			subj, ok := appendSubject(nil, &rules[i], &c)
			if !ok {
				t.Fatalf("rule %s does not apply", rules[i].Name)
			}
			for _, kind := range []byte{kindAttempts, kindLock, kindHistory} {
				key := string(appendKey(nil, owner, kind, rules[i].Name, subj))
				for _, other := range overlapping {
					gotKind, info, err := parseKey(other, rules, key)
					switch {
					case other == owner && (err != nil || gotKind != kind || info.Rule != rules[i].Name):
						t.Errorf("policy %q: its own key %q: %c %v %v", owner, key, gotKind, info, err)
					case other != owner && err == nil:
						t.Errorf("policy %q owns %q, a key of policy %q (%c %v)", other, key, owner, gotKind, info)
					}
				}
			}
		}
	}
	// The leak of issue 13: "p" and "p:l", "q" and "q:l:x", each with its
	// default rules.
	ip := []rule{mustRule(t, ByIP(1))}
	for _, tc := range []struct{ mine, theirs string }{{"p", "p:l"}, {"q", "q:l:x"}} {
		subj, _ := appendSubject(nil, &ip[0], &c)
		key := string(appendKey(nil, tc.theirs, kindLock, "ip", subj))
		if _, _, err := parseKey(tc.mine, ip, key); err == nil {
			t.Errorf("policy %q owns %q", tc.mine, key)
		}
	}
}

// reencode builds the key info describes, as appendKey would. A value that
// looks like a hash is written as one when hashed is set.
func reencode(prefix string, kind byte, info KeyInfo, hashed bool) string {
	var subj []byte
	for i, f := range info.Subject {
		if i > 0 {
			subj = append(subj, ',')
		}
		subj = append(subj, f.Tag...)
		subj = append(subj, '=')
		switch {
		case f.Tag == "ip", hashed && strings.HasPrefix(f.Value, "~") && len(f.Value) == 1+hashLen:
			subj = append(subj, f.Value...)
		default:
			subj = appendValue(subj, f.Value)
		}
	}
	return string(appendKey(nil, prefix, kind, info.Rule, subj))
}

// FuzzParseKey checks the parser against any string: a key is owned by one
// policy at most among policies whose prefixes overlap, and a key a policy
// owns is exactly the key its parts encode to, so no two strings are read
// as the same key.
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{
		"p:l:ip:{ip=192.0.2.1}", "p:l:l:ip:{ip=192.0.2.1}", "q:l:x:l:ip:{ip=2001:db8::/64}",
		"p::l:username:{u=a%2C}", "p:a:x:{f.l=a,u=~" + strings.Repeat("b", hashLen) + "}",
		"p:l:ip:{ip=10.0.0.0/8}", "p:h:username:{u=%7E}", "x:l:l:{ip=::1}",
	} {
		f.Add(k)
	}
	rules := overlappingRules(f)
	f.Fuzz(func(t *testing.T, key string) {
		owner := ""
		for _, prefix := range overlapping {
			kind, info, err := parseKey(prefix, rules, key)
			if err != nil {
				if !errors.Is(err, errBadKey) {
					t.Fatalf("parseKey(%q, %q): %v, want errBadKey", prefix, key, err)
				}
				continue
			}
			if owner != "" {
				t.Fatalf("%q is owned by policy %q and by policy %q", key, owner, prefix)
			}
			owner = prefix
			if info.Key != key || len(key) > MaxKeyLen {
				t.Fatalf("parseKey(%q): info %+v", key, info)
			}
			if reencode(prefix, kind, info, true) != key && reencode(prefix, kind, info, false) != key {
				t.Fatalf("parseKey(%q, %q) = %c %+v, which encodes as %q", prefix, key, kind, info, reencode(prefix, kind, info, true))
			}
		}
	})
}

// FuzzKeys checks that keys are unambiguous and bounded: two subjects get
// the same key only when they are the same after canonicalisation, a key
// never exceeds MaxKeyLen, and it parses back to its fields.
func FuzzKeys(f *testing.F) {
	f.Add("alice", "192.0.2.1", "ua", "v", "203.0.113.5", "203.0.113.5", "ua", "v", uint8(0), uint8(1))
	f.Add("a,ip=1", "::1", "x=y", "}", "a", "::1", "x", "y=}", uint8(2), uint8(2))
	f.Add("Alice", "::ffff:1.2.3.4", "", "", "ALICE", "1.2.3.4", "", "", uint8(3), uint8(3))
	f.Add(strings.Repeat("a", 300), "2001:db8::1", "long", strings.Repeat("b", 300), strings.Repeat("a", 300)+"b", "2001:db8::2", "long", strings.Repeat("b", 299), uint8(4), uint8(4))
	rules := []Rule{
		ByUsername(1), ByIP(1), ByUsernameAndIP(1),
		{Name: "ua", Fields: []Field{UserAgent}},
		{Name: "custom", Fields: []Field{"f", Username, IP, UserAgent}},
		{Name: "custom2", Fields: []Field{"f", "g"}},
	}
	compiled := make([]rule, len(rules))
	for i, r := range rules {
		compiled[i] = mustRule(f, r)
	}
	f.Fuzz(func(t *testing.T, u1, ip1, ua1, v1, u2, ip2, ua2, v2 string, r1, r2 uint8) {
		s1 := Subject{Username: u1, IP: ip1, UserAgent: ua1, Fields: map[string]string{"f": v1, "g": ua1}}
		s2 := Subject{Username: u2, IP: ip2, UserAgent: ua2, Fields: map[string]string{"f": v2, "g": ua2}}
		ra, rb := &compiled[int(r1)%len(compiled)], &compiled[int(r2)%len(compiled)]
		k1, ok1 := subjectKey(t, "p", ra, s1)
		k2, ok2 := subjectKey(t, "p", rb, s2)
		for _, k := range []string{k1, k2} {
			if len(k) > MaxKeyLen {
				t.Fatalf("key of %d bytes > MaxKeyLen %d", len(k), MaxKeyLen)
			}
			if k == "" {
				continue
			}
			kind, info, err := parseKey("p", compiled, k)
			if err != nil || kind != kindAttempts {
				t.Fatalf("parseKey(%q): %v", k, err)
			}
			if again := reencode("p", kind, info, strings.Contains(k, "=~")); again != k {
				t.Fatalf("key %q parses as %+v, which encodes as %q", k, info, again)
			}
			if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
				t.Fatalf("key %q does not have exactly one hash tag", k)
			}
			_ = info
		}
		if !ok1 || !ok2 || k1 != k2 {
			return
		}
		// Equal keys: same rule and the same canonical values.
		if ra.Name != rb.Name {
			t.Fatalf("rules %s and %s share key %q", ra.Name, rb.Name, k1)
		}
		p := &Policy{canon: CanonicalizeUsername}
		c1, _ := p.canonicalize(s1)
		c2, _ := p.canonicalize(s2)
		for _, fld := range ra.Fields {
			var a, b string
			switch fld {
			case Username:
				a, b = c1.username, c2.username
			case IP:
				a, b = string(appendIP(nil, &c1, ra)), string(appendIP(nil, &c2, ra))
			case UserAgent:
				a, b = c1.userAgent, c2.userAgent
			default:
				a, b = c1.fields[string(fld)], c2.fields[string(fld)]
			}
			if a != b && !(len(a) > maxValueLen/3 && len(b) > maxValueLen/3 && bytes.Equal(appendValue(nil, a), appendValue(nil, b))) {
				t.Fatalf("field %s: %q and %q share key %q", fld, a, b, k1)
			}
		}
	})
}

// FuzzCanonicalizeUsername checks the ASCII fast path against the PRECIS
// profile.
func FuzzCanonicalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "ALICE", "Ａｌｉｃｅ", "a b", "", "x@y.z", "\x7f", "é", "İ", "~!#$%^&*()"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := CanonicalizeUsername(s)
		want, werr := precis.UsernameCaseMapped.String(s)
		if (err == nil) != (werr == nil) || got != want {
			t.Fatalf("CanonicalizeUsername(%q) = %q, %v; precis says %q, %v", s, got, err, want, werr)
		}
		if err == nil && !utf8.ValidString(got) {
			t.Fatalf("canonical %q is not UTF-8", got)
		}
	})
}

// FuzzParseIP checks that every accepted address is canonical: unmapped,
// without a zone, and stable under a second parse; and that the address a
// subject gives is kept as its canonical string (keys and events use it
// unformatted) only when it is one.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "fe80::1%eth0", "2001:db8::1", "1.2.3.4:80", "1.2.3.4, 5.6.7.8", "",
		"010.1.1.1", "1.2.3.4%eth0", "::1.2.3.4", "0.0.0.0", "2001:DB8::1", "2001:db8:0::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, err := ParseIP(s)
		if err != nil {
			if _, perr := netip.ParseAddr(s); perr == nil {
				t.Fatalf("ParseIP(%q) rejected an address netip accepts: %v", s, err)
			}
			return
		}
		if ip.Is4In6() || ip.Zone() != "" {
			t.Fatalf("ParseIP(%q) = %v: not canonical", s, ip)
		}
		again, err := ParseIP(ip.String())
		if err != nil || again != ip {
			t.Fatalf("ParseIP(%q) = %v, which parses again as %v, %v", s, ip, again, err)
		}
		p := &Policy{canon: CanonicalizeUsername}
		c, err := p.canonicalize(Subject{IP: s})
		if err != nil {
			t.Fatalf("canonicalize(IP %q): %v", s, err)
		}
		if got := c.ipString(); got != ip.String() {
			t.Fatalf("canonicalize(IP %q).ipString() = %q, want %q", s, got, ip.String())
		}
		r := &rule{Rule: Rule{Name: "ip", Fields: []Field{IP}, IPv4Prefix: 32, IPv6Prefix: 128}}
		if got, want := string(appendIP(nil, &c, r)), ip.String(); got != want {
			t.Fatalf("the key part of IP %q is %q, want %q", s, got, want)
		}
	})
}

func TestSchedules(t *testing.T) {
	m := time.Minute
	tests := []struct {
		name string
		s    Schedule
		want []time.Duration // for n = 1, 2, ...
	}{
		{"fixed", Fixed(5 * m), []time.Duration{5 * m, 5 * m, 5 * m}},
		{"list", List(m, 2*m, 5*m, 10*m, Forever), []time.Duration{m, 2 * m, 5 * m, 10 * m, Forever, Forever}},
		{"list repeats", List(m, 3*m), []time.Duration{m, 3 * m, 3 * m, 3 * m}},
		{"exponential", Exponential(m, 2, 10*m), []time.Duration{m, 2 * m, 4 * m, 8 * m, 10 * m, 10 * m}},
		{"exponential 1.5", Exponential(10*time.Second, 1.5, time.Hour), []time.Duration{10 * time.Second, 15 * time.Second, 22500 * time.Millisecond}},
	}
	for _, tc := range tests {
		for i, want := range tc.want {
			if got := tc.s.Lockout(i + 1); got != want {
				t.Errorf("%s: lockout %d = %v, want %v", tc.name, i+1, got, want)
			}
		}
	}
	// Huge n saturates at the maximum instead of overflowing.
	if got := Exponential(m, 2, time.Hour).Lockout(1 << 20); got != time.Hour {
		t.Errorf("exponential lockout 2^20 = %v", got)
	}
	// Jitter stretches each duration but never past the maximum.
	j := ExponentialSchedule{Base: m, Factor: 2, Max: 5 * m, Jitter: 0.5}
	for n := 1; n <= 6; n++ {
		base := Exponential(m, 2, 5*m).Lockout(n)
		for range 1000 {
			d := j.Lockout(n)
			if d < base || d > 5*m || d > base+base/2 {
				t.Fatalf("jittered lockout %d = %v, want within [%v, min(%v, 5m)]", n, d, base, base+base/2)
			}
		}
	}
	for _, bad := range []Schedule{
		List(), List(0), List(-2), List(Forever, m), Fixed(-m),
		Exponential(0, 2, m), Exponential(m, 0.5, m), Exponential(m, 2, m/2), Exponential(m, 2, Forever),
		ExponentialSchedule{Base: m, Factor: 2, Max: m, Jitter: 2},
	} {
		if err := bad.(validator).validate(); err == nil {
			t.Errorf("schedule %#v validates", bad)
		}
	}
}

// TestSubjectString: a value that could read as another subject, or hides
// a character, is quoted; a plain one is not.
func TestSubjectString(t *testing.T) {
	tests := []struct {
		fields []SubjectField
		want   string
	}{
		{[]SubjectField{{Tag: "u", Value: "alice"}, {Tag: "ip", Value: "192.0.2.1"}}, "u=alice,ip=192.0.2.1"},
		{[]SubjectField{{Tag: "ip", Value: "2001:db8::/64"}}, "ip=2001:db8::/64"},
		{[]SubjectField{{Tag: "ua", Value: "Mozilla/5.0 (X11; Linux)"}}, "ua=Mozilla/5.0 (X11; Linux)"},
		{[]SubjectField{{Tag: "u", Value: "élodie"}}, "u=élodie"},
		{[]SubjectField{{Tag: "u", Value: "alice,ip=192.0.2.1"}, {Tag: "ip", Value: "192.0.2.9"}}, `u="alice,ip=192.0.2.1",ip=192.0.2.9`},
		{[]SubjectField{{Tag: "u", Value: "a=b"}}, `u="a=b"`},
		{[]SubjectField{{Tag: "u", Value: `say "hi"`}}, `u="say \"hi\""`},
		{[]SubjectField{{Tag: "u", Value: `back\slash`}}, `u="back\\slash"`},
		{[]SubjectField{{Tag: "u", Value: "ali\u200dce"}}, `u="ali\u200dce"`},
		{[]SubjectField{{Tag: "ua", Value: "x\ny"}}, `ua="x\ny"`},
		{[]SubjectField{{Tag: "f.team", Value: ""}}, `f.team=""`},
		{[]SubjectField{{Tag: "ua", Value: "~abcdefghijklmnopqrstuvw", Hashed: true}}, "ua=~abcdefghijklmnopqrstuvw"},
		{[]SubjectField{{Tag: "ua", Value: "~abcdefghijklmnopqrstuvw"}}, `ua="~abcdefghijklmnopqrstuvw"`},
	}
	for _, tt := range tests {
		if got := (KeyInfo{Subject: tt.fields}).SubjectString(); got != tt.want {
			t.Errorf("SubjectString(%+v) = %s, want %s", tt.fields, got, tt.want)
		}
	}
}

// TestQuoteValue: look-alikes and hidden characters show as what they are;
// plain values, in any one script, show as they are.
func TestQuoteValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"élodie", "élodie"},
		{"админ", "админ"},
		{"ΑΒΓ", "ΑΒΓ"},
		{"山田たろう", "山田たろう"},
		{"john.doe@example.com", "john.doe@example.com"},
		{"Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"},
		{"аdmin", `"\u0430dmin"`},        // a Cyrillic а
		{"pаypаl", `"p\u0430yp\u0430l"`}, // two of them
		{"adminα", `"admin\u03b1"`},      // Latin and Greek
		{"curl/8.5.0 \u202e0.5.8/lruc", `"curl/8.5.0 \u202e0.5.8/lruc"`},
		{"a,b", `"a,b"`},
		{"", `""`},
		{"~x", `"~x"`},
		{"alice ", `"alice "`},
		{" alice", `" alice"`},
		{"alice\xff", `"alice\xff"`},
		{"ua\x9b[31mred", `"ua\x9b[31mred"`},
	} {
		if got := QuoteValue(tc.in); got != tc.want {
			t.Errorf("QuoteValue(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestAttemptKeys checks the keys an attempt derives from its counter's
// key (lock marker, history, subject part) against appendKey, for each
// rule of a policy with a prefix of its own (holding ':'), for subjects
// with escaped and hashed values.
func TestAttemptKeys(t *testing.T) {
	rules := []Rule{ByUsername(3), ByIP(3), ByUsernameAndIP(3), {Name: "tenant-user", Fields: []Field{"tenant", Username}, Limit: 3}}
	p, err := New(nullBackend{}, Config{Prefix: "app:v2", Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, s := range []Subject{
		{Username: "Alice", IP: "192.0.2.1", Fields: map[string]string{"tenant": "acme"}},
		{IP: "2001:db8::1"},
		{Username: strings.Repeat("x", 300), Fields: map[string]string{"tenant": "t,{}"}},
	} {
		c, err := p.canonicalize(s)
		if err != nil {
			t.Fatal(err)
		}
		a := &Attempt{p: p}
		a.buildKeys(&c)
		if len(a.rules) == 0 {
			t.Fatalf("%+v: no rule applies", s)
		}
		hist := a.historyKeys()
		for _, h := range a.rules {
			subj, ok := appendSubject(nil, h.r, &c)
			if !ok {
				t.Fatalf("%+v: rule %s has no subject", s, h.r.Name)
			}
			for _, tc := range []struct {
				kind byte
				got  string
			}{{kindAttempts, a.attemptsKey(h)}, {kindLock, a.lockKey(h)}, {kindHistory, hist.of(h)}} {
				if want := string(appendKey(nil, "app:v2", tc.kind, h.r.Name, subj)); tc.got != want {
					t.Errorf("%+v, rule %s, kind %c: key %q, want %q", s, h.r.Name, tc.kind, tc.got, want)
				}
			}
			if got := a.subjectKey(h); got != string(subj) {
				t.Errorf("%+v, rule %s: subject %q, want %q", s, h.r.Name, got, subj)
			}
		}
	}
}

// nullBackend keeps nothing: for tests that need a policy, not a store.
type nullBackend struct{}

func (nullBackend) Do(_ context.Context, ops []backend.Op, res []backend.Result) error {
	clear(res[:len(ops)])
	return nil
}

func (nullBackend) Close() error { return nil }

// FuzzParseNets checks the parser of the allow and deny lists: an entry
// that parses holds the address it names, as the policy keys that
// address (ParseIP: IPv4-mapped IPv6 as IPv4, no zone); an entry that
// does not is an error, never a shared bucket.
func FuzzParseNets(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.0/24", "::ffff:192.0.2.1", "::ffff:192.0.2.0/120", "2001:db8::/48", "fe80::1%eth0", "10.0.0.1/33", "", "0.0.0.0/0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nets, err := parseNets([]string{s})
		if err != nil {
			return
		}
		if len(nets) != 1 || !nets[0].IsValid() {
			t.Fatalf("parseNets(%q) = %v", s, nets)
		}
		addr, _, _ := strings.Cut(s, "/")
		ip, err := ParseIP(addr)
		if err != nil {
			return // a prefix of a form ParseIP does not take for an address
		}
		if !inNets(nets, ip) {
			t.Fatalf("parseNets(%q) = %v, which does not hold %v, the address the policy keys for %q", s, nets, ip, addr)
		}
	})
}
