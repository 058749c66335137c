package memcache

import (
	"errors"
	"fmt"
	"net"
	"testing"

	gm "github.com/bradfitz/gomemcache/memcache"
)

const selectorKeys = 10_000

// placement returns the server sel picks for each of the test keys.
func placement(t *testing.T, sel gm.ServerSelector) []string {
	t.Helper()
	out := make([]string, selectorKeys)
	for i := range out {
		a, err := sel.PickServer(mapKey("", fmt.Sprintf("rule/user/{user%d}", i)))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a.String()
	}
	return out
}

func moved(a, b []string) float64 {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}

// TestSelectorMoves adds a third server: rendezvous hashing moves about a
// third of the keys (those the new server wins, and no others), crc32
// modulo (gomemcache's ServerList) moves most.
func TestSelectorMoves(t *testing.T) {
	two := []string{"10.0.0.1:11211", "10.0.0.2:11211"}
	three := append(two[:2:2], "10.0.0.3:11211")

	var r RendezvousSelector
	if err := r.SetServers(two...); err != nil {
		t.Fatal(err)
	}
	before := placement(t, &r)
	if err := r.SetServers(three...); err != nil {
		t.Fatal(err)
	}
	after := placement(t, &r)
	rm := moved(before, after)
	for i := range before {
		if before[i] != after[i] && after[i] != three[2] {
			t.Fatalf("key %d moved from %s to %s, not to the new server", i, before[i], after[i])
		}
	}

	var l gm.ServerList
	if err := l.SetServers(two...); err != nil {
		t.Fatal(err)
	}
	lb := placement(t, &l)
	if err := l.SetServers(three...); err != nil {
		t.Fatal(err)
	}
	lm := moved(lb, placement(t, &l))

	t.Logf("adding a third server moves %.1f%% of %d keys with RendezvousSelector, %.1f%% with crc32-modulo ServerList", 100*rm, selectorKeys, 100*lm)
	if rm < 0.25 || rm > 0.42 {
		t.Errorf("rendezvous moved %.1f%% of keys, want about a third", 100*rm)
	}
	if lm < 0.5 {
		t.Errorf("crc32 modulo moved only %.1f%%; the comparison is off", 100*lm)
	}

	// Balance: each server holds about a third.
	count := map[string]int{}
	for _, a := range after {
		count[a]++
	}
	for _, s := range three {
		if f := float64(count[s]) / selectorKeys; f < 0.30 || f > 0.37 {
			t.Errorf("%s holds %.1f%% of keys", s, 100*f)
		}
	}

	// Removing a server moves its keys only, back where they were.
	if err := r.SetServers(two...); err != nil {
		t.Fatal(err)
	}
	for i, a := range placement(t, &r) {
		if a != before[i] {
			t.Fatalf("key %d on %s after removing the third server, was on %s", i, a, before[i])
		}
	}
	// The order of the list does not matter.
	if err := r.SetServers(three[2], three[0], three[1]); err != nil {
		t.Fatal(err)
	}
	for i, a := range placement(t, &r) {
		if a != after[i] {
			t.Fatalf("key %d: %s with the list reordered, %s before", i, a, after[i])
		}
	}
}

func TestSelectorEdges(t *testing.T) {
	var r RendezvousSelector
	if _, err := r.PickServer("k"); !errors.Is(err, gm.ErrNoServers) {
		t.Errorf("no servers: err = %v", err)
	}
	if err := r.Each(func(net.Addr) error { return errors.New("called") }); err != nil {
		t.Errorf("Each with no servers: %v", err)
	}
	if err := r.SetServers("127.0.0.1:11211", "127.0.0.1:11211", "/tmp/mc.sock"); err != nil {
		t.Fatal(err)
	}
	var each []string
	if err := r.Each(func(a net.Addr) error { each = append(each, a.Network()+" "+a.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(each) != 2 || each[0] != "tcp 127.0.0.1:11211" || each[1] != "unix /tmp/mc.sock" {
		t.Errorf("Each visits %q", each)
	}
	// A server listed twice gets about twice the keys.
	count := map[string]int{}
	for _, a := range placement(t, &r) {
		count[a]++
	}
	if f := float64(count["127.0.0.1:11211"]) / selectorKeys; f < 0.62 || f > 0.71 {
		t.Errorf("server listed twice holds %.1f%% of keys, want about two thirds", 100*f)
	}
	if err := r.SetServers("no-such-host.invalid:11211"); err == nil {
		t.Error("unresolvable server accepted")
	}
	if _, err := r.PickServer("k"); err != nil {
		t.Errorf("a failed SetServers changed the servers: %v", err)
	}
}

func BenchmarkPickServer(b *testing.B) {
	servers := []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"}
	var r RendezvousSelector
	var l gm.ServerList
	if err := r.SetServers(servers...); err != nil {
		b.Fatal(err)
	}
	if err := l.SetServers(servers...); err != nil {
		b.Fatal(err)
	}
	for name, sel := range map[string]gm.ServerSelector{"Rendezvous": &r, "ServerList": &l} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sel.PickServer("rule/user/{alice}/count"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestHashTag(t *testing.T) {
	tests := []struct{ key, tag string }{
		{"a:{alice}:count", "alice"},
		{"a:{alice}:lock", "alice"},
		{"{}x", "{}x"},
		{"x{", "x{"},
		{"}{a}", "a"},
		{"{a}{b}", "a"},
		{"{{a}}", "{a"},
		{"plain", "plain"},
	}
	for _, tc := range tests {
		if got := hashTag(tc.key); got != tc.tag {
			t.Errorf("hashTag(%q) = %q, want %q", tc.key, got, tc.tag)
		}
	}
	var r RendezvousSelector
	if err := r.SetServers("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		a1, _ := r.PickServer(fmt.Sprintf("lockout:a:user:{u=user%d}", i))
		a2, _ := r.PickServer(fmt.Sprintf("lockout:l:user:{u=user%d}", i))
		if a1 != a2 {
			t.Fatalf("keys with tag user%d on %s and %s", i, a1, a2)
		}
	}
}
