package lockout

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Keys look like
//
//	lockout:a:username+ip:{u=alice,ip=203.0.113.5}
//	lockout:l:ip:{ip=2001:db8:1:2::/64}
//
// that is: the policy's prefix, the kind of key, the rule's name, and the
// subject's part in braces (a Redis Cluster hash tag, so that a rule key's
// counter, lock and history share a slot). The subject part lists the rule's
// fields in the rule's order as tag=value, where the tags are fixed ("u",
// "ip", "ua", and "f." plus the name of a custom field) and values are
// percent-escaped: every byte outside [A-Za-z0-9._@+:/-] becomes %XX, so no
// value can contain ',', '=', '{', '}' or '%' raw. A value whose escaped form
// is longer than maxValueLen is replaced by '~' and 23 characters of its
// SHA-256 (base64url): '~' is never produced by escaping. Keys are therefore
// unambiguous and at most MaxKeyLen bytes long.

// Key kinds.
const (
	kindAttempts = 'a' // the attempt counter: reservations and failures
	kindLock     = 'l' // the lock marker; its TTL is the lock's remainder
	kindHistory  = 'h' // the number of lockouts within the history window
)

const (
	maxValueLen  = 64
	maxPrefixLen = 64
	hashLen      = 23 // base64url characters of a hashed value, after its '~'
	// MaxKeyLen bounds the length of every key a Policy produces.
	MaxKeyLen = maxPrefixLen + len(":a:") + maxRuleName + len(":{}") + maxFields*(len("f.")+maxFieldName+len("=,")+maxValueLen)
)

// DefaultPrefix is the key prefix of a Policy whose Config names none.
const DefaultPrefix = "lockout"

func validPrefix(p string) bool {
	if p == "" || len(p) > maxPrefixLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !safeByte(p[i]) || p[i] == '+' || p[i] == '@' {
			return false
		}
	}
	return true
}

func safeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '@' || c == '+' || c == ':' || c == '/'
}

// safeBytes is safeByte as a table, for the loops over a value's bytes.
var safeBytes = func() (t [256]bool) {
	for c := range t {
		t[c] = safeByte(byte(c))
	}
	return t
}()

func fieldTag(f Field) string {
	switch f {
	case Username:
		return "u"
	case IP:
		return "ip"
	case UserAgent:
		return "ua"
	case deviceField:
		return "d"
	}
	return "f." + string(f)
}

// appendSubject appends r's subject part (without braces) for c to buf. It
// reports false when c lacks a field r is keyed by.
func appendSubject(buf []byte, r *rule, c *canonical) ([]byte, bool) {
	for i, f := range r.Fields {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, fieldTag(f)...)
		buf = append(buf, '=')
		switch f {
		case Username:
			if c.username == "" {
				return buf, false
			}
			buf = appendValue(buf, c.username)
		case IP:
			if !c.ip.IsValid() {
				return buf, false
			}
			buf = appendIP(buf, c, r)
		case UserAgent:
			if c.userAgent == "" {
				return buf, false
			}
			buf = appendValue(buf, c.userAgent)
		case deviceField:
			if c.device() == "" {
				return buf, false
			}
			buf = append(buf, c.device()...) // base64url: every byte is safe
		default:
			v := c.fields[string(f)]
			if v == "" {
				return buf, false
			}
			buf = appendValue(buf, v)
		}
	}
	return buf, true
}

// appendIP appends c's address keyed by r's prefix length for its family.
// The characters of an address or prefix are all safe.
func appendIP(buf []byte, c *canonical, r *rule) []byte {
	ip := c.ip
	bits := r.IPv4Prefix
	if ip.Is6() {
		bits = r.IPv6Prefix
	}
	if bits == ip.BitLen() {
		if c.ipStr != "" {
			return append(buf, c.ipStr...) // as the subject gave it: canonical
		}
		return ip.AppendTo(buf)
	}
	p, _ := ip.Prefix(bits) // bits is within range: checked by compile
	return p.AppendTo(buf)
}

// appendValue appends v escaped, or hashed when escaping makes it too long.
func appendValue(buf []byte, v string) []byte {
	n := 0
	for i := 0; i < len(v); i++ {
		if safeBytes[v[i]] {
			n++
		} else {
			n += 3
		}
	}
	if n > maxValueLen {
		sum := sha256.Sum256([]byte(v))
		buf = append(buf, '~')
		return base64.RawURLEncoding.AppendEncode(buf, sum[:])[:len(buf)+hashLen] // len(buf) counts the '~'
	}
	if n == len(v) {
		return append(buf, v...) // the usual case: nothing to escape
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if safeBytes[c] {
			buf = append(buf, c)
		} else {
			buf = append(buf, '%', hex[c>>4], hex[c&15])
		}
	}
	return buf
}

// appendKey appends the key of the given kind for rule name and subject
// part.
func appendKey(buf []byte, prefix string, kind byte, name string, subject []byte) []byte {
	buf = append(buf, prefix...)
	buf = append(buf, ':', kind, ':')
	buf = append(buf, name...)
	buf = append(buf, ':', '{')
	buf = append(buf, subject...)
	return append(buf, '}')
}

// KeyInfo is a key taken apart, for operators.
type KeyInfo struct {
	// Rule is the rule's name.
	Rule string
	// Subject lists the key's fields in the rule's order, as they are
	// stored: canonical, with long values replaced by "~" and a hash.
	Subject []SubjectField
	// Key is the whole key.
	Key string
}

// SubjectField is one field of a key's subject.
type SubjectField struct {
	Tag   string // "u", "ip", "ua", or "f." and the custom field's name
	Value string // unescaped, or "~" and a hash for a long value (Hashed)
	// Hashed reports that Value is "~" and a hash of a value too long to
	// keep in a key, not the value itself (which may begin with '~' too).
	Hashed bool
}

// SubjectString formats the subject for people, e.g.
// "u=alice,ip=192.0.2.1", each value as QuoteValue shows it (a hashed
// value as it is): the username `alice,ip=192.0.2.1` shows as
// `u="alice,ip=192.0.2.1"`.
func (k KeyInfo) SubjectString() string {
	var b strings.Builder
	for i, f := range k.Subject {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.Tag)
		b.WriteByte('=')
		if f.Hashed {
			b.WriteString(f.Value)
		} else {
			b.WriteString(QuoteValue(f.Value))
		}
	}
	return b.String()
}

// QuoteValue returns a value a client chose (a username, a user agent) as
// operators' tools should show it, so that it cannot pass for another: as
// it is, or quoted (strconv.Quote) when it is empty, holds ',', '=', '"'
// or '\\', begins with '~' as hashed values do, begins or ends with a
// space, is not UTF-8, or holds a character that does not print (a
// control, a zero-width joiner, a direction override);
// and with every non-ASCII character escaped (strconv.QuoteToASCII) when
// its letters mix scripts, as a look-alike does ("аdmin" with a Cyrillic
// "а" shows as "\u0430dmin"). Han, kana and Hangul count as one script.
func QuoteValue(v string) string {
	if mixedScripts(v) {
		return strconv.QuoteToASCII(v)
	}
	if v == "" || v[0] == '~' || v[0] == ' ' || v[len(v)-1] == ' ' || !utf8.ValidString(v) {
		return strconv.Quote(v) // the last: a raw byte must not reach a terminal
	}
	for _, r := range v {
		if r == ',' || r == '=' || r == '"' || r == '\\' || !strconv.IsPrint(r) {
			return strconv.Quote(v)
		}
	}
	return v
}

// scripts are the scripts mixedScripts tells apart; the letters of all
// others count as one more.
var scripts = []struct {
	name  string
	table *unicode.RangeTable
}{
	{"Latin", unicode.Latin}, {"Cyrillic", unicode.Cyrillic}, {"Greek", unicode.Greek},
	{"Armenian", unicode.Armenian}, {"Georgian", unicode.Georgian}, {"Cherokee", unicode.Cherokee},
	{"Hebrew", unicode.Hebrew}, {"Arabic", unicode.Arabic},
	{"CJK", unicode.Han}, {"CJK", unicode.Hiragana}, {"CJK", unicode.Katakana}, {"CJK", unicode.Hangul},
}

// mixedScripts reports whether the letters of v belong to more than one
// script.
func mixedScripts(v string) bool {
	seen := ""
	for _, r := range v {
		if !unicode.IsLetter(r) {
			continue
		}
		if name := scriptOf(r); seen == "" {
			seen = name
		} else if name != seen {
			return true
		}
	}
	return false
}

// scriptOf returns the name of the script of the letter r, as scripts
// names it, or "other".
func scriptOf(r rune) string {
	if r < 0x80 {
		return "Latin" // an ASCII letter, without a table lookup
	}
	for _, sc := range scripts {
		if unicode.Is(sc.table, r) {
			return sc.name
		}
	}
	return "other"
}

// String formats the rule and the subject, e.g.
// "username+ip:u=alice,ip=192.0.2.1".
func (k KeyInfo) String() string { return k.Rule + ":" + k.SubjectString() }

var errBadKey = errors.New("lockout: not a key of this policy")

// Key ownership. Several policies may share a store, and a prefix may
// contain ':' (a common Redis namespace separator, e.g. "app:v1"), so one
// policy's prefix can begin another's: "p" and "p:l", "q" and "q:l:x". A
// key that begins with a policy's prefix is therefore not necessarily its
// key. parseKey accepts a key only when it is exactly what appendKey makes
// for one of the policy's own rules:
//
//	prefix ":" kind ":" rule ":{" subject "}"
//
// where kind is 'a', 'l' or 'h', rule is the name of one of the policy's
// rules, and subject lists that rule's field tags, in order, each with a
// value in the one form appendSubject writes (canonical escapes, a hash of
// the exact length, a canonical address or prefix).
//
// This makes ownership unambiguous without forbidding ':' in a prefix. The
// first '{' of a key opens its subject (neither a prefix nor an escaped
// value holds '{'), so any two policies agree on where the subject starts.
// Before it, reading backwards, come ':', the rule's name (which holds no
// ':': rule names are [A-Za-z0-9._+-]), ':', one byte of kind and ':'; what
// remains is the prefix. So a key decomposes in exactly one way, and a
// policy owns only keys written under its own prefix (and by its own rule
// names): the keys of a policy with prefix "p:l" never parse under "p",
// whose rules would need the name "l:..." there, or "ip:l:ip", etc.
// Policies that share both a prefix and a rule name share that rule's keys,
// by design: that is how several processes of one application cooperate.

// parseKey takes apart a key made by appendKey for prefix and one of rules.
// Any other key is an error wrapping errBadKey.
func parseKey(prefix string, rules []rule, key string) (kind byte, info KeyInfo, err error) {
	bad := func(why string) (byte, KeyInfo, error) {
		return 0, KeyInfo{Key: key}, fmt.Errorf("%w: %q: %s", errBadKey, key, why)
	}
	info.Key = key
	rest, ok := strings.CutPrefix(key, prefix+":")
	if !ok {
		return bad("another prefix")
	}
	if len(rest) < 2 || rest[1] != ':' {
		return bad("no kind")
	}
	kind, rest = rest[0], rest[2:]
	if kind != kindAttempts && kind != kindLock && kind != kindHistory {
		return bad("unknown kind")
	}
	name, subj, ok := strings.Cut(rest, ":{")
	if !ok {
		return bad("no subject")
	}
	var r *rule
	for i := range rules {
		if rules[i].Name == name {
			r = &rules[i]
			break
		}
	}
	if r == nil {
		return bad("no rule of this policy is named " + strconv.Quote(name))
	}
	subj, ok = strings.CutSuffix(subj, "}")
	if !ok {
		return bad("unterminated subject")
	}
	info.Rule = name
	info.Subject = make([]SubjectField, 0, len(r.Fields))
	for part := range strings.SplitSeq(subj, ",") {
		i := len(info.Subject)
		if i == len(r.Fields) {
			return bad("more fields than the rule has")
		}
		tag, v, ok := strings.Cut(part, "=")
		if !ok || tag != fieldTag(r.Fields[i]) {
			return bad("field " + strconv.Quote(tag) + " where the rule has " + fieldTag(r.Fields[i]))
		}
		if r.Fields[i] == IP {
			if !canonicalIP(v) {
				return bad("not a canonical address or prefix: " + strconv.Quote(v))
			}
			info.Subject = append(info.Subject, SubjectField{Tag: tag, Value: v})
			continue
		}
		v, hashed, err := parseValue(v)
		if err != nil {
			return bad(err.Error())
		}
		info.Subject = append(info.Subject, SubjectField{Tag: tag, Value: v, Hashed: hashed})
	}
	if len(info.Subject) != len(r.Fields) {
		return bad("fewer fields than the rule has")
	}
	return kind, info, nil
}

// canonicalIP reports whether v is an address or a masked prefix as
// appendIP writes it: unmapped, without a zone, a prefix only when shorter
// than the address.
func canonicalIP(v string) bool {
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Zone() == "" && !a.Is4In6() && a.String() == v
	}
	p, err := netip.ParsePrefix(v)
	return err == nil && !p.Addr().Is4In6() && p.Bits() < p.Addr().BitLen() &&
		p.Masked() == p && p.String() == v
}

// parseValue checks that v is a value as appendValue writes it, and
// returns it unescaped, or "~" and a hash as it is (hashed).
func parseValue(v string) (_ string, hashed bool, err error) {
	if len(v) > 0 && v[0] == '~' {
		if len(v) != 1+hashLen {
			return "", false, fmt.Errorf("hashed value %q of the wrong length", v)
		}
		for i := 1; i < len(v); i++ {
			if c := v[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false, fmt.Errorf("hashed value %q is not base64url", v)
			}
		}
		return v, true, nil
	}
	if v == "" || len(v) > maxValueLen {
		return "", false, fmt.Errorf("value of %d bytes (want 1 to %d)", len(v), maxValueLen)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case safeByte(c):
		case c == '%' && i+2 < len(v) && unhex(v[i+1]) >= 0 && unhex(v[i+2]) >= 0 &&
			!safeByte(byte(unhex(v[i+1])<<4|unhex(v[i+2]))):
			i += 2
		default:
			return "", false, fmt.Errorf("value %q is not escaped as keys are", v)
		}
	}
	u, err := unescape(v)
	return u, false, err
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
