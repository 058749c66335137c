// Package lockouthttp puts a lockout.Policy in front of an HTTP login
// handler, with net/http only, so it works with any router that takes an
// http.Handler. It also serves an operator view of the policy.
//
//	mw := lockouthttp.NewMiddleware(policy, lockouthttp.Config{
//		Username: lockouthttp.FormField("username"),
//	})
//	mux.Handle("POST /login", mw.Wrap(loginHandler))
//
// # Client address
//
// By default the client is the request's direct peer (PeerIP). Behind
// reverse proxies, an IPResolver believes X-Forwarded-For, RFC 7239
// Forwarded, or a header such as X-Real-IP only when the peer is one of
// the trusted proxies, and then takes the right-most address that is not a
// trusted proxy: the one the outermost trusted proxy saw. Entries further
// left were written by the client and are never read, so a forged header
// cannot earn a fresh counter. An entry the walk reaches that is not an
// address makes the request an error (400), never a key. IPv6 clients are
// counted by prefix (/64 by default, see lockout.Rule), so that one
// client cannot walk its own prefix for fresh counters.
//
// # Username
//
// BasicAuth, FormField and JSONField extract the username; FormField and
// JSONField read at most MaxBodyBytes (1 MiB) of the body and put it back,
// so the login handler reads the whole body as sent. The middleware counts
// the attempt under that username; the handler must verify the same one
// (SubjectFromContext returns it). An absent username is "": rules keyed by
// the username then do not apply.
//
// # Outcome
//
// After the handler ran, the attempt is a success when the handler called
// SetOutcome(r, true), or else when it wrote a 2xx status (or
// Config.Succeeded said so); anything else is a failure, including a
// redirect, a panic, a hijacked connection, or a handler that wrote
// nothing at all. A handler that redirects after a successful login calls
// SetOutcome(r, true) before: a redirect is as often the answer to a
// wrong password (back to the form), and a guess must never pass for a
// success. The device cookie of known devices is set only after
// SetOutcome(r, true) or a Config.Succeeded of your own.
//
// # Refusals
//
// A refused attempt is answered without running the handler: 429 with
// Retry-After (whole seconds, rounded up) for a lock or a full window, 403
// for a deny list, 503 when the store is down and the policy fails closed;
// see DefaultRefused. Config.Conceal answers refusals like a wrong password
// instead, for sites that must not disclose a lockout.
//
// # Operators
//
// Operator is an http.Handler with a JSON API and one HTML page: a
// subject's status, unlock, reset, reset-all, the locked keys where the
// store can list them (on the page, grouped by subject, one Unlock per
// group), and the recent attempts of the policy's journal (when
// lockout.Config.Journal is set), filtered and paged. It refuses every
// request unless OperatorConfig.Authorize allows it and names the operator,
// whose name every unlock and reset carries into the journal and the log,
// and rejects cross-origin POSTs.
package lockouthttp
