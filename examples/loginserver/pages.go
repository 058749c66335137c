package main

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

// site is what every page of the example says besides its message: the
// demo users, and the policy's limits in words, so that a visitor knows
// what to expect (the address lock above all, which refuses every user
// from the visitor's address).
type site struct {
	limits string
}

// page returns the data of a page of s.
func (s site) page() pageData { return pageData{Users: demoUsers, Limits: s.limits} }

// loginPage serves the login form.
func (s site) loginPage(w http.ResponseWriter, r *http.Request) {
	writePage(w, http.StatusOK, s.page())
}

// reply answers a login request: HTML for a browser (an Accept header that
// prefers text/html, as lockouthttp's refusals do), JSON otherwise. A
// status below 400 is a welcome; code names the error of any other.
func (s site) reply(w http.ResponseWriter, r *http.Request, status int, code, message, username string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept")
	if lockouthttp.PrefersHTML(r) {
		d := s.page()
		d.Message, d.Username = message, username
		d.Welcome = status < 400
		writePage(w, status, d)
		return
	}
	var body any
	if status < 400 {
		body = struct {
			OK       bool   `json:"ok"`
			Username string `json:"username"`
			Message  string `json:"message"`
		}{true, username, message}
	} else {
		body = struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}{code, message}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// refused answers a refused login: a browser gets the login page again,
// with lockouthttp.RefusalMessage (what happened, when to try again) and
// the same status and Retry-After as lockouthttp.DefaultRefused; other
// clients get DefaultRefused's JSON.
func (s site) refused(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError) {
	if !lockouthttp.PrefersHTML(r) {
		lockouthttp.DefaultRefused(w, r, err)
		return
	}
	status := http.StatusTooManyRequests
	switch err.Reason {
	case lockout.ReasonDenylisted:
		status = http.StatusForbidden
	case lockout.ReasonUnavailable:
		status = http.StatusServiceUnavailable
	}
	d := s.page()
	d.Refused = true
	d.Title, d.Message = lockouthttp.RefusalMessage(err)
	if secs := lockouthttp.RetryAfterSeconds(err); secs > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	d.RetryAt = lockouthttp.RetryAt(time.Now(), err)
	if u, e := formUsername(r); e == nil {
		d.Username = u
	}
	w.Header().Add("Vary", "Accept")
	writePage(w, status, d)
}

type pageData struct {
	Users    []account
	Limits   string // the policy's limits, in words
	Username string
	Message  string
	Welcome  bool
	// Refused is set for a refused login: Title says what happened,
	// RetryAt when to try again.
	Refused        bool
	Title, RetryAt string
}

func writePage(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = page.Execute(w, d)
}

var page = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lockout example login</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;margin:3em auto;max-width:28em;padding:0 1em;color:#222}
label{display:block;margin:.6em 0}input{font:inherit;width:100%;box-sizing:border-box;padding:.3em}
.msg{padding:.5em 1em;background:#fee}.ok{background:#efe}small{color:#666}
.refused{border-left:4px solid #c33;margin:1em 0}
</style></head>
<body>
<h1>Log in</h1>
{{if .Refused}}<div class="msg refused" role="alert"><b>{{.Title}}</b><br>{{.Message}}{{with .RetryAt}}<br><small>You can try again at {{.}}.</small>{{end}}</div>
{{else}}{{with .Message}}<p class="msg{{if $.Welcome}} ok{{end}}">{{.}}</p>{{end}}{{end}}
{{if .Welcome}}<p>A real application would start a session here. <a href="/">Log in again</a>.</p>{{else}}
<form method="post" action="/login">
<label>Username <input name="username" value="{{.Username}}" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Log in</button>
</form>{{end}}
<p><small>Demo users: {{range $i, $u := .Users}}{{if $i}}, {{end}}{{$u.Name}} / {{$u.Password}}{{end}}.
Enter a wrong password a few times to see the lockout; the operator page is at <a href="/admin/">/admin/</a>.</small></p>
{{with .Limits}}<p><small>{{.}}</small></p>{{end}}
</body></html>
`))
