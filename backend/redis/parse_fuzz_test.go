package redis

import (
	"strconv"
	"strings"
	"testing"

	"github.com/go-lockout/lockout/backend"
)

// crc16 is the Redis Cluster key hash (CRC-16/XMODEM), bit by bit: the
// reference keySlot's table is checked against.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// FuzzKeySlot checks keySlot, which groups a batch's keys by node,
// against the bitwise CRC of the hash tag as backend.HashTag reads it
// (the tag the engine's keys are built around): a key sent to the wrong
// node is a MOVED error, or a script refused for keys of two slots.
func FuzzKeySlot(f *testing.F) {
	for _, k := range []string{"123456789", "lockout:a:username:{u=alice}", "{}", "a{}b", "{{a}}", "x{y", "}{a}", ""} {
		f.Add(k)
	}
	if got := keySlot("123456789"); got != 12739 { // the CRC-16/XMODEM check value, 0x31C3
		f.Fatalf("keySlot(123456789) = %d, want 12739", got)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if got, want := keySlot(key), int(crc16(backend.HashTag(key))%16384); got != want {
			t.Fatalf("keySlot(%q) = %d, want %d (the tag %q)", key, got, want, backend.HashTag(key))
		}
	})
}

// FuzzParseStreamID checks the parser of stream entry IDs (journal
// cursors): it accepts "ms-seq" in decimal, and only that.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"1700000000000-3", "0-0", "18446744073709551615-18446744073709551615", "18446744073709551616-0", "-1", "1-", "1-2-3", "+1-2", " 1-2", "01-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseStreamID(s)
		a, b, cut := strings.Cut(s, "-")
		ms, err1 := strconv.ParseUint(a, 10, 64)
		seq, err2 := strconv.ParseUint(b, 10, 64)
		// At most 20 digits each (ParseUint alone would take more
		// leading zeros, and a sign).
		want := cut && err1 == nil && err2 == nil && len(a) <= 20 && len(b) <= 20 && !strings.ContainsAny(a+b, "+-")
		if ok != want || ok && (id.ms != ms || id.seq != seq) {
			t.Fatalf("parseStreamID(%q) = %+v, %v; want %d-%d, %v", s, id, ok, ms, seq, want)
		}
	})
}
