package memcache

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/go-lockout/lockout/backend"
)

// maxKeyLen is the longest key memcached accepts.
const maxKeyLen = 250

// hashMarker begins the body of a hashed key, and a hashed hash tag. The
// escaper never produces it: there, '%' is always followed by two
// upper-case hexadecimal digits.
const hashMarker = "%H"

// maxPrefixLen bounds Options.Prefix, so that a hashed key (prefix, marker,
// 43 bytes of base64 and its hash tag) always fits in maxKeyLen.
const maxPrefixLen = 64

// hashedLen is the length of the marker and the base64url of a SHA-256.
const hashedLen = len(hashMarker) + 43

// maxTagLen is the longest escaped hash tag a hashed key keeps as it is:
// what fits after the longest prefix and the hash, in braces. A longer tag
// is itself hashed (hashedLen bytes).
const maxTagLen = maxKeyLen - maxPrefixLen - hashedLen - len("{}")

// legalByte reports whether memcached accepts c in a key: no spaces,
// control bytes or DEL. Bytes from 0x80 up are accepted.
func legalByte(c byte) bool { return c > ' ' && c != 0x7f }

// legalKey reports whether memcached accepts k as a key, as gomemcache
// checks it.
func legalKey(k string) bool {
	if len(k) == 0 || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !legalByte(k[i]) {
			return false
		}
	}
	return true
}

const upperHex = "0123456789ABCDEF"

// escapedLen returns the length of s escaped.
func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || !legalByte(c) {
			n += 2
		}
	}
	return n
}

// appendEscaped appends s with every byte memcached refuses, and '%'
// itself, written as %XX (upper-case hex).
func appendEscaped(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || !legalByte(c) {
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&0xf])
			continue
		}
		buf = append(buf, c)
	}
	return buf
}

// appendHashed appends hashMarker and the unpadded base64url of s's SHA-256.
func appendHashed(buf []byte, s string) []byte {
	sum := sha256.Sum256([]byte(s))
	buf = append(buf, hashMarker...)
	return base64.RawURLEncoding.AppendEncode(buf, sum[:])
}

// mapKey returns the memcached key for key under prefix, which must be
// legal and at most maxPrefixLen bytes long. The mapping is injective:
//
//   - a key whose escaped form fits is prefix + escaped key, where every
//     byte memcached refuses, and '%' itself, is written as %XX (upper-case
//     hex), so the key stays readable;
//   - any other key is prefix + "%H" + base64url(sha256(key)), and then,
//     when the key has a hash tag (backend.HashTag), that tag in braces:
//     escaped when its escaped form is at most maxTagLen bytes, else "%H"
//     and the base64url of its SHA-256. The escaper never writes "%H", so a
//     hashed key cannot equal an escaped one; two hashed keys are equal
//     only if SHA-256 collides (the tag is a function of the key).
//
// A hashed key keeps its hash tag, so a RendezvousSelector places it with
// the other keys of its tag: a rule key's counter, lock marker and history,
// which have the same length and so the same form, share a server however
// long their subject. Keys of one tag in different forms (one escaped, one
// hashed) are placed together too, unless the tag's escaped form is over
// maxTagLen (139) bytes: only then does the hashed key carry a hash of the
// tag instead. The lockout engine's keys of one tag always share a form.
func mapKey(prefix, key string) string {
	n := len(prefix) + escapedLen(key)
	if n > maxKeyLen {
		tag, tagged := tagOf(key)
		size := len(prefix) + hashedLen
		if tagged {
			size += len("{}") + min(escapedLen(tag), hashedLen)
		}
		buf := make([]byte, 0, size)
		buf = append(buf, prefix...)
		buf = appendHashed(buf, key)
		if tagged {
			buf = append(buf, '{')
			if escapedLen(tag) <= maxTagLen {
				buf = appendEscaped(buf, tag)
			} else {
				buf = appendHashed(buf, tag)
			}
			buf = append(buf, '}')
		}
		return string(buf)
	}
	if n == len(prefix)+len(key) {
		if prefix == "" {
			return key
		}
		return prefix + key
	}
	buf := make([]byte, 0, n)
	buf = append(buf, prefix...)
	return string(appendEscaped(buf, key))
}

// tagOf returns key's hash tag, and whether it has one (backend.HashTag
// returns the whole key for a key without one).
func tagOf(key string) (string, bool) {
	tag := backend.HashTag(key)
	return tag, len(tag) != len(key)
}
