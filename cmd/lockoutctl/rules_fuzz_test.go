package main

import (
	"strings"
	"testing"

	"github.com/go-lockout/lockout"
)

// FuzzParseRules checks the parser of -rules: a spec it takes gives rules
// of at least one field each, with a positive limit when one is given;
// and it never panics.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{"username:5,ip:20,username+ip:5", "day=username:20", "f.tenant+username", "", ",", "a=:3", "x:0", "u=+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		rules, err := parseRules(spec, 32, 64)
		if err != nil {
			return
		}
		for _, r := range rules {
			if len(r.Fields) == 0 || r.Name == "" || r.limitKnown && r.Limit <= 0 {
				t.Fatalf("parseRules(%q): rule %+v", spec, r)
			}
		}
	})
}

// FuzzRuleOfKey checks what lockoutctl reads off a key: a key it takes is
// of the prefix, has a valid rule name and one field per part of its
// subject; any other key is left alone, and none makes it panic.
func FuzzRuleOfKey(f *testing.F) {
	for _, k := range []string{"lockout:a:username:{u=alice}", "lockout:l:ip:{ip=2001:db8::/64}", "lockout:h:x:{f.t=a,ua=b}", "lockout2:a:x:{u=a}", "lockout:a:x:{}", "lockout:z:x:{u=a}", "lockout:a:x:{u}"} {
		f.Add("lockout", k)
	}
	f.Fuzz(func(t *testing.T, prefix, key string) {
		name, kr, ok := ruleOfKey(prefix, key)
		if !ok {
			return
		}
		if !strings.HasPrefix(key, prefix+":") || !validRuleName(name) {
			t.Fatalf("ruleOfKey(%q, %q) = %q: not a key of the prefix, or no valid rule name", prefix, key, name)
		}
		subj := key[strings.Index(key, ":{")+2 : len(key)-1]
		if n := strings.Count(subj, ",") + 1; len(kr.fields) != n {
			t.Fatalf("ruleOfKey(%q, %q): %d fields for %d parts", prefix, key, len(kr.fields), n)
		}
		for _, fl := range kr.fields {
			if fl == "" || fl == lockout.IP && kr.ipv4 == 0 && kr.ipv6 == 0 && !strings.Contains(subj, "ip=0.0.0.0/0") && !strings.Contains(subj, "ip=::/0") {
				t.Fatalf("ruleOfKey(%q, %q): field %q, prefixes %d and %d", prefix, key, fl, kr.ipv4, kr.ipv6)
			}
		}
	})
}
