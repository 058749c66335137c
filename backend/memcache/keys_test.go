package memcache

import (
	"strconv"
	"strings"
	"testing"

	"github.com/go-lockout/lockout/conformance"
)

// unescape inverts the escaped form of mapKey; ok is false for a hashed key.
func unescape(body string) (string, bool) {
	if strings.HasPrefix(body, hashMarker) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		if body[i] != '%' {
			b.WriteByte(body[i])
			continue
		}
		v, err := strconv.ParseUint(body[i+1:i+3], 16, 8)
		if err != nil {
			panic(err)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

func TestMapKey(t *testing.T) {
	tests := []struct {
		prefix, key, want string
	}{
		{"", "user:alice", "user:alice"},
		{"lo:", "user:alice", "lo:user:alice"},
		{"", "with space", "with%20space"},
		{"", "with%20space", "with%2520space"},
		{"", "nul\x00\x7f\n", "nul%00%7F%0A"},
		{"", "€", "€"}, // bytes from 0x80 up are legal
		{"", "%H", "%25H"},
		{"", strings.Repeat("y", 250), strings.Repeat("y", 250)},
		{"", strings.Repeat("y", 251), "%H-78dRltaRBefEcPSVro6j5R1GzCxOmNBKA55cHC8mxE"},
		{"", strings.Repeat("y", 249) + " ", "%HXsl7o75tfo2Qh0YHhRZ5AOxpxG_CiDy5sY-kLFWi5sQ"},
		{"p:", strings.Repeat("y", 248), "p:" + strings.Repeat("y", 248)},
		{"p:", strings.Repeat("y", 249), "p:%H5d038b0PQdnGx_l9VZspoUFTTYmT_MNKfKebfNkkl-I"},
	}
	for _, tc := range tests {
		got := mapKey(tc.prefix, tc.key)
		if got != tc.want {
			t.Errorf("mapKey(%q, %.20q...) = %q, want %q", tc.prefix, tc.key, got, tc.want)
		}
		if !legalKey(got) {
			t.Errorf("mapKey(%q, %.20q...) = %q is not a legal memcached key", tc.prefix, tc.key, got)
		}
	}
}

// TestMapKeyHostile maps the conformance suite's hostile keys: all legal,
// all distinct, the short ones readable.
func TestMapKeyHostile(t *testing.T) {
	seen := map[string]string{}
	for _, k := range conformance.HostileKeys() {
		for _, prefix := range []string{"", "lockout:"} {
			m := mapKey(prefix, k)
			if !legalKey(m) {
				t.Errorf("%.20q maps to illegal %q", k, m)
			}
			if other, dup := seen[m]; dup && other != k {
				t.Errorf("%.20q and %.20q both map to %q", k, other, m)
			}
			seen[m] = k
			if orig, ok := unescape(strings.TrimPrefix(m, prefix)); ok && orig != k {
				t.Errorf("%.20q maps to %q, which reads back as %q", k, m, orig)
			}
		}
	}
}

// FuzzKey checks that mapKey is injective, always legal and bounded, and
// that the escaped form reads back.
func FuzzKey(f *testing.F) {
	for _, k := range conformance.HostileKeys() {
		f.Add(k, k+"x")
	}
	f.Add("a b", "a%20b")
	f.Add("%H", "%25H")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == "" || b == "" {
			t.Skip("the contract rejects empty keys")
		}
		for _, prefix := range []string{"", "lo:", strings.Repeat("p", maxPrefixLen)} {
			ma, mb := mapKey(prefix, a), mapKey(prefix, b)
			if !legalKey(ma) || !legalKey(mb) {
				t.Fatalf("illegal: %q -> %q, %q -> %q", a, ma, b, mb)
			}
			if (a == b) != (ma == mb) {
				t.Fatalf("%q and %q map to %q and %q", a, b, ma, mb)
			}
			if orig, ok := unescape(strings.TrimPrefix(ma, prefix)); ok && orig != a {
				t.Fatalf("%q maps to %q, which reads back as %q", a, ma, orig)
			}
		}
	})
}

func BenchmarkMapKey(b *testing.B) {
	for _, k := range []string{"rule/ip/{198.51.100.7}", "rule/user/{alice smith}", strings.Repeat("€", 100)} {
		b.Run(strconv.Itoa(len(k)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mapKey("", k)
			}
		})
	}
}
