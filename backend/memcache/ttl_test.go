package memcache

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

func TestNewExpiry(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name        string
		now         time.Time
		ttl         time.Duration
		wantFlags   int64
		wantExptime int32
	}{
		{"no expiry", base, backend.NoExpiry, 0, 0},
		{"whole seconds", base, 10 * time.Second, 1_800_000_010, 10 + relativeSlack},
		{"rounds up", base.Add(300 * time.Millisecond), 1500 * time.Millisecond, 1_800_000_002, 2 + relativeSlack},
		{"a nanosecond", base.Add(999_999_999), time.Nanosecond, 1_800_000_001, 1 + relativeSlack},
		{"sub-second start", base.Add(999 * time.Millisecond), 2 * time.Second, 1_800_000_003, 3 + relativeSlack},
		{"30 days is relative", base, maxRelative*time.Second - relativeSlack*time.Second, 1_800_000_000 + maxRelative - relativeSlack, maxRelative},
		{"over 30 days is absolute", base, maxRelative * time.Second, 1_800_000_000 + maxRelative, 1_800_000_000 + maxRelative + absoluteSlack},
		{"past 2038 has no physical expiry", base, 20 * 365 * 24 * time.Hour, base.Add(20 * 365 * 24 * time.Hour).Unix(), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := newExpiry(tc.now, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if int64(x.flags) != tc.wantFlags || x.exptime != tc.wantExptime {
				t.Errorf("newExpiry = flags %d exptime %d, want %d and %d", x.flags, x.exptime, tc.wantFlags, tc.wantExptime)
			}
			if tc.ttl == backend.NoExpiry {
				return
			}
			// Never early, at most a second late.
			end := time.Unix(int64(x.flags), 0)
			if want := tc.now.Add(tc.ttl); end.Before(want) || !end.Before(want.Add(time.Second)) {
				t.Errorf("logical expiry %v for %v + %v", end, tc.now, tc.ttl)
			}
			// The physical expiry is later by the slack, even if
			// memcached's clock runs up to 2 s ahead.
			if x.exptime > 0 && x.exptime <= maxRelative {
				if phys := time.Unix(tc.now.Unix(), 0).Add(time.Duration(x.exptime-2) * time.Second); phys.Before(end) {
					t.Errorf("physical expiry %v before logical %v", phys, end)
				}
			}
		})
	}
	if _, err := newExpiry(base, time.Duration(math.MaxInt64)); err == nil {
		t.Error("a TTL ending after 2106 was accepted")
	}
}

func TestRemaining(t *testing.T) {
	now := time.Unix(1_800_000_000, 250_000_000)
	tests := []struct {
		flags uint32
		want  time.Duration
		live  bool
	}{
		{0, backend.NoExpiry, true},
		{1_800_000_001, 750 * time.Millisecond, true},
		{1_800_000_000, 0, false},
		{1_799_999_000, 0, false},
	}
	for _, tc := range tests {
		d, live := remaining(tc.flags, now)
		if live != tc.live || (live && d != tc.want) {
			t.Errorf("remaining(%d) = %v, %v; want %v, %v", tc.flags, d, live, tc.want, tc.live)
		}
	} // At the very second of its expiry a key is gone (never early, never
	// late: the contract's exact instant).
	if d, live := remaining(1_800_000_000, time.Unix(1_800_000_000, 0)); live {
		t.Errorf("remaining at the expiry's instant = %v, live; want expired", d)
	}
}

func TestValues(t *testing.T) {
	for _, v := range []uint64{0, 1, 9, 10, 1 << 40, math.MaxInt64, math.MaxUint64} {
		b := formatValue(v)
		if len(b) != valueWidth {
			t.Errorf("formatValue(%d) = %q: %d bytes", v, b, len(b))
		}
		got, err := parseValue(b)
		if err != nil || got != clampValue(v) {
			t.Errorf("parseValue(%q) = %d, %v", b, got, err)
		}
	}
	for _, s := range []string{"9 ", "9", "12   "} {
		if _, err := parseValue([]byte(s)); err != nil {
			t.Errorf("parseValue(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", " ", "x", "-1", " 1", "1x"} {
		if _, err := parseValue([]byte(s)); err == nil {
			t.Errorf("parseValue(%q): no error", s)
		}
	}
}

// FuzzParseValue checks the reader of stored counters: decimal digits,
// then only spaces (the padding), clamped to MaxInt64; anything else an
// error, never a panic nor a wrong count.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"0", "42   ", "18446744073709551615", "18446744073709551616", "-1", " 1", "1 2", "", "   ", "+1", "0x10"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseValue(b)
		digits := strings.TrimRight(string(b), " ")
		want, perr := strconv.ParseUint(digits, 10, 64)
		ok := perr == nil && !strings.ContainsAny(digits, "+-_")
		if ok != (err == nil) || ok && v != clampValue(want) {
			t.Fatalf("parseValue(%q) = %d, %v; want %d, %v", b, v, err, clampValue(want), ok)
		}
		if v < 0 {
			t.Fatalf("parseValue(%q) = %d", b, v)
		}
	})
}
