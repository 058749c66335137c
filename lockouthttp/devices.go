package lockouthttp

import (
	"net/http"
	"time"

	"github.com/go-lockout/lockout"
)

// DefaultDeviceCookie is the name of the cookie that carries a device
// token when Config.DeviceCookie is empty. Its __Host- prefix makes
// browsers accept the cookie only from this host, over HTTPS, with Path
// "/" and no Domain, as the middleware sets it: a sibling subdomain or a
// plain-HTTP response cannot plant a cookie of the same name, which the
// browser would send before the owner's (a longer Path goes first) and
// which would hide the owner's token (a review). Give a name of your own
// the prefix too.
const DefaultDeviceCookie = "__Host-lockout_device"

// deviceWriter sets the device cookie on a successful login's response,
// just before its status is written: a cookie cannot follow the header.
type deviceWriter struct {
	http.ResponseWriter
	m       *Middleware
	r       *http.Request
	st      *requestState
	a       *lockout.Attempt
	decided bool
}

// decide adds the cookie when, as the status is written, the login
// succeeded: the handler called SetOutcome(r, true), or, without
// SetOutcome, a Config.Succeeded of the caller's says so (never the
// default status rule: see Config.DeviceCookie).
func (w *deviceWriter) decide(status int) {
	if w.decided || status < 200 {
		return
	}
	w.decided = true
	switch w.st.outcome.Load() {
	case outcomeFailure:
		return
	case 0:
		if w.m.cfg.Succeeded == nil || !w.m.cfg.Succeeded(w.r, status, w.Header()) {
			return
		}
	}
	token, expires, err := w.m.p.DeviceToken(w.st.subject.Username, w.a.Device())
	if err != nil {
		return // no cookie: the client stays untrusted
	}
	http.SetCookie(w.ResponseWriter, &http.Cookie{
		Name:     w.m.deviceCookie(),
		Value:    token,
		Path:     "/",
		Expires:  expires,
		MaxAge:   int(time.Until(expires) / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

func (w *deviceWriter) WriteHeader(code int) {
	w.decide(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *deviceWriter) Write(b []byte) (int, error) {
	w.decide(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// FlushError flushes the response, as http.ResponseController.Flush does.
func (w *deviceWriter) FlushError() error {
	w.decide(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (w *deviceWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *Middleware) deviceCookie() string {
	if m.cfg.DeviceCookie != "" {
		return m.cfg.DeviceCookie
	}
	return DefaultDeviceCookie
}
