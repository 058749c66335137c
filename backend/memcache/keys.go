package memcache

import (
	"crypto/sha256"
	"encoding/base64"
)

// maxKeyLen is the longest key memcached accepts.
const maxKeyLen = 250

// hashMarker begins the body of a hashed key. The escaper never produces
// it: there, '%' is always followed by two upper-case hexadecimal digits.
const hashMarker = "%H"

// maxPrefixLen bounds Options.Prefix, so that a hashed key (prefix, marker
// and 43 bytes of base64) always fits in maxKeyLen.
const maxPrefixLen = 64

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

// mapKey returns the memcached key for key under prefix, which must be
// legal and at most maxPrefixLen bytes long. The mapping is injective:
//
//   - a key whose escaped form fits is prefix + escaped key, where every
//     byte memcached refuses, and '%' itself, is written as %XX (upper-case
//     hex), so the key stays readable;
//   - any other key is prefix + "%H" + base64url(sha256(key)), 45 bytes
//     after the prefix. The escaper never writes "%H", so a hashed key
//     cannot equal an escaped one; two hashed keys are equal only if
//     SHA-256 collides.
func mapKey(prefix, key string) string {
	escapes := 0
	for i := 0; i < len(key); i++ {
		if c := key[i]; c == '%' || !legalByte(c) {
			escapes++
		}
	}
	n := len(prefix) + len(key) + 2*escapes
	if n > maxKeyLen {
		sum := sha256.Sum256([]byte(key))
		buf := make([]byte, 0, len(prefix)+len(hashMarker)+base64.RawURLEncoding.EncodedLen(len(sum)))
		buf = append(buf, prefix...)
		buf = append(buf, hashMarker...)
		buf = base64.RawURLEncoding.AppendEncode(buf, sum[:])
		return string(buf)
	}
	if escapes == 0 {
		if prefix == "" {
			return key
		}
		return prefix + key
	}
	buf := make([]byte, 0, n)
	buf = append(buf, prefix...)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '%' || !legalByte(c) {
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&0xf])
			continue
		}
		buf = append(buf, c)
	}
	return string(buf)
}
