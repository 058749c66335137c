package lockouthttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
)

// RetryAfterSeconds returns the whole seconds a refused client should wait,
// rounded up, for a Retry-After header; 0 when the refusal names no time
// (denylisted, unavailable, a Forever lock).
func RetryAfterSeconds(err *lockout.RefusedError) int64 {
	if err.Forever || err.RetryAfter <= 0 {
		return 0
	}
	return int64((err.RetryAfter + time.Second - 1) / time.Second)
}

// refusalStatus is the status DefaultRefused answers for a reason.
func refusalStatus(r lockout.Reason) int {
	switch r {
	case lockout.ReasonDenylisted:
		return http.StatusForbidden
	case lockout.ReasonUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusTooManyRequests
}

// reasonCode is the machine-readable reason in JSON bodies.
func reasonCode(r lockout.Reason) string {
	if r == lockout.ReasonUnavailable {
		return "unavailable"
	}
	return r.String()
}

// DefaultRefused answers a refused attempt:
//
//	reason       status                     Retry-After
//	locked       429 Too Many Requests      seconds left, rounded up; none when Forever
//	capacity     429 Too Many Requests      seconds until the window ends, rounded up
//	denylisted   403 Forbidden              none
//	unavailable  503 Service Unavailable    none (the policy fails closed)
//
// with a small body, HTML when the Accept header prefers text/html to
// application/json (PrefersHTML), JSON otherwise:
//
//	{"error":"login_refused","reason":"locked","message":"...","retry_after":60}
//
// where retry_after is omitted when no Retry-After is sent, and message is
// RefusalMessage's. The HTML page says the same, when to try again (in
// how long, and at what time, UTC), and links back to the login form: the
// request's path (Config.FormURL names another). The response is not
// cached. Write your own Config.Refused to change any of it.
func DefaultRefused(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError) {
	refuse(w, r, err, "")
}

// refusedLinking is DefaultRefused with the HTML page's link back to
// formURL ("" for the request's path).
func refusedLinking(formURL string) func(http.ResponseWriter, *http.Request, *lockout.RefusedError) {
	return func(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError) {
		refuse(w, r, err, formURL)
	}
}

func refuse(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError, formURL string) {
	secs := RetryAfterSeconds(err)
	title, msg := RefusalMessage(err)
	h := w.Header()
	if secs > 0 {
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if formURL == "" {
		formURL = r.URL.Path
		// Never a link to another host ("//evil.example/login").
		if !strings.HasPrefix(formURL, "/") || strings.HasPrefix(formURL, "//") || strings.HasPrefix(formURL, "/\\") {
			formURL = "/"
		}
	}
	m := message{
		Error:      "login_refused",
		Reason:     reasonCode(err.Reason),
		Message:    msg,
		RetryAfter: secs,
		title:      title,
		back:       formURL,
	}
	if secs > 0 {
		m.retryAt = retryAt(time.Now(), secs)
	}
	writeMessage(w, r, refusalStatus(err.Reason), m)
}

// RefusalMessage returns a title and a sentence for a refused login, for
// people: what happened (too many failed attempts, a deny list, the store
// being down) and when to try again, from err.RetryAfter ("Try again in 4
// minutes.") or "until an administrator unlocks it" for a Forever lock.
// It does not name the rule that refused. DefaultRefused shows it; a login
// page of your own can too, from Config.Refused.
func RefusalMessage(err *lockout.RefusedError) (title, message string) {
	secs := RetryAfterSeconds(err)
	switch {
	case err.Reason == lockout.ReasonDenylisted:
		return "Login not allowed", "Login is not allowed from here."
	case err.Reason == lockout.ReasonUnavailable:
		return "Login unavailable", "Login is temporarily unavailable. Try again later."
	case err.Forever:
		return "Login locked", "Too many failed login attempts: login is locked until an administrator unlocks it."
	case err.Reason == lockout.ReasonCapacity && secs > 0:
		return "Too many attempts", fmt.Sprintf("Too many login attempts at once. Try again in %s.", humanSeconds(secs))
	case err.Reason == lockout.ReasonCapacity:
		return "Too many attempts", "Too many login attempts at once. Try again later."
	case secs > 0:
		return "Login locked", fmt.Sprintf("Too many failed login attempts. Try again in %s.", humanSeconds(secs))
	}
	return "Login locked", "Too many failed login attempts. Try again later."
}

// RetryAt returns when the client refused by err may try again, as
// DefaultRefused's page says it: in UTC, to the second within two
// minutes, else to the minute, rounded up ("14:05 UTC"); "" when err
// gives no time (RetryAfterSeconds is 0). A login page of your own shows
// it beside RefusalMessage.
func RetryAt(now time.Time, err *lockout.RefusedError) string {
	secs := RetryAfterSeconds(err)
	if secs <= 0 {
		return ""
	}
	return retryAt(now, secs)
}

// retryAt formats when a refused client may try again, secs after now.
func retryAt(now time.Time, secs int64) string {
	t := now.UTC().Add(time.Duration(secs) * time.Second)
	if secs < 120 {
		return t.Truncate(time.Second).Add(time.Second).Format("15:04:05") + " UTC"
	}
	if r := t.Truncate(time.Minute); r.Before(t) {
		t = r.Add(time.Minute)
	}
	return t.Format("15:04") + " UTC"
}

// DefaultError answers a request the middleware cannot check: 413 for
// ErrBodyTooLarge, 400 for an error wrapping lockout.ErrInvalidSubject
// (an address or username that cannot be keyed, a malformed body), 403 for
// ErrCrossOrigin, 500 for anything else. The body, JSON or HTML as for
// DefaultRefused, does not repeat the error, which may hold the client's
// input.
func DefaultError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrCrossOrigin):
		writeMessage(w, r, http.StatusForbidden, message{
			Error: "cross_origin", Message: "Logins from another site's pages are refused.", title: "Forbidden",
		})
	case errors.Is(err, ErrBodyTooLarge):
		writeMessage(w, r, http.StatusRequestEntityTooLarge, message{
			Error: "body_too_large", Message: "The request body is too large.", title: "Request too large",
		})
	case errors.Is(err, lockout.ErrInvalidSubject):
		writeMessage(w, r, http.StatusBadRequest, message{
			Error: "bad_request", Message: "The request does not name a client address or username that can be checked.", title: "Bad request",
		})
	default:
		writeMessage(w, r, http.StatusInternalServerError, message{
			Error: "internal_error", Message: "The login could not be checked.", title: "Internal error",
		})
	}
}

// message is the body DefaultRefused and DefaultError write.
type message struct {
	Error      string `json:"error"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message"`
	RetryAfter int64  `json:"retry_after,omitempty"`
	title      string
	// retryAt is when to try again, for the HTML page; back is the link
	// to the login form.
	retryAt, back string
}

var messagePage = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:4em auto;max-width:32em;padding:0 1em;color:#222}
.box{border:1px solid #e3b4b4;background:#fff6f6;border-radius:6px;padding:.2em 1.4em 1em}
h1{font-size:1.5em;color:#8a1c1c}.when{color:#555}
</style></head>
<body><div class="box">
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{with .RetryAt}}<p class="when">You can try again at <b>{{.}}</b>.</p>{{end}}
{{with .Back}}<p><a href="{{.}}">Back to the login form</a></p>{{end}}
</div></body></html>
`))

func writeMessage(w http.ResponseWriter, r *http.Request, status int, m message) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept")
	if PrefersHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = messagePage.Execute(w, struct{ Title, Message, RetryAt, Back string }{m.title, m.Message, m.retryAt, m.back})
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(m)
}

func humanSeconds(s int64) string {
	if s == 1 {
		return "1 second"
	}
	if s < 120 {
		return fmt.Sprintf("%d seconds", s)
	}
	m := (s + 59) / 60
	if m < 120 {
		return fmt.Sprintf("%d minutes", m)
	}
	return fmt.Sprintf("%d hours", (m+59)/60)
}

// PrefersHTML reports whether r's Accept header ranks text/html above
// application/json, by q-values and then by specificity. With no Accept
// header, or a tie, it reports false: JSON.
func PrefersHTML(r *http.Request) bool {
	accept := strings.Join(r.Header.Values("Accept"), ",")
	if accept == "" {
		return false
	}
	return quality(accept, "text", "html") > quality(accept, "application", "json")
}

// quality returns the q-value accept gives to typ/sub: that of the most
// specific media range matching it, or 0.
func quality(accept, typ, sub string) float64 {
	q, spec := 0.0, 0
	for part := range strings.SplitSeq(accept, ",") {
		params := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(params[0]))
		t, s, ok := strings.Cut(mt, "/")
		if !ok {
			continue
		}
		var sp int
		switch {
		case t == typ && s == sub:
			sp = 3
		case t == typ && s == "*":
			sp = 2
		case t == "*" && s == "*":
			sp = 1
		default:
			continue
		}
		pq := 1.0
		for _, p := range params[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || !(f >= 0 && f <= 1) {
					f = 0
				}
				pq = f
			}
		}
		if sp > spec {
			q, spec = pq, sp
		}
	}
	return q
}
