package lockouthttp

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-lockout/lockout"
)

var testTrusted = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("2001:db8:ffff::/48"),
	netip.MustParsePrefix("::ffff:192.168.0.0/112"), // IPv4-mapped: 192.168.0.0/16
}

func request(remote string, header string, values ...string) *http.Request {
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = remote
	for _, v := range values {
		r.Header.Add(header, v)
	}
	return r
}

func TestPeerIP(t *testing.T) {
	tests := []struct {
		remote, want string
	}{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"[fe80::1%eth0]:80", "fe80::1"},
		{"", ""},
		{"@", ""},
		{"/tmp/sock", ""},
		{"example.com:80", ""},
		{"192.0.2.1:", ""},
		{"192.0.2.1:65536", ""},
		{"192.0.2.1:http", ""},
		{"2001:db8::1:80:x", ""},
		{"[2001:db8::1]x", ""},
		{"[192.0.2.1]:80", ""},
		{"01.2.3.4", ""},
	}
	for _, tt := range tests {
		got, err := PeerIP(request(tt.remote, ""))
		if tt.want == "" {
			if err == nil || !errors.Is(err, lockout.ErrInvalidSubject) {
				t.Errorf("PeerIP(%q) = %v, %v; want an ErrInvalidSubject", tt.remote, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("PeerIP(%q) = %v, %v; want %s", tt.remote, got, err, tt.want)
		}
	}
}

func TestNewIPResolver(t *testing.T) {
	for _, tt := range []struct {
		header  string
		trusted []netip.Prefix
		ok      bool
	}{
		{"", nil, true},
		{"x-real-ip", testTrusted, true},
		{"Bad Header", nil, false},
		{"X-Forwarded-For", []netip.Prefix{{}}, false},
		{"X-Forwarded-For", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, false},
		{"X-Forwarded-For", []netip.Prefix{netip.MustParsePrefix("::/0")}, false},
		{"X-Forwarded-For", []netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/96")}, false},
		{"X-Forwarded-For", []netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/80")}, false},
	} {
		_, err := NewIPResolver(tt.header, tt.trusted...)
		if (err == nil) != tt.ok {
			t.Errorf("NewIPResolver(%q, %v): err = %v, want ok=%v", tt.header, tt.trusted, err, tt.ok)
		}
	}
	res, _ := NewIPResolver("x-real-ip")
	if res.Header() != "X-Real-Ip" {
		t.Errorf("Header() = %q", res.Header())
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name   string
		header string
		remote string
		values []string
		want   string // "" for an error
	}{
		// X-Forwarded-For.
		{"no header", "", "10.0.0.1:1", nil, "10.0.0.1"},
		{"empty header", "", "10.0.0.1:1", []string{""}, "10.0.0.1"},
		{"untrusted peer ignores header", "", "198.51.100.7:1", []string{"203.0.113.5"}, "198.51.100.7"},
		{"untrusted peer ignores garbage", "", "198.51.100.7:1", []string{"garbage"}, "198.51.100.7"},
		{"one hop", "", "10.0.0.1:1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"forged left part", "", "10.0.0.1:1", []string{"6.6.6.6, 203.0.113.5"}, "203.0.113.5"},
		{"garbage left part", "", "10.0.0.1:1", []string{"garbage, ]]], 203.0.113.5"}, "203.0.113.5"},
		{"trusted chain", "", "10.0.0.1:1", []string{"6.6.6.6, 203.0.113.5, 10.1.2.3, 10.9.9.9"}, "203.0.113.5"},
		{"several header lines", "", "10.0.0.1:1", []string{"6.6.6.6", "203.0.113.5, 10.1.2.3", "10.9.9.9"}, "203.0.113.5"},
		{"empty elements", "", "10.0.0.1:1", []string{"203.0.113.5,,  ,\t", ""}, "203.0.113.5"},
		{"all trusted: left-most", "", "10.0.0.1:1", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"port stripped", "", "10.0.0.1:1", []string{"203.0.113.5:5555"}, "203.0.113.5"},
		{"IPv6 with port", "", "10.0.0.1:1", []string{"[2001:db8::5]:443"}, "2001:db8::5"},
		{"IPv6 bracketed", "", "10.0.0.1:1", []string{"[2001:db8::5]"}, "2001:db8::5"},
		{"IPv6 bare", "", "[2001:db8:ffff::1]:1", []string{"2001:db8::5"}, "2001:db8::5"},
		{"IPv4-mapped", "", "10.0.0.1:1", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"mapped trusted peer", "", "[::ffff:10.0.0.1]:1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"mapped trusted prefix", "", "192.168.1.1:1", []string{"203.0.113.5, ::ffff:192.168.3.3"}, "203.0.113.5"},
		{"zone dropped", "", "10.0.0.1:1", []string{"fe80::1%eth0"}, "fe80::1"},
		{"garbage right-most", "", "10.0.0.1:1", []string{"203.0.113.5, garbage"}, ""},
		{"garbage behind trusted", "", "10.0.0.1:1", []string{"garbage, 10.2.2.2"}, ""},
		{"unknown", "", "10.0.0.1:1", []string{"unknown"}, ""},
		{"bad port", "", "10.0.0.1:1", []string{"203.0.113.5:99999"}, ""},
		{"ambiguous IPv6 port", "", "10.0.0.1:1", []string{"2001:db8::5:443:x"}, ""},
		{"bad peer", "", "nonsense", []string{"203.0.113.5"}, ""},

		// X-Real-IP and other single-address headers.
		{"real-ip", "X-Real-IP", "10.0.0.1:1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"real-ip untrusted", "X-Real-IP", "198.51.100.7:1", []string{"203.0.113.5"}, "198.51.100.7"},
		{"real-ip appended line", "X-Real-IP", "10.0.0.1:1", []string{"6.6.6.6", "203.0.113.5"}, "203.0.113.5"},
		{"real-ip garbage", "X-Real-IP", "10.0.0.1:1", []string{"x"}, ""},
		{"real-ip ignores XFF", "X-Real-IP", "10.0.0.1:1", nil, "10.0.0.1"},

		// Forwarded.
		{"fwd simple", "Forwarded", "10.0.0.1:1", []string{"for=203.0.113.5"}, "203.0.113.5"},
		{"fwd case", "Forwarded", "10.0.0.1:1", []string{"For=203.0.113.5;Proto=https"}, "203.0.113.5"},
		{"fwd rfc example", "Forwarded", "10.0.0.1:1", []string{`for=192.0.2.43, for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"fwd params", "Forwarded", "10.0.0.1:1", []string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, "192.0.2.60"},
		{"fwd quoted v4 port", "Forwarded", "10.0.0.1:1", []string{`for="192.0.2.60:8080"`}, "192.0.2.60"},
		{"fwd obfuscated port", "Forwarded", "10.0.0.1:1", []string{`for="192.0.2.60:_abc"`}, "192.0.2.60"},
		{"fwd chain", "Forwarded", "10.0.0.1:1", []string{`for=6.6.6.6, for=203.0.113.5;proto=https, for=10.2.2.2;by=10.0.0.1`}, "203.0.113.5"},
		{"fwd lines", "Forwarded", "10.0.0.1:1", []string{`for=6.6.6.6`, `for=203.0.113.5`, `for="[2001:db8:ffff::9]"`}, "203.0.113.5"},
		{"fwd comma in quotes", "Forwarded", "10.0.0.1:1", []string{`for=203.0.113.5;host="a,b", for=10.2.2.2`}, "203.0.113.5"},
		{"fwd escaped quote", "Forwarded", "10.0.0.1:1", []string{`for=203.0.113.5;x="a\"b,c\\", for=10.2.2.2`}, "203.0.113.5"},
		{"fwd garbage left", "Forwarded", "10.0.0.1:1", []string{`for="unterminated, ;;;=, for=203.0.113.5`}, "203.0.113.5"},
		{"fwd garbage left quoted v6", "Forwarded", "10.0.0.1:1", []string{`for="x, for="[2001:db8::5]:1"`}, "2001:db8::5"},
		{"fwd empty elements", "Forwarded", "10.0.0.1:1", []string{`for=203.0.113.5, , ;`}, "203.0.113.5"},
		{"fwd empty pairs", "Forwarded", "10.0.0.1:1", []string{`;for=203.0.113.5;;proto=http;`}, "203.0.113.5"},
		{"fwd unknown", "Forwarded", "10.0.0.1:1", []string{`for=unknown`}, ""},
		{"fwd obfuscated", "Forwarded", "10.0.0.1:1", []string{`for=_hidden`}, ""},
		{"fwd unknown behind trusted", "Forwarded", "10.0.0.1:1", []string{`for=unknown, for=10.2.2.2`}, ""},
		{"fwd unknown left of client", "Forwarded", "10.0.0.1:1", []string{`for=unknown, for=203.0.113.5`}, "203.0.113.5"},
		{"fwd no for", "Forwarded", "10.0.0.1:1", []string{`proto=https`}, ""},
		{"fwd for twice", "Forwarded", "10.0.0.1:1", []string{`for=203.0.113.5;for=203.0.113.6`}, ""},
		{"fwd unbracketed v6 port", "Forwarded", "10.0.0.1:1", []string{`for="2001:db8::5:443"`}, "2001:db8::5:443"}, // a valid address
		{"fwd escaped for", "Forwarded", "10.0.0.1:1", []string{`for="203.0.113\.5"`}, ""},
		{"fwd unterminated", "Forwarded", "10.0.0.1:1", []string{`for="203.0.113.5`}, ""},
		{"fwd space around =", "Forwarded", "10.0.0.1:1", []string{`for = 203.0.113.5`}, ""},
		{"fwd untrusted peer", "Forwarded", "198.51.100.7:1", []string{`for=203.0.113.5`}, "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := NewIPResolver(tt.header, testTrusted...)
			if err != nil {
				t.Fatal(err)
			}
			h := tt.header
			if h == "" {
				h = HeaderXForwardedFor
			}
			got, err := res.ClientIP(request(tt.remote, h, tt.values...))
			if tt.want == "" {
				if !errors.Is(err, lockout.ErrInvalidSubject) {
					t.Errorf("ClientIP = %v, %v; want an error wrapping ErrInvalidSubject", got, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Errorf("ClientIP = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestNoTrustedProxies(t *testing.T) {
	res, err := NewIPResolver(HeaderXForwardedFor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := res.ClientIP(request("10.0.0.1:1", HeaderXForwardedFor, "203.0.113.5"))
	if err != nil || got.String() != "10.0.0.1" {
		t.Errorf("ClientIP = %v, %v; want the peer", got, err)
	}
}

// appearsIn reports whether a is what lockout.ParseIP makes of some
// substring of s.
func appearsIn(a netip.Addr, s string) bool {
	const maxLen = 64 // longer than any address with a short zone
	for i := 0; i < len(s); i++ {
		for j := i + 1; j <= len(s) && j-i <= maxLen; j++ {
			if b, err := lockout.ParseIP(s[i:j]); err == nil && b == a {
				return true
			}
		}
	}
	return false
}

// checkResolved checks the properties every resolution keeps.
func checkResolved(t *testing.T, res *IPResolver, remote string, values []string) {
	t.Helper()
	r := request(remote, res.header, values...)
	got, err := res.ClientIP(r)
	peer, perr := PeerIP(r)
	if err != nil {
		if !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Fatalf("error %v does not wrap ErrInvalidSubject", err)
		}
		if perr == nil && !res.isTrusted(peer) {
			t.Fatalf("untrusted peer %v: error %v", peer, err)
		}
		return
	}
	if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
		t.Fatalf("returned %#v: not a valid, unmapped, zoneless address", got)
	}
	if !appearsIn(got, remote+"\x00"+strings.Join(values, "\x00")) {
		t.Fatalf("returned %v, which is not in the input", got)
	}
	if perr != nil {
		t.Fatalf("returned %v for an invalid peer %q", got, remote)
	}
	if !res.isTrusted(peer) && got != peer {
		t.Fatalf("untrusted peer %v: returned %v", peer, got)
	}
	// Whatever the client sent, a proxy appending an untrusted address
	// makes that address the client.
	if res.isTrusted(peer) {
		const client = "203.0.113.77"
		appended := append([]string(nil), values...)
		suffix := ", " + client
		if res.forwarded {
			suffix = ", for=" + client
		}
		if len(appended) == 0 {
			appended = []string{""}
		}
		appended[len(appended)-1] += suffix
		got, err := res.ClientIP(request(remote, res.header, appended...))
		if err != nil || got.String() != client {
			t.Fatalf("after appending %q: %v, %v; want %s", suffix, got, err, client)
		}
		appended = append(append([]string(nil), values...), strings.TrimPrefix(suffix, ", "))
		got, err = res.ClientIP(request(remote, res.header, appended...))
		if err != nil || got.String() != client {
			t.Fatalf("after a header line %q: %v, %v; want %s", suffix, got, err, client)
		}
	}
}

var fuzzSeeds = []string{
	"", "203.0.113.5", "6.6.6.6, 203.0.113.5, 10.1.2.3", "[2001:db8::5]:443", "garbage, 10.2.2.2",
	"::ffff:10.0.0.3", "fe80::1%eth0", "10.0.0.1:80,,,", `for=192.0.2.43, for="[2001:db8:cafe::17]:4711"`,
	`for=unknown;proto=http`, `for="x, for="[2001:db8::5]:1"`, `for=a;x="a\"b,c\\"`, `for=_x`, "\"",
}

func fuzzResolver(f *testing.F, header string, check func(t *testing.T, res *IPResolver, remote string, values []string)) {
	for _, s := range fuzzSeeds {
		f.Add("10.0.0.1:1234", s)
		f.Add("198.51.100.7:1", s)
		f.Add("[2001:db8:ffff::1]:443", s+"\n"+s)
	}
	res, err := NewIPResolver(header, testTrusted...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, header string) {
		if len(header) > 2048 {
			return
		}
		// Lines stand for several occurrences of the header.
		values := strings.Split(header, "\n")
		if header == "" {
			values = nil
		}
		check(t, res, remote, values)
	})
}

func FuzzXForwardedFor(f *testing.F) { fuzzResolver(f, HeaderXForwardedFor, checkResolved) }

func FuzzForwarded(f *testing.F) { fuzzResolver(f, HeaderForwarded, checkResolved) }

func FuzzXRealIP(f *testing.F) { fuzzResolver(f, HeaderXRealIP, checkResolved) }

func FuzzRemoteAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "[2001:db8::1]:443", "[fe80::1%eth0]:80", "::ffff:1.2.3.4", "@", "", "[::1]", "1.2.3.4:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, remote string) {
		got, err := PeerIP(request(remote, ""))
		if err != nil {
			if !errors.Is(err, lockout.ErrInvalidSubject) {
				t.Fatalf("error %v does not wrap ErrInvalidSubject", err)
			}
			if ap, err := netip.ParseAddrPort(remote); err == nil {
				t.Fatalf("PeerIP(%q) failed, but it is the address-port %v", remote, ap)
			}
			return
		}
		if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
			t.Fatalf("PeerIP(%q) = %#v: not a valid, unmapped, zoneless address", remote, got)
		}
		if !appearsIn(got, remote) {
			t.Fatalf("PeerIP(%q) = %v, which is not in the input", remote, got)
		}
		if ap, err := netip.ParseAddrPort(remote); err == nil && ap.Addr().Unmap().WithZone("") != got {
			t.Fatalf("PeerIP(%q) = %v, want %v", remote, got, ap.Addr())
		}
	})
}
