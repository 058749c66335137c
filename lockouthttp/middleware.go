package lockouthttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/statuswriter"
)

// Config configures a Middleware. Every field is optional.
type Config struct {
	// ClientIP returns the client's address. Default PeerIP: the request's
	// direct peer. Behind reverse proxies, use an IPResolver's ClientIP
	// method; with PeerIP behind a proxy, every client shares the proxy's
	// counters. An error is handled like a UsernameFunc's (PeerIP's and
	// IPResolver's wrap lockout.ErrInvalidSubject: 400); a zero address
	// with a nil error means none, and rules keyed by the IP do not apply.
	ClientIP func(*http.Request) (netip.Addr, error)

	// Username returns the username the request claims: BasicAuth,
	// FormField, JSONField or a function of your own. Default: none, so
	// only rules without the username apply.
	Username UsernameFunc

	// Subject, when set, completes the subject after the IP, username and
	// user agent (the User-Agent header) are filled in, e.g. with custom
	// fields for rules keyed by them. An error is handled like a
	// UsernameFunc's.
	Subject func(r *http.Request, s *lockout.Subject) error

	// Succeeded decides from the handler's response whether the login
	// succeeded; it is called only when the handler wrote a response.
	// Default: a 2xx status. A redirect (3xx) is a failure by default,
	// since login pages redirect after a failure (back to the form) as
	// often as after a success: a handler that redirects after a success
	// calls SetOutcome(r, true) first (one line), and a wrong guess never
	// passes for a success. A login page that answers a wrong password
	// with 200 needs SetOutcome(r, false), or its own function, or every
	// failure counts as a success.
	Succeeded func(r *http.Request, status int, header http.Header) bool

	// Refused answers a refused attempt. Default DefaultRefused, whose
	// HTML page links back to FormURL. A login page of your own can show
	// RefusalMessage instead.
	Refused func(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError)

	// FormURL is where the default refusal page's "Back to the login
	// form" link goes, e.g. "/login" when the form is served apart from
	// the handler that checks it. Default: the refused request's path.
	// It is unused when Refused is set.
	FormURL string

	// Conceal, when set, answers every refused attempt (locked,
	// capacity, denylisted, unavailable) in place of Refused, with the
	// response of a wrong password, so that a client cannot tell a locked
	// account from a wrong password: typically a handler writing the same
	// 401 and body as the login handler's failure. No Retry-After is sent.
	// A refusal is answered faster than a password is checked; add the
	// same delay (or a dummy hash) to Conceal if timing matters to you.
	Conceal http.Handler

	// Error answers a request that cannot be checked: a client address or
	// username that cannot be keyed, or an error from Username or Subject.
	// Default DefaultError.
	Error func(w http.ResponseWriter, r *http.Request, err error)

	// DeviceCookie names the cookie that carries the device token, when
	// the policy has known devices (lockout.Config.Devices): the
	// middleware reads it into Subject.DeviceToken, and sets it (Secure,
	// HttpOnly, SameSite=Lax, Path "/", for the token's life) on the
	// response of a successful login, as its status is written: when the
	// handler called SetOutcome(r, true) before, or else when a
	// Config.Succeeded of your own says so. The default status rule never
	// sets it (a device cookie lifts the username rules for its holder,
	// and a status is only a guess at the outcome: a failure page answered
	// with 200 would hand every guesser one). Default DefaultDeviceCookie,
	// whose __Host- prefix keeps other hosts from planting a cookie that
	// hides the owner's; keep the prefix in a name of your own.
	DeviceCookie string

	// CrossOrigin refuses cross-origin requests before they are counted,
	// with Error and an error wrapping ErrCrossOrigin (DefaultError: 403):
	// a page on another site could otherwise make its visitors' browsers
	// post wrong logins, and lock out their address (with its whole IPv6
	// prefix, or everyone behind their NAT) and any username it names.
	// Default http.NewCrossOriginProtection(): a request by any method but
	// GET, HEAD and OPTIONS is refused when the browser says it comes from
	// another site (Sec-Fetch-Site), or its Origin does not match its Host;
	// requests from non-browser clients, which send neither header, pass.
	// Pass your own to trust other origins (a login form served by another
	// of your sites, a proxy that rewrites Host), or one with
	// AddInsecureBypassPattern("/") to count every request.
	CrossOrigin *http.CrossOriginProtection
}

// ErrCrossOrigin is wrapped by the error a Middleware hands Config.Error
// for a cross-origin request (Config.CrossOrigin), which it does not count.
var ErrCrossOrigin = errors.New("lockouthttp: cross-origin request")

// A Middleware guards a login handler with a lockout.Policy. Make one with
// NewMiddleware; it is safe for concurrent use.
//
// For every request, Wrap's handler builds a lockout.Subject (Config's
// ClientIP, Username and Subject), asks the policy (Policy.Allow), and on
// admission runs the login handler and reports its outcome:
//
//   - an outcome the handler set with SetOutcome;
//   - otherwise, when the handler wrote a response (WriteHeader, Write or
//     Flush), Config.Succeeded's verdict on its status, by default a
//     success iff the status is 2xx (a redirect is a failure unless the
//     handler called SetOutcome(r, true));
//   - otherwise a failure: a handler that panicked (the panic goes on), or
//     that wrote nothing, or that hijacked the connection, counts as a
//     failed login. Write the status of a successful login explicitly.
//
// A refused attempt never reaches the handler: Config.Conceal or
// Config.Refused answers it (by default 429 with Retry-After; see
// DefaultRefused). A request whose subject cannot be keyed (an invalid
// address, a username the policy's canonicaliser rejects, a malformed JSON
// body) is answered by Config.Error, by default 400, without the handler.
//
// When the policy fails open on a backend error, the handler runs and
// nothing is counted.
//
// Guard only the handler that verifies passwords, for the method it
// verifies them with: every request it sees counts as an attempt, and by
// default a 2xx answer as a successful login, which resets the counters
// of the username the request names. A handler that also serves the login
// form (a GET answered with 200) reports a success for every view of it,
// and FormField reads the query string as well: a client that fetches
// GET /login?username=alice between two guesses guesses alice's password
// without end (60 passwords checked against a limit of 3 in a test). A
// GET is also what CrossOrigin lets a page on another site make its
// visitors' browsers send. With Go 1.22 patterns, register the login page
// and the login action apart ("GET /login", "POST /login").
type Middleware struct {
	p   *lockout.Policy
	cfg Config
}

// NewMiddleware returns a middleware asking p. It panics if p is nil.
func NewMiddleware(p *lockout.Policy, cfg Config) *Middleware {
	if p == nil {
		panic("lockouthttp: NewMiddleware with a nil policy")
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = PeerIP
	}
	if cfg.Refused == nil {
		cfg.Refused = refusedLinking(cfg.FormURL)
	}
	if cfg.Error == nil {
		cfg.Error = DefaultError
	}
	if cfg.CrossOrigin == nil {
		cfg.CrossOrigin = http.NewCrossOriginProtection()
	}
	return &Middleware{p: p, cfg: cfg}
}

// Subject returns the subject the middleware checks for r. It may read
// (and put back) r's body.
func (m *Middleware) Subject(r *http.Request) (lockout.Subject, error) {
	ip, err := m.cfg.ClientIP(r)
	if err != nil {
		return lockout.Subject{}, err
	}
	s := lockout.Subject{UserAgent: r.UserAgent()}
	if ip.IsValid() {
		s.IP = ip.String()
	}
	if m.p.KnowsDevices() {
		if c, err := r.Cookie(m.deviceCookie()); err == nil {
			s.DeviceToken = c.Value
		}
	}
	if m.cfg.Username != nil {
		if s.Username, err = m.cfg.Username(r); err != nil {
			return lockout.Subject{}, err
		}
	}
	if m.cfg.Subject != nil {
		if err := m.cfg.Subject(r, &s); err != nil {
			return lockout.Subject{}, err
		}
	}
	return s, nil
}

// Wrap returns a handler that guards next, the login handler. Its signature
// fits routers' middleware chains.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.cfg.CrossOrigin.Check(r); err != nil {
			m.cfg.Error(w, r, fmt.Errorf("%w: %w", ErrCrossOrigin, err))
			return
		}
		s, err := m.Subject(r)
		if err != nil {
			m.cfg.Error(w, r, err)
			return
		}
		ctx := r.Context()
		a, err := m.p.Allow(ctx, s)
		if err != nil {
			var re *lockout.RefusedError
			switch {
			case !errors.As(err, &re):
				m.cfg.Error(w, r, err)
			case m.cfg.Conceal != nil:
				m.cfg.Conceal.ServeHTTP(w, r)
			default:
				m.cfg.Refused(w, r, re)
			}
			return
		}
		st := &requestState{subject: s}
		r = r.WithContext(context.WithValue(ctx, stateKey{}, st))
		if m.p.KnowsDevices() && s.Username != "" {
			w = &deviceWriter{ResponseWriter: w, m: m, r: r, st: st, a: a}
		}
		sw := statuswriter.New(w)
		reported := false
		defer func() {
			if !reported { // the handler panicked
				a.Failure(ctx)
			}
		}()
		next.ServeHTTP(sw, r)
		reported = true
		if m.succeeded(r, sw, st) {
			a.Success(ctx)
		} else {
			a.Failure(ctx)
		}
	})
}

func (m *Middleware) succeeded(r *http.Request, sw *statuswriter.Writer, st *requestState) bool {
	switch st.outcome.Load() {
	case outcomeSuccess:
		return true
	case outcomeFailure:
		return false
	}
	if sw.Status() == 0 {
		return false
	}
	if m.cfg.Succeeded != nil {
		return m.cfg.Succeeded(r, sw.Status(), sw.Header())
	}
	return sw.Status() >= 200 && sw.Status() < 300
}

const (
	outcomeSuccess = 1 + iota
	outcomeFailure
)

type stateKey struct{}

// requestState is what the middleware keeps in an admitted request's
// context.
type requestState struct {
	subject lockout.Subject
	outcome atomic.Int32
}

// SetOutcome tells the middleware guarding r whether the login succeeded,
// overriding what the response's status says. Call it from the login
// handler, with the request it was given. It does nothing outside a
// Middleware; the last call wins.
func SetOutcome(r *http.Request, success bool) {
	st, ok := r.Context().Value(stateKey{}).(*requestState)
	if !ok {
		return
	}
	if success {
		st.outcome.Store(outcomeSuccess)
	} else {
		st.outcome.Store(outcomeFailure)
	}
}

// SubjectFromContext returns the subject the middleware admitted, from the
// context of the request it passed to the login handler. The handler should
// verify the password of exactly this Username.
func SubjectFromContext(ctx context.Context) (lockout.Subject, bool) {
	st, ok := ctx.Value(stateKey{}).(*requestState)
	if !ok {
		return lockout.Subject{}, false
	}
	return st.subject, true
}
