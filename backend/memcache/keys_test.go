package memcache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// hashed returns the base64url of s's SHA-256, as mapKey writes it.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

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
		// A hashed key keeps its hash tag, escaped.
		{"", "a:{t x}" + strings.Repeat("y", 250), "%H" + hashed("a:{t x}"+strings.Repeat("y", 250)) + "{t%20x}"},
		{"p:", strings.Repeat("y", 250) + "{{t}}", "p:%H" + hashed(strings.Repeat("y", 250)+"{{t}}") + "{{t}"},
		// An empty tag is no tag.
		{"", "{}" + strings.Repeat("y", 250), "%H" + hashed("{}"+strings.Repeat("y", 250))},
		// The longest tag kept as it is, and one byte more: hashed.
		{"", "{" + strings.Repeat("t", maxTagLen) + "}" + strings.Repeat("y", 200), "%H" + hashed("{"+strings.Repeat("t", maxTagLen)+"}"+strings.Repeat("y", 200)) + "{" + strings.Repeat("t", maxTagLen) + "}"},
		{"", "{" + strings.Repeat("t", maxTagLen+1) + "}" + strings.Repeat("y", 200), "%H" + hashed("{"+strings.Repeat("t", maxTagLen+1)+"}"+strings.Repeat("y", 200)) + "{%H" + hashed(strings.Repeat("t", maxTagLen+1)) + "}"},
		{strings.Repeat("p", maxPrefixLen), "{" + strings.Repeat("%", maxTagLen/3) + "}" + strings.Repeat("y", 200), strings.Repeat("p", maxPrefixLen) + "%H" + hashed("{"+strings.Repeat("%", maxTagLen/3)+"}"+strings.Repeat("y", 200)) + "{" + strings.Repeat("%25", maxTagLen/3) + "}"},
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
			return // the contract rejects empty keys
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

// FuzzKeyTag checks that a hashed key keeps its hash tag: two keys with the
// same tag have mapped keys with the same tag, so a RendezvousSelector puts
// them on one server, whatever their lengths; the only exception is a tag
// whose escaped form is over maxTagLen, in keys of different forms (one
// escaped, one hashed), which the lockout engine never makes.
func FuzzKeyTag(f *testing.F) {
	f.Add("lockout:a:r:", "u=alice", "", "", uint16(250))
	f.Add("x", "t x%", ":a", ":bb", uint16(0))
	f.Add("", strings.Repeat("t", maxTagLen+1), "", "y", uint16(10))
	f.Add("{", "{a", "}", "", uint16(300))
	f.Fuzz(func(t *testing.T, pre, tag, post1, post2 string, pad uint16) {
		if strings.Contains(pre, "{") || tag == "" || strings.Contains(tag, "}") {
			return // tag would not be the keys' hash tag
		}
		k1 := pre + "{" + tag + "}" + post1
		k2 := pre + "{" + tag + "}" + post2 + strings.Repeat("z", int(pad%400))
		for _, prefix := range []string{"", "lo:", strings.Repeat("p", maxPrefixLen)} {
			m1, m2 := mapKey(prefix, k1), mapKey(prefix, k2)
			for _, m := range []string{m1, m2} {
				if !legalKey(m) {
					t.Fatalf("illegal mapped key %q", m)
				}
			}
			if (k1 == k2) != (m1 == m2) {
				t.Fatalf("%q and %q map to %q and %q", k1, k2, m1, m2)
			}
			sameForm := strings.HasPrefix(m1[len(prefix):], hashMarker) == strings.HasPrefix(m2[len(prefix):], hashMarker)
			if escapedLen(tag) <= maxTagLen || sameForm {
				if t1, t2 := hashTag(m1), hashTag(m2); t1 != t2 {
					t.Fatalf("keys of tag %q map to %q and %q, with tags %q and %q", tag, m1, m2, t1, t2)
				}
			}
			if tg := hashTag(m1); escapedLen(tag) <= maxTagLen && tg != string(appendEscaped(nil, tag)) {
				t.Fatalf("%q maps to %q, whose tag %q is not %q escaped", k1, m1, tg, tag)
			}
		}
	})
}

// longRule is keyed by four fields, whose keys are over 250 bytes when the
// values are near the longest a key holds unhashed (64 bytes).
var longRule = lockout.Rule{
	Name:     "long",
	Fields:   []lockout.Field{lockout.Username, lockout.UserAgent, "tenant_with_a_rather_long_name_x", lockout.IP},
	Limit:    2,
	Schedule: lockout.Fixed(time.Hour),
}

// longSubject returns the i-th subject of longRule: its keys are over 250
// bytes.
func longSubject(i int) lockout.Subject {
	return lockout.Subject{
		Username:  fmt.Sprintf("%02d", i) + strings.Repeat("u", 58),
		UserAgent: strings.Repeat("a", 60),
		IP:        fmt.Sprintf("2001:db8:%x::1", i),
		Fields:    map[string]string{"tenant_with_a_rather_long_name_x": strings.Repeat("t", 60)},
	}
}

// keyRecorder records the keys of the operations it passes on.
type keyRecorder struct {
	backend.Backend
	mu   sync.Mutex
	keys map[string]bool
}

func (r *keyRecorder) Do(ctx context.Context, ops []backend.Op, res []backend.Result) error {
	r.mu.Lock()
	for _, op := range ops {
		r.keys[op.Key] = true
	}
	r.mu.Unlock()
	return r.Backend.Do(ctx, ops, res)
}

// take returns the keys recorded since the last call.
func (r *keyRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.keys {
		out = append(out, k)
	}
	clear(r.keys)
	return out
}

// TestLongKeysPlacement checks, without servers, that the three keys of
// each of 8 long rule keys (counter, lock marker, history) are over 250
// bytes, hashed, and placed on one server of two by RendezvousSelector.
func TestLongKeysPlacement(t *testing.T) {
	var sel RendezvousSelector
	if err := sel.SetServers("10.0.0.1:11211", "10.0.0.2:11211"); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", "app:"} {
		rec := &keyRecorder{Backend: &opRecorder{}, keys: map[string]bool{}}
		p, err := lockout.New(rec, lockout.Config{Rules: []lockout.Rule{longRule}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		servers := map[string]bool{}
		for i := range 8 {
			s := longSubject(i)
			if err := p.Unlock(t.Context(), s); err != nil { // deletes the lock marker and the counter
				t.Fatal(err)
			}
			if _, err := p.Status(t.Context(), s); err != nil { // reads all three
				t.Fatal(err)
			}
			keys := rec.take()
			if len(keys) != 3 {
				t.Fatalf("subject %d: keys %q, want a counter, a lock marker and a history", i, keys)
			}
			var on []string
			for _, k := range keys {
				m := mapKey(prefix, k)
				if len(k) <= maxKeyLen || !strings.Contains(m, hashMarker) {
					t.Fatalf("key %q (%d bytes) maps to %q: want a long, hashed key", k, len(k), m)
				}
				a, err := sel.PickServer(m)
				if err != nil {
					t.Fatal(err)
				}
				on = append(on, a.String())
			}
			if on[0] != on[1] || on[1] != on[2] {
				t.Errorf("prefix %q, subject %d: its keys are on %v", prefix, i, on)
			}
			servers[on[0]] = true
		}
		p.Close()
		if len(servers) != 2 {
			t.Logf("prefix %q: the 8 subjects all landed on %v", prefix, servers)
		}
	}
}

// TestLongKeysColocated locks 8 subjects whose keys are over 250 bytes on a
// store over two memcached servers, and finds each subject's counter, lock
// marker and history on one server, by asking each server directly.
func TestLongKeysColocated(t *testing.T) {
	parallel(t)
	addrs := []string{testserver.Memcached(t).Addr, testserver.Memcached(t).Addr}
	if shared() {
		testserver.FlushMemcached(t, addrs...)
	}
	store := newStore(t, addrs, &Options{Timeout: testTimeout})
	t.Cleanup(func() { store.Close() })
	rec := &keyRecorder{Backend: store, keys: map[string]bool{}}
	p, err := lockout.New(rec, lockout.Config{Rules: []lockout.Rule{longRule}, Logger: slog.New(slog.DiscardHandler), Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	direct := make([]*gm.Client, len(addrs))
	for i, a := range addrs {
		direct[i] = gm.New(a)
		direct[i].Timeout = testTimeout
		t.Cleanup(func() { direct[i].Close() })
	}
	// where returns, for each key, the servers that hold it.
	where := func(keys []string) map[string][]string {
		out := map[string][]string{}
		mapped := map[string]string{}
		var ms []string
		for _, k := range keys {
			mapped[mapKey("", k)] = k
			ms = append(ms, mapKey("", k))
		}
		for i, c := range direct {
			items, err := c.GetMulti(ms)
			if err != nil {
				t.Fatalf("get from %s: %v", addrs[i], err)
			}
			for m := range items {
				out[mapped[m]] = append(out[mapped[m]], addrs[i])
			}
		}
		return out
	}
	servers := map[string]int{}
	for i := range 8 {
		s := longSubject(i)
		rec.take()
		if _, err := p.Status(t.Context(), s); err != nil { // reads all three keys
			t.Fatal(err)
		}
		kinds := map[string]string{} // "a", "l", "h" to the key
		for _, k := range rec.take() {
			kinds[strings.TrimPrefix(k, lockout.DefaultPrefix+":")[:1]] = k
		}
		if len(kinds) != 3 || len(kinds["a"]) <= maxKeyLen {
			t.Fatalf("subject %d: keys %q, want a counter, a lock marker and a history over %d bytes", i, kinds, maxKeyLen)
		}
		keys := []string{kinds["a"], kinds["l"], kinds["h"]}
		fail := func() {
			a, err := p.Allow(t.Context(), s)
			if err != nil {
				t.Fatalf("subject %d: %v", i, err)
			}
			if err := a.Failure(t.Context()); err != nil {
				t.Fatalf("subject %d: %v", i, err)
			}
		}
		fail()
		counter := where(keys)[kinds["a"]]
		fail() // locks: the history and the lock marker are set, the counter cleared
		after := where(keys)
		lock, history := after[kinds["l"]], after[kinds["h"]]
		if len(counter) != 1 || len(lock) != 1 || len(history) != 1 || counter[0] != lock[0] || lock[0] != history[0] {
			t.Errorf("subject %d: counter on %v, lock marker on %v, history on %v: want one server", i, counter, lock, history)
			continue
		}
		if len(after[kinds["a"]]) != 0 {
			t.Errorf("subject %d: the counter outlived the lock, on %v", i, after[kinds["a"]])
		}
		servers[lock[0]]++
	}
	t.Logf("8 subjects per server: %v", servers)
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
