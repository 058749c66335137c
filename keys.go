package lockout

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
// is longer than maxValueLen is replaced by '~' and 22 characters of its
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
	hashLen      = 22
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

func fieldTag(f Field) string {
	switch f {
	case Username:
		return "u"
	case IP:
		return "ip"
	case UserAgent:
		return "ua"
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
			buf = appendIP(buf, c.ip, r)
		case UserAgent:
			if c.userAgent == "" {
				return buf, false
			}
			buf = appendValue(buf, c.userAgent)
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

// appendIP appends ip keyed by r's prefix length for its family. The
// characters of an address or prefix are all safe.
func appendIP(buf []byte, ip netip.Addr, r *rule) []byte {
	bits := r.IPv4Prefix
	if ip.Is6() {
		bits = r.IPv6Prefix
	}
	if bits == ip.BitLen() {
		return ip.AppendTo(buf)
	}
	p, _ := ip.Prefix(bits) // bits is within range: checked by compile
	return p.AppendTo(buf)
}

// appendValue appends v escaped, or hashed when escaping makes it too long.
func appendValue(buf []byte, v string) []byte {
	n := 0
	for i := 0; i < len(v); i++ {
		if safeByte(v[i]) {
			n++
		} else {
			n += 3
		}
	}
	if n > maxValueLen {
		sum := sha256.Sum256([]byte(v))
		buf = append(buf, '~')
		return base64.RawURLEncoding.AppendEncode(buf, sum[:])[:len(buf)+1+hashLen]
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if safeByte(c) {
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
	Value string // unescaped, or "~" and a hash for a long value
}

// SubjectString formats the subject, e.g. "u=alice,ip=192.0.2.1", without
// escaping.
func (k KeyInfo) SubjectString() string {
	var b strings.Builder
	for i, f := range k.Subject {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.Tag)
		b.WriteByte('=')
		b.WriteString(f.Value)
	}
	return b.String()
}

// String formats the rule and the subject, e.g.
// "username+ip:u=alice,ip=192.0.2.1".
func (k KeyInfo) String() string { return k.Rule + ":" + k.SubjectString() }

var errBadKey = errors.New("lockout: not a key of this policy")

// parseKey takes apart a key made by appendKey with this prefix.
func parseKey(prefix, key string) (kind byte, info KeyInfo, err error) {
	info.Key = key
	rest, ok := strings.CutPrefix(key, prefix+":")
	if !ok || len(rest) < 2 || rest[1] != ':' {
		return 0, info, fmt.Errorf("%w: %q", errBadKey, key)
	}
	kind, rest = rest[0], rest[2:]
	name, subj, ok := strings.Cut(rest, ":{")
	if !ok || !strings.HasSuffix(subj, "}") || name == "" {
		return 0, info, fmt.Errorf("%w: %q", errBadKey, key)
	}
	info.Rule = name
	for part := range strings.SplitSeq(subj[:len(subj)-1], ",") {
		tag, v, ok := strings.Cut(part, "=")
		if !ok {
			return 0, info, fmt.Errorf("%w: %q", errBadKey, key)
		}
		if !strings.HasPrefix(v, "~") {
			if v, err = unescape(v); err != nil {
				return 0, info, fmt.Errorf("%w: %q: %w", errBadKey, key, err)
			}
		}
		info.Subject = append(info.Subject, SubjectField{Tag: tag, Value: v})
	}
	return kind, info, nil
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
