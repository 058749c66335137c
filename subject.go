package lockout

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/text/secure/precis"
)

// Subject describes who is attempting to log in. Every field is optional;
// a rule applies to an attempt only when every field it is keyed by is
// present.
type Subject struct {
	// Username is the name the client claims. It is canonicalised (see
	// Config.Canonicalize) so that case and width variants share a counter.
	Username string
	// IP is the client's address, as net/netip parses it: "203.0.113.5",
	// "2001:db8::1", "::ffff:192.0.2.1" (which is keyed as 192.0.2.1). An
	// address that does not parse is an error, never a shared bucket: strip
	// ports and pick one address from X-Forwarded-For before passing it
	// (package lockouthttp does both).
	IP string
	// UserAgent is the client's User-Agent header.
	UserAgent string
	// Fields holds custom fields by name, for rules keyed by them.
	Fields map[string]string

	// DeviceToken is the device token the client presents (see
	// Config.Devices): when it is valid for Username, the attempt counts
	// on its device's key instead of the rules keyed by the username.
	// Any other token is ignored.
	DeviceToken string
	// PasswordFingerprint is Policy.Fingerprint of the password the
	// attempt verifies (see Config.Fingerprints): a wrong password the
	// username already failed with is not counted again.
	PasswordFingerprint string
}

// canonical is a Subject after canonicalisation.
type canonical struct {
	username  string // canonical; "" when absent
	ip        netip.Addr
	ipStr     string // ip's String, when the subject gave it so; else ""
	userAgent string
	fields    map[string]string
	// x holds a valid device token's id and the password fingerprint;
	// nil when the attempt has neither, so that attempts stay small.
	x *extras
	// start is when Allow started (Policy.now), for the time of its
	// events: read for a DecisionObserver; 0 when not read.
	start int64
}

// CanonicalizeUsername is the default username canonicaliser: the PRECIS
// UsernameCaseMapped profile of RFC 8265 (width mapping, case folding to
// lower case, NFC). It rejects names the profile disallows, such as ones with
// spaces or control characters.
func CanonicalizeUsername(name string) (string, error) {
	if s, ok := asciiUsername(name); ok {
		return s, nil
	}
	return precis.UsernameCaseMapped.String(name)
}

// asciiUsername is the fast path of CanonicalizeUsername for printable ASCII
// without spaces, where the PRECIS profile amounts to lower-casing. It
// reports false when the name needs the full profile.
func asciiUsername(name string) (string, bool) {
	upper := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if name == "" {
		return "", false
	}
	if upper {
		return strings.ToLower(name), true
	}
	return name, true
}

// ErrInvalidSubject is wrapped by the errors returned for a subject that
// cannot be keyed: an IP address that does not parse, or a username the
// canonicaliser rejects.
var ErrInvalidSubject = errors.New("lockout: invalid subject")

func (p *Policy) canonicalize(s Subject) (canonical, error) {
	var c canonical
	err := p.canonicalizeTo(&c, &s)
	return c, err
}

// canonicalizeTo is canonicalize into c, which holds nothing yet: Allow
// fills its Attempt's without a copy (a copy of pointers costs write
// barriers while the garbage collector runs).
func (p *Policy) canonicalizeTo(c *canonical, s *Subject) error {
	c.userAgent, c.fields = s.UserAgent, s.Fields
	if s.Username != "" {
		u, err := p.canonUsername(s.Username)
		if err != nil {
			return err
		}
		c.username = u
		if err := p.canonicalizeExtras(c, s); err != nil {
			return err
		}
	}
	if s.IP != "" {
		ip, err := ParseIP(s.IP)
		if err != nil {
			return err
		}
		c.ip = ip
		// Already canonical, the usual case: events and keys need not
		// format it. An IPv4 address written without a colon parsed as
		// dotted decimal, which netip accepts only in its canonical form
		// (four fields, no leading zero).
		var buf [64]byte
		if ip.Is4() && strings.IndexByte(s.IP, ':') < 0 || string(ip.AppendTo(buf[:0])) == s.IP {
			c.ipStr = s.IP
		}
	}
	return nil
}

// MaxUsernameBytes bounds the length of a username given to a Policy,
// before canonicalization: a longer one is an error wrapping
// ErrInvalidSubject, as any invalid username. Canonicalizing takes time in
// proportion to the length (about 50 ms for a megabyte), which a refusal
// would otherwise pay before refusing, and no login name is this long.
const MaxUsernameBytes = 1024

// CanonicalUsername returns name as the policy counts it: canonicalized by
// Config.Canonicalize (PRECIS UsernameCaseMapped by default), the form its
// keys hold. A username the policy cannot key is an error wrapping
// ErrInvalidSubject.
func (p *Policy) CanonicalUsername(name string) (string, error) {
	return p.canonUsername(name)
}

// canonUsername canonicalizes the username u, or returns an error wrapping
// ErrInvalidSubject.
func (p *Policy) canonUsername(u string) (string, error) {
	if len(u) > MaxUsernameBytes {
		return "", fmt.Errorf("%w: a username of %d bytes, more than MaxUsernameBytes (%d)", ErrInvalidSubject, len(u), MaxUsernameBytes)
	}
	c, err := p.canon(u)
	if err != nil {
		return "", fmt.Errorf("%w: username %q: %w", ErrInvalidSubject, u, err)
	}
	if c == "" && u != "" {
		// Keyed as no username, it would skip every username rule.
		return "", fmt.Errorf("%w: username %q: Canonicalize made it empty", ErrInvalidSubject, u)
	}
	return c, nil
}

// ipString returns c's IP address in its canonical form; "" when absent.
func (c *canonical) ipString() string {
	switch {
	case c.ipStr != "":
		return c.ipStr
	case c.ip.IsValid():
		return c.ip.String()
	}
	return ""
}

// ParseIP parses a client address as the policy keys it: IPv4-mapped IPv6
// addresses become IPv4, and IPv6 zones are dropped. Anything else that
// netip.ParseAddr rejects, including an address with a port or a list of
// addresses, is an error wrapping ErrInvalidSubject.
func ParseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: IP %q: %w", ErrInvalidSubject, s, err)
	}
	return ip.Unmap().WithZone(""), nil
}
