package lockouthttp

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"

	"github.com/go-lockout/lockout"
)

// Header names an IPResolver understands.
const (
	// HeaderXForwardedFor is the de facto standard list of hops: every
	// proxy appends the address of its own peer.
	HeaderXForwardedFor = "X-Forwarded-For"
	// HeaderForwarded is the RFC 7239 header: one element per proxy, whose
	// for= parameter is the address of that proxy's peer.
	HeaderForwarded = "Forwarded"
	// HeaderXRealIP is a single address set by a proxy (nginx's realip
	// module, many load balancers).
	HeaderXRealIP = "X-Real-IP"
)

// PeerIP returns the address of the request's direct peer, r.RemoteAddr
// without its port. IPv4-mapped IPv6 addresses become IPv4 and zones are
// dropped, as lockout.ParseIP does. A RemoteAddr that holds no IP address
// (a Unix socket) is an error wrapping lockout.ErrInvalidSubject.
func PeerIP(r *http.Request) (netip.Addr, error) {
	a, err := parseNode(r.RemoteAddr, false)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lockouthttp: peer address: %w", err)
	}
	return a, nil
}

// An IPResolver finds the client's address behind trusted reverse proxies.
// Make one with NewIPResolver; it is safe for concurrent use.
//
// When the request's peer (r.RemoteAddr) is not a trusted proxy, the peer is
// the client, and the header is ignored entirely: any client can send it.
// When the peer is trusted, the resolver reads the header's hops from right
// to left, over every occurrence of the header in order, and returns the
// first hop that is not a trusted proxy: the address the outermost trusted
// proxy saw. Hops further left were sent by the client and are never read.
// When every hop is trusted, the client is the left-most hop; when the
// header is absent or empty, it is the peer.
//
// Ports are stripped, IPv4-mapped IPv6 addresses become IPv4 and zones are
// dropped. A hop that the walk reaches and that is not an address (garbage,
// or a Forwarded "unknown" or obfuscated identifier) is an error wrapping
// lockout.ErrInvalidSubject: the request is not keyed at all, rather than
// keyed by an attacker's string or by a proxy's address shared with every
// other client. Since trusted proxies write the hops the walk reads, such an
// error means a proxy did not identify its peer, or a trusted proxy passes
// the header on without appending to it.
type IPResolver struct {
	trusted   []netip.Prefix
	header    string // canonical
	forwarded bool
}

// NewIPResolver returns a resolver that believes header when the request
// comes from an address within one of the trusted prefixes (single
// addresses are /32 or /128 prefixes). header is HeaderXForwardedFor (also
// when empty), HeaderForwarded (RFC 7239 for= parameters, with quoted
// "[2001:db8::1]:443" nodes), or the name of any other header that holds
// one address, or a comma-separated list of them appended by each proxy,
// such as HeaderXRealIP.
//
// With no trusted prefixes the resolver always returns the peer, like
// PeerIP. A prefix of length zero (trusting every address) is an error: it
// would let any client choose its own address.
func NewIPResolver(header string, trusted ...netip.Prefix) (*IPResolver, error) {
	if header == "" {
		header = HeaderXForwardedFor
	}
	for i := 0; i < len(header); i++ {
		if !isTchar(header[i]) {
			return nil, fmt.Errorf("lockouthttp: header name %q is not a valid token", header)
		}
	}
	res := &IPResolver{header: textproto.CanonicalMIMEHeaderKey(header)}
	res.forwarded = res.header == HeaderForwarded
	for _, p := range trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("lockouthttp: trusted proxy prefix %v is not valid", p)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("lockouthttp: trusted proxy prefix %v mixes IPv4-mapped and other IPv6 addresses", p)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("lockouthttp: trusted proxy prefix %v trusts every address: clients could choose their own", p)
		}
		res.trusted = append(res.trusted, p.Masked())
	}
	return res, nil
}

// Header returns the canonical name of the header the resolver reads.
func (res *IPResolver) Header() string { return res.header }

func (res *IPResolver) isTrusted(a netip.Addr) bool {
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client's address: see IPResolver. Errors wrap
// lockout.ErrInvalidSubject. Its signature fits Config.ClientIP.
func (res *IPResolver) ClientIP(r *http.Request) (netip.Addr, error) {
	peer, err := PeerIP(r)
	if err != nil || !res.isTrusted(peer) {
		return peer, err
	}
	return res.walk(peer, r.Header[res.header])
}

// walk resolves the client from the values of the header, sent by the
// trusted peer.
func (res *IPResolver) walk(peer netip.Addr, values []string) (netip.Addr, error) {
	leftmost := peer
	for vi := len(values) - 1; vi >= 0; vi-- {
		s := values[vi]
		for s != "" {
			var hop string
			if res.forwarded {
				elem, rest, err := lastElement(s)
				if err != nil {
					return netip.Addr{}, err
				}
				s = rest
				if strings.Trim(elem, " \t;") == "" {
					continue // an empty list element, or one of empty pairs
				}
				if hop, err = forParam(elem); err != nil {
					return netip.Addr{}, err
				}
			} else {
				i := strings.LastIndexByte(s, ',')
				hop = trimOWS(s[i+1:])
				if i < 0 {
					s = ""
				} else {
					s = s[:i]
				}
				if hop == "" {
					continue // an empty list element
				}
			}
			a, err := parseNode(hop, res.forwarded)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("lockouthttp: %s hop: %w", res.header, err)
			}
			if !res.isTrusted(a) {
				return a, nil
			}
			leftmost = a
		}
	}
	return leftmost, nil
}

// errNotAddress wraps lockout.ErrInvalidSubject for values that hold no
// address.
var errNotAddress = fmt.Errorf("%w: not an IP address", lockout.ErrInvalidSubject)

// parseNode parses an address with an optional port: "192.0.2.1",
// "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443".
// obfPort admits RFC 7239 obfuscated ports ("_abc"). Identifiers that are
// not addresses ("unknown", "_hidden") are errors.
func parseNode(s string, obfPort bool) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), nil
	}
	var host, port string
	if strings.HasPrefix(s, "[") {
		// "[host]" or "[host]:port", split at the last colon as
		// netip.ParseAddrPort does (a zone may hold ']').
		hostPart := s
		if !strings.HasSuffix(s, "]") {
			i := strings.LastIndexByte(s, ':')
			if i < 0 {
				return netip.Addr{}, fmt.Errorf("%q: %w", clip(s), errNotAddress)
			}
			hostPart, port = s[:i], s[i+1:]
			if !strings.HasSuffix(hostPart, "]") {
				return netip.Addr{}, fmt.Errorf("%q: %w", clip(s), errNotAddress)
			}
		}
		host = hostPart[1 : len(hostPart)-1]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return netip.Addr{}, fmt.Errorf("%q: %w", clip(s), errNotAddress)
		}
		if hostPart == s {
			return lockout.ParseIP(host) // "[2001:db8::1]"
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return netip.Addr{}, fmt.Errorf("%q: %w", clip(s), errNotAddress)
		}
		host, port = s[:i], s[i+1:]
		// An unbracketed IPv6 address with a port is ambiguous.
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("%q: %w", clip(s), errNotAddress)
		}
	}
	if !validPort(port, obfPort) {
		return netip.Addr{}, fmt.Errorf("%q: bad port: %w", clip(s), errNotAddress)
	}
	return lockout.ParseIP(host)
}

// validPort reports whether p is a decimal port, or with obf an RFC 7239
// obfuscated port.
func validPort(p string, obf bool) bool {
	if p == "" {
		return false
	}
	if obf && p[0] == '_' {
		for i := 1; i < len(p); i++ {
			if c := p[i]; !(isAlnum(c) || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return len(p) > 1
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		if n = n*10 + int(p[i]-'0'); n > 65535 {
			return false
		}
	}
	return true
}

// lastElement splits the right-most element off a Forwarded header value,
// honouring quoted strings, so that a malformed left part sent by the
// client never changes how the proxies' elements on its right are read.
func lastElement(s string) (elem, rest string, err error) {
	quoted := false
	for j := len(s) - 1; j >= 0; j-- {
		c := s[j]
		switch {
		case !quoted && c == ',':
			return s[j+1:], s[:j], nil
		case !quoted && c == '"':
			quoted = true
		case quoted && c == '"':
			// The opening quote unless escaped: preceded by an odd number
			// of backslashes.
			k := j - 1
			for k >= 0 && s[k] == '\\' {
				k--
			}
			if (j-1-k)%2 == 0 {
				quoted = false
			}
		}
	}
	if quoted {
		return "", "", fmt.Errorf("lockouthttp: Forwarded element %q: unterminated quoted string: %w", clip(s), lockout.ErrInvalidSubject)
	}
	return s, "", nil
}

// errForwarded wraps lockout.ErrInvalidSubject for malformed Forwarded
// elements.
var errForwarded = fmt.Errorf("%w: malformed Forwarded element", lockout.ErrInvalidSubject)

// forParam returns the value of the for= parameter of one Forwarded
// element: forwarded-pair *( ";" forwarded-pair ), where a pair is
// token=value and a value is a token or a quoted string. Parameter names
// are case-insensitive; a parameter named twice, or no for= at all, is an
// error, and so is a for= value holding backslash escapes (no address
// needs one).
func forParam(elem string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("lockouthttp: Forwarded element %q: %s: %w", clip(elem), why, errForwarded)
	}
	var val string
	var found bool
	s := elem
	for {
		s = trimOWS(s)
		if s == "" {
			break
		}
		if s[0] == ';' {
			s = s[1:]
			continue
		}
		n := 0
		for n < len(s) && isTchar(s[n]) {
			n++
		}
		if n == 0 || n == len(s) || s[n] != '=' {
			return bad("want name=value")
		}
		name := s[:n]
		s = s[n+1:]
		var v string
		if s != "" && s[0] == '"' {
			end := 1
			escaped := false
			for ; end < len(s) && s[end] != '"'; end++ {
				if s[end] == '\\' {
					escaped = true
					end++
				}
			}
			if end >= len(s) {
				return bad("unterminated quoted string")
			}
			v, s = s[1:end], s[end+1:]
			if escaped && strings.EqualFold(name, "for") {
				return bad("escaped for= value")
			}
		} else {
			n := 0
			for n < len(s) && (isTchar(s[n]) || s[n] == ':' || s[n] == '[' || s[n] == ']') {
				n++
			}
			v, s = s[:n], s[n:]
		}
		if strings.EqualFold(name, "for") {
			if found {
				return bad("for= named twice")
			}
			val, found = v, true
		}
		s = trimOWS(s)
		if s != "" && s[0] != ';' {
			return bad("want ';' between parameters")
		}
	}
	if !found {
		return bad("no for= parameter")
	}
	return val, nil
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isTchar reports whether c may appear in an HTTP token (RFC 9110).
func isTchar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// clip shortens attacker-supplied strings quoted in errors.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
