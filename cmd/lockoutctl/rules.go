package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// How the tool knows the policy's rules.
//
// The engine's operator functions need the policy's rules: a key is the
// policy's only when its rule name is one of them, and a subject's keys are
// made from the rules' fields (and, for IPs, their prefix lengths). The
// service's rules are in its code, not in the store. But every key
// describes itself, prefix:kind:rule:{tag=value,...}, so on a store that
// can list its keys (Redis, bbolt) the tool reads the rules off the keys
// under the prefix: each rule's name, its fields in order, and the prefix
// lengths its IPv4 and IPv6 keys use. A rule that holds no key has nothing
// to show, unlock or reset, so what the listing finds is all the tool
// needs. -rules adds what keys cannot tell (limits) and rules that hold no
// key yet; a -rules rule whose fields disagree with its keys is an error.
//
// memcached cannot list its keys: there the tool uses the -rules rules, by
// default "username,username+ip,ip": the names lockout.ByUsername,
// ByUsernameAndIP and ByIP give (and the example server uses). Name the
// service's rules with -rules when they differ: a rule the tool does not
// know is out of its reach on memcached.

// defaultRules are the rules assumed on a store that cannot list, when
// -rules names none.
const defaultRules = "username,username+ip,ip"

// toolRule is a rule as the tool knows it.
type toolRule struct {
	lockout.Rule
	limitKnown bool
	// fromKeys is set when the store holds keys of the rule.
	fromKeys bool
	// device is set for the rule of known devices, which the policy makes
	// from its lockout.DeviceConfig: the tool's policy has one, so that
	// an unlock of the username, reset-all and locks reach its keys.
	device bool
}

// parseField maps a field's name in -rules to a lockout.Field.
func parseField(s string) lockout.Field {
	switch strings.ToLower(s) {
	case "username", "user", "u":
		return lockout.Username
	case "ip":
		return lockout.IP
	case "useragent", "user-agent", "ua":
		return lockout.UserAgent
	}
	return lockout.Field(s)
}

// parseRules parses -rules: [name=]field+field[:limit],...
func parseRules(spec string, v4, v6 int) ([]toolRule, error) {
	var out []toolRule
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var r toolRule
		name, fields, ok := strings.Cut(item, "=")
		if !ok {
			name, fields = "", item
		}
		fields, limit, hasLimit := strings.Cut(fields, ":")
		if hasLimit {
			n, err := strconv.Atoi(limit)
			if err != nil || n <= 0 {
				return nil, usageErr("-rules %q: limit %q: want a number > 0", item, limit)
			}
			r.Limit, r.limitKnown = n, true
		}
		for f := range strings.SplitSeq(fields, "+") {
			if f == "" {
				return nil, usageErr("-rules %q: an empty field", item)
			}
			r.Fields = append(r.Fields, parseField(f))
		}
		r.Name = name
		if r.Name == "" {
			var names []string
			for _, f := range r.Fields {
				names = append(names, string(f))
			}
			r.Name = strings.Join(names, "+")
		}
		r.IPv4Prefix, r.IPv6Prefix = v4, v6
		out = append(out, r)
	}
	return out, nil
}

// keyRule is what one key tells about its rule.
type keyRule struct {
	fields     []lockout.Field
	ipv4, ipv6 int // prefix lengths seen; 0: none seen
	// device is set for the rule of known devices (lockout.DeviceConfig),
	// keyed by the username and the device: {u=...,d=...}.
	device bool
}

// validRuleName reports whether s may name a rule (keys.go: no ':').
func validRuleName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '+') {
			return false
		}
	}
	return true
}

// ruleOfKey reads the rule off a key of prefix: its name, fields and IP
// prefix length. It reports false for a key that is not a policy's key
// under exactly this prefix (another prefix that begins with it, other
// data): after the prefix come one kind byte, ':', a rule name without
// ':', and the subject in braces.
func ruleOfKey(prefix, key string) (string, keyRule, bool) {
	rest, ok := strings.CutPrefix(key, prefix+":")
	if !ok || len(rest) < 2 || rest[1] != ':' || !strings.ContainsRune("alh", rune(rest[0])) {
		return "", keyRule{}, false
	}
	name, subj, ok := strings.Cut(rest[2:], ":{")
	if !ok || !validRuleName(name) {
		return "", keyRule{}, false
	}
	subj, ok = strings.CutSuffix(subj, "}")
	if !ok || subj == "" {
		return "", keyRule{}, false
	}
	var kr keyRule
	for part := range strings.SplitSeq(subj, ",") {
		tag, v, ok := strings.Cut(part, "=")
		if !ok {
			return "", keyRule{}, false
		}
		switch {
		case tag == "u":
			kr.fields = append(kr.fields, lockout.Username)
		case tag == "ua":
			kr.fields = append(kr.fields, lockout.UserAgent)
		case tag == "ip":
			kr.fields = append(kr.fields, lockout.IP)
			var p netip.Prefix
			if a, err := netip.ParseAddr(v); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else if p, err = netip.ParsePrefix(v); err != nil {
				return "", keyRule{}, false
			}
			if p.Addr().Is4() {
				kr.ipv4 = p.Bits()
			} else {
				kr.ipv6 = p.Bits()
			}
		case tag == "d" && !kr.device:
			kr.device = true
		case strings.HasPrefix(tag, "f.") && len(tag) > 2:
			kr.fields = append(kr.fields, lockout.Field(tag[2:]))
		default:
			return "", keyRule{}, false
		}
	}
	if kr.device && !slices.Equal(kr.fields, []lockout.Field{lockout.Username}) {
		return "", keyRule{}, false // a device's keys hold its username and itself
	}
	return name, kr, true
}

// discoverRules lists the keys under prefix and returns the rules they
// were made by, in the order of their names.
func discoverRules(ctx context.Context, l backend.Lister, prefix string) (map[string]keyRule, error) {
	found := map[string]keyRule{}
	for key, err := range l.Keys(ctx, prefix+":") {
		if err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		name, kr, ok := ruleOfKey(prefix, key)
		if !ok {
			continue
		}
		old, seen := found[name]
		if !seen {
			found[name] = kr
			continue
		}
		if !slices.Equal(old.fields, kr.fields) || old.device != kr.device {
			continue // not made by one rule: ignore the stray key
		}
		if old.ipv4 == 0 {
			old.ipv4 = kr.ipv4
		}
		if old.ipv6 == 0 {
			old.ipv6 = kr.ipv6
		}
		found[name] = old
	}
	return found, nil
}

// resolveRules returns the rules the tool works with (see the comment at
// the top of this file) and whether they were read off the keys.
func (a *app) resolveRules(ctx context.Context, store backend.Backend) ([]toolRule, error) {
	spec := a.rules
	l, canList := store.(backend.Lister)
	if spec == "" && !canList {
		spec = defaultRules
	}
	rules, err := parseRules(spec, a.ipv4Prefix, a.ipv6Prefix)
	if err != nil {
		return nil, err
	}
	if !canList {
		return rules, nil
	}
	found, err := discoverRules(ctx, l, a.prefix)
	if err != nil {
		return nil, err
	}
	for i := range rules {
		r := &rules[i]
		kr, ok := found[r.Name]
		if !ok {
			continue
		}
		if kr.device {
			return nil, usageErr("-rules: rule %s: the store's keys of rule %s are a known device's (Config.Devices); leave it out of -rules", r.Name, r.Name)
		}
		if !slices.Equal(kr.fields, r.Fields) {
			return nil, usageErr("-rules: rule %s is keyed by %v, but the store's keys of rule %s are keyed by %v", r.Name, r.Fields, r.Name, kr.fields)
		}
		r.fromKeys = true
		if kr.ipv4 != 0 {
			r.IPv4Prefix = kr.ipv4
		}
		if kr.ipv6 != 0 {
			r.IPv6Prefix = kr.ipv6
		}
		delete(found, r.Name)
	}
	var names []string
	for name := range found {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		kr := found[name]
		r := toolRule{Rule: lockout.Rule{Name: name, Fields: kr.fields, IPv4Prefix: a.ipv4Prefix, IPv6Prefix: a.ipv6Prefix}, fromKeys: true, device: kr.device}
		if kr.ipv4 != 0 {
			r.IPv4Prefix = kr.ipv4
		}
		if kr.ipv6 != 0 {
			r.IPv6Prefix = kr.ipv6
		}
		rules = append(rules, r)
	}
	if !slices.ContainsFunc(rules, func(r toolRule) bool { return !r.device }) {
		// An empty prefix, or only known devices' keys: a policy needs a
		// rule (its keys would have shown; it has none to act on).
		defaults, err := parseRules(defaultRules, a.ipv4Prefix, a.ipv6Prefix)
		if err != nil {
			return nil, err
		}
		rules = append(rules, defaults...)
	}
	return rules, nil
}

// ruleNames lists the names of rules.
func ruleNames(rules []toolRule) string {
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}
