package lockouthttp

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
)

// DefaultMaxLocks is how many locks the operator handler lists when
// OperatorConfig.MaxLocks is zero.
const DefaultMaxLocks = 1000

// maxOperatorBody bounds the bodies of the operator's POST requests.
const maxOperatorBody = 64 << 10

// OperatorConfig configures an Operator.
type OperatorConfig struct {
	// Authorize reports whether a request may use the operator handler,
	// e.g. by checking a session or Basic credentials in constant time,
	// and names the operator who makes it. The name goes, with the
	// interface ("http" for the page, "api" for the JSON API), into the
	// events, the log lines and the journal records of every unlock and
	// reset the request makes (lockout.WithOperator): give one that
	// identifies a person, such as a user name. A nil Authorize refuses
	// every request.
	Authorize func(r *http.Request) (operator string, ok bool)

	// Unauthorized answers the requests Authorize refuses. Default: 403
	// Forbidden. Set it to ask for credentials, e.g. with a 401 and a
	// WWW-Authenticate header.
	Unauthorized http.Handler

	// CrossOrigin rejects cross-origin POST requests (CSRF). Default
	// http.NewCrossOriginProtection(): a POST is refused when the browser
	// says it comes from another site (Sec-Fetch-Site), or its Origin does
	// not match the Host header; requests from non-browser clients, which
	// send neither header, are allowed. Pass your own to trust other
	// origins, e.g. behind a proxy that rewrites Host.
	CrossOrigin *http.CrossOriginProtection

	// MaxLocks bounds how many locks one listing returns. Default
	// DefaultMaxLocks.
	MaxLocks int
}

// An Operator is an http.Handler for operators: a subject's status, unlock,
// reset, the list of locked keys, and the recent attempts the policy's
// journal keeps, as a JSON API and one small HTML page.
// Make one with NewOperator and mount it under any prefix with
// http.StripPrefix; it only uses relative links:
//
//	mux.Handle("/admin/lockout/", http.StripPrefix("/admin/lockout", op))
//
// Routes, relative to the mount point:
//
//	GET  ./                   the HTML page (?username=&ip= shows a status;
//	                          attempts_username=, attempts_ip=, outcome=
//	                          and before= page through recent attempts)
//	POST ./unlock, ./reset, ./unlock-key
//	                          the page's forms; they answer 303 back to it
//	GET  api/status?username=&ip=
//	                          SubjectStatus
//	POST api/unlock           lift the locks of the rules that apply to
//	                          the subject (username, ip) and clear their
//	                          counters; the lockout history stays
//	POST api/reset            the same, and forget the lockout history
//	GET  api/locks[?limit=n]  LockList; 501 when the store cannot list
//	POST api/unlock-key       lift one lock by its key, as listed
//	GET  api/attempts?username=&ip=&outcome=&before=&limit=
//	                          AttemptList: the journal's records, newest
//	                          first, filtered (every parameter optional);
//	                          next is the cursor of the older page, for
//	                          before=; limit defaults to 50, at most 1000;
//	                          501 no_journal without lockout.Config.Journal
//
// POST parameters come as a form (application/x-www-form-urlencoded, or
// the query string) or as a JSON object: {"username": "...", "ip": "..."}
// or {"key": "..."}. A subject's rules are those that apply to the fields
// given: unlocking {"username": "alice"} lifts her username lock, not the
// lock of alice at one IP (give both). JSON errors look like
// {"error": "bad_request", "message": "..."}.
//
// Every request must pass OperatorConfig.Authorize (403 otherwise, and
// always when it is nil), and every POST the CrossOrigin check (403). All
// responses are marked not to be cached, and the page may not be framed.
// Unlocks and resets run with lockout.WithOperator: the operator the
// authorizer named, via "http" (the page) or "api". With a journal
// (lockout.Config.Journal), they show among the recent attempts; records
// are written in the background, so they appear there within moments, not
// necessarily in the answer to the action itself.
//
// A subject's status shows, for each lock, when it started and the attempt
// that caused it (locked_since and locked_by in JSON): the newest lockout
// record of that rule key in the journal, when it is still there.
//
// API statuses: 200; 400 bad_request (no subject, an address or username
// that cannot be keyed, a malformed body, a limit that is not a positive
// integer, an unknown outcome, a cursor the journal does not know); 403
// forbidden or cross_origin; 404 not_found; 405 method_not_allowed; 501
// unsupported (the store cannot list locks) or no_journal (the policy keeps
// no journal); 503 backend (the store failed). An unlock-key of a key that
// is not a lock key of the policy is 400 bad_request, and touches nothing:
// api/locks and api/unlock-key see only the policy's own keys, never those
// of another policy sharing the store, even one whose prefix begins with
// this one's ("p" and "p:l").
type Operator struct {
	p   *lockout.Policy
	cfg OperatorConfig
}

// NewOperator returns the operator handler of p. It panics if p is nil.
func NewOperator(p *lockout.Policy, cfg OperatorConfig) *Operator {
	if p == nil {
		panic("lockouthttp: NewOperator with a nil policy")
	}
	if cfg.CrossOrigin == nil {
		cfg.CrossOrigin = http.NewCrossOriginProtection()
	}
	if cfg.MaxLocks <= 0 {
		cfg.MaxLocks = DefaultMaxLocks
	}
	return &Operator{p: p, cfg: cfg}
}

// SubjectStatus is the answer of GET api/status.
type SubjectStatus struct {
	Username string `json:"username,omitempty"`
	IP       string `json:"ip,omitempty"`
	// Rules lists the rules that apply to the subject.
	Rules []RuleState `json:"rules"`
}

// RuleState is the state of one rule key, in JSON. Durations are whole
// seconds, rounded up; -1 means until unlocked (or, for a window, never).
type RuleState struct {
	Rule            string `json:"rule"`
	Key             string `json:"key"`
	Attempts        int64  `json:"attempts"`
	Limit           int    `json:"limit"`
	WindowRemaining int64  `json:"window_remaining_seconds"`
	Locked          bool   `json:"locked"`
	LockRemaining   int64  `json:"lock_remaining_seconds"`
	Lockouts        int64  `json:"lockouts"`
	// LockedSince and LockedBy describe a lock's start: when, and the
	// journal's lockout record (the attempt that caused it: its IP, user
	// agent, and the username for a rule without one). Absent without a
	// journal, or when its record is gone.
	LockedSince *time.Time     `json:"locked_since,omitempty"`
	LockedBy    *AttemptRecord `json:"locked_by,omitempty"`
}

// LockList is the answer of GET api/locks.
type LockList struct {
	Locks []LockState `json:"locks"`
	// Truncated is set when there were more locks than the limit.
	Truncated bool `json:"truncated"`
}

// LockState is one locked key, in JSON.
type LockState struct {
	// Key is the store's key, for api/unlock-key.
	Key  string `json:"key"`
	Rule string `json:"rule"`
	// Subject is the rule key, e.g. "u=alice,ip=192.0.2.1".
	Subject string `json:"subject"`
	// Remaining is in whole seconds, rounded up; -1 until unlocked.
	Remaining int64 `json:"remaining_seconds"`
}

func seconds(d time.Duration) int64 {
	if d == lockout.Forever {
		return -1
	}
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// ServeHTTP implements http.Handler.
func (o *Operator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "same-origin")
	var operator string
	ok := false
	if o.cfg.Authorize != nil {
		operator, ok = o.cfg.Authorize(r)
	}
	if !ok {
		if o.cfg.Unauthorized != nil {
			o.cfg.Unauthorized.ServeHTTP(w, r)
			return
		}
		apiError(w, http.StatusForbidden, "forbidden", "not authorized")
		return
	}
	if err := o.cfg.CrossOrigin.Check(r); err != nil {
		apiError(w, http.StatusForbidden, "cross_origin", err.Error())
		return
	}
	route := strings.TrimPrefix(r.URL.Path, "/")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch route {
	case "":
		if !get {
			methodNotAllowed(w, "GET, HEAD")
		} else if loc, ok := slashRedirect(r); ok {
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusFound)
		} else {
			o.page(w, r, operator)
		}
	case "unlock", "reset", "unlock-key":
		if !post {
			methodNotAllowed(w, "POST")
			return
		}
		o.formAction(w, r.WithContext(lockout.WithOperator(r.Context(), operator, "http")), route)
	case "api/status":
		if !get {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		o.apiStatus(w, r)
	case "api/locks":
		if !get {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		o.apiLocks(w, r)
	case "api/attempts":
		if !get {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		o.apiAttempts(w, r)
	case "api/unlock", "api/reset", "api/unlock-key":
		if !post {
			methodNotAllowed(w, "POST")
			return
		}
		o.apiAction(w, r.WithContext(lockout.WithOperator(r.Context(), operator, "api")), strings.TrimPrefix(route, "api/"))
	default:
		apiError(w, http.StatusNotFound, "not_found", "no such operator endpoint")
	}
}

// slashRedirect returns where to send a request for the mount point
// without its trailing slash ("/admin/lockout" stripped to ""), so that
// the page's relative links resolve under it.
func slashRedirect(r *http.Request) (string, bool) {
	if r.URL.Path != "" {
		return "", false
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || u.Path == "" || strings.HasSuffix(u.Path, "/") {
		return "", false
	}
	loc := path.Base(u.EscapedPath()) + "/"
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	return loc, true
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
}

type apiErr struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiErr{code, msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// params reads username, ip and key from a JSON body or a form.
func params(w http.ResponseWriter, r *http.Request) (username, ip, key string, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxOperatorBody)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var v struct{ Username, IP, Key string }
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&v); err != nil {
			return "", "", "", err
		}
		return v.Username, v.IP, v.Key, nil
	}
	if err := r.ParseForm(); err != nil {
		return "", "", "", err
	}
	return r.Form.Get("username"), r.Form.Get("ip"), r.Form.Get("key"), nil
}

func (o *Operator) status(ctx context.Context, username, ip string) (SubjectStatus, error) {
	st, err := o.p.Status(ctx, lockout.Subject{Username: username, IP: ip})
	if err != nil {
		return SubjectStatus{}, err
	}
	out := SubjectStatus{Username: username, IP: ip, Rules: make([]RuleState, len(st))}
	for i, s := range st {
		out.Rules[i] = RuleState{
			Rule:            s.Rule,
			Key:             s.Key,
			Attempts:        s.Attempts,
			Limit:           s.Limit,
			WindowRemaining: seconds(s.WindowRemaining),
			Locked:          s.Locked,
			Lockouts:        s.Lockouts,
		}
		if s.Locked {
			out.Rules[i].LockRemaining = seconds(s.LockRemaining)
			if rec := o.lockOrigin(ctx, username, ip, s); rec != nil {
				out.Rules[i].LockedSince = &rec.Time
				out.Rules[i].LockedBy = rec
			}
		}
	}
	return out, nil
}

func (o *Operator) locks(ctx context.Context, limit int) (LockList, error) {
	list := LockList{Locks: []LockState{}}
	for lk, err := range o.p.Locks(ctx) {
		if err != nil {
			return list, err
		}
		if len(list.Locks) == limit {
			list.Truncated = true
			break
		}
		list.Locks = append(list.Locks, LockState{Key: lk.Key, Rule: lk.Rule, Subject: lk.SubjectString(), Remaining: seconds(lk.Remaining)})
	}
	return list, nil
}

// do runs an action: "unlock", "reset" or "unlock-key".
func (o *Operator) do(ctx context.Context, action, username, ip, key string) error {
	switch action {
	case "unlock-key":
		if key == "" {
			return errMissing
		}
		return o.p.UnlockKey(ctx, key)
	case "unlock", "reset":
		if username == "" && ip == "" {
			return errMissing
		}
		s := lockout.Subject{Username: username, IP: ip}
		if action == "reset" {
			return o.p.Reset(ctx, s)
		}
		return o.p.Unlock(ctx, s)
	}
	return errors.New("lockouthttp: unknown action " + action)
}

var errMissing = errors.New("lockouthttp: no subject given")

func (o *Operator) apiStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	username, ip := q.Get("username"), q.Get("ip")
	if username == "" && ip == "" {
		apiError(w, http.StatusBadRequest, "bad_request", "give a username, an ip, or both")
		return
	}
	st, err := o.status(r.Context(), username, ip)
	if err != nil {
		o.actionError(w, "status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (o *Operator) apiLocks(w http.ResponseWriter, r *http.Request) {
	limit := o.cfg.MaxLocks
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			apiError(w, http.StatusBadRequest, "bad_request", "limit: want a positive integer")
			return
		}
		limit = min(n, limit)
	}
	list, err := o.locks(r.Context(), limit)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		apiError(w, http.StatusNotImplemented, "unsupported", "this store cannot list locks")
	case err != nil:
		apiError(w, http.StatusServiceUnavailable, "backend", err.Error())
	default:
		writeJSON(w, http.StatusOK, list)
	}
}

func (o *Operator) apiAction(w http.ResponseWriter, r *http.Request, action string) {
	username, ip, key, err := params(w, r)
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err := o.do(r.Context(), action, username, ip, key); err != nil {
		o.actionError(w, action, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

// actionError answers a failed status or action.
func (o *Operator) actionError(w http.ResponseWriter, action string, err error) {
	switch {
	case errors.Is(err, errMissing):
		apiError(w, http.StatusBadRequest, "bad_request", "give a username, an ip, or both (or a key)")
	case errors.Is(err, lockout.ErrInvalidSubject), errors.Is(err, lockout.ErrNotLockKey):
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		apiError(w, http.StatusServiceUnavailable, "backend", err.Error())
	}
}

// Notices and problems the page shows after a form action, by code: the
// page never displays text taken from its URL.
var notices = map[string]string{
	"unlock":     "Unlocked: locks lifted and counters cleared.",
	"reset":      "Reset: counters, locks and lockout history cleared.",
	"unlock-key": "Lock lifted.",
}

var problems = map[string]string{
	"missing": "Give a username, an IP address, or both.",
	"invalid": "That username or IP address cannot be checked.",
	"failed":  "The action failed (see the server's log); nothing may have changed.",
}

func (o *Operator) formAction(w http.ResponseWriter, r *http.Request, action string) {
	username, ip, key, err := params(w, r)
	q := url.Values{}
	if username != "" {
		q.Set("username", username)
	}
	if ip != "" {
		q.Set("ip", ip)
	}
	if err == nil {
		err = o.do(r.Context(), action, username, ip, key)
	}
	switch {
	case err == nil:
		q.Set("done", action)
	case errors.Is(err, errMissing):
		q.Set("problem", "missing")
	case errors.Is(err, lockout.ErrInvalidSubject):
		q.Set("problem", "invalid")
	default:
		q.Set("problem", "failed")
	}
	w.Header().Set("Location", "./?"+q.Encode())
	w.WriteHeader(http.StatusSeeOther)
}

type pageData struct {
	Operator         string
	Username, IP     string
	Notice, Problem  string
	Queried          bool
	Status           SubjectStatus
	StatusErr        string
	Locks            LockList
	LocksErr         string
	LocksUnsupported bool
	// Journal is set when the policy keeps a journal: then Attempts is
	// the recent attempts section, and SubjectAttempts the subject's.
	Journal            bool
	Attempts           attemptsView
	SubjectAttempts    []AttemptRecord
	SubjectAttemptsErr string
	SubjectAttemptsAll string
}

func (o *Operator) page(w http.ResponseWriter, r *http.Request, operator string) {
	q := r.URL.Query()
	d := pageData{
		Operator: operator,
		Username: q.Get("username"),
		IP:       q.Get("ip"),
		Notice:   notices[q.Get("done")],
		Problem:  problems[q.Get("problem")],
	}
	if d.Username != "" || d.IP != "" {
		d.Queried = true
		st, err := o.status(r.Context(), d.Username, d.IP)
		switch {
		case errors.Is(err, lockout.ErrInvalidSubject):
			d.StatusErr = "That username or IP address cannot be checked: " + err.Error()
		case err != nil:
			d.StatusErr = "The store failed: " + err.Error()
		}
		d.Status = st
	}
	ctx := r.Context()
	d.Attempts, d.Journal = o.pageAttemptsView(ctx, q)
	if d.Journal && d.Queried && d.StatusErr == "" {
		list, err := o.attempts(ctx, lockout.AttemptQuery{Username: d.Username, IP: d.IP, Limit: subjectAttempts})
		if err != nil {
			d.SubjectAttemptsErr = "The journal's store failed: " + err.Error()
		}
		d.SubjectAttempts = list.Records
		if list.Next != "" {
			d.SubjectAttemptsAll = subjectAttemptsLink(d.Username, d.IP)
		}
	}
	list, err := o.locks(ctx, o.cfg.MaxLocks)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		d.LocksUnsupported = true
	case err != nil:
		d.LocksErr = "The store failed: " + err.Error()
	}
	d.Locks = list
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = operatorPage.Execute(w, d)
}

func humanDuration(secs int64) string {
	switch {
	case secs < 0:
		return "until unlocked"
	case secs == 0:
		return "–"
	}
	return (time.Duration(secs) * time.Second).String()
}

// timeFormat is how the page shows a record's time, in UTC.
const timeFormat = "2006-01-02 15:04:05"

// ago says how long ago t was, roughly.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
}

var operatorPage = template.Must(template.New("operator").Funcs(template.FuncMap{
	"secs": humanDuration,
	"window": func(secs int64) string {
		if secs < 0 {
			return "never ends"
		}
		return humanDuration(secs)
	},
	"when": func(t time.Time) string { return t.UTC().Format(timeFormat) },
	"ago":  func(t time.Time) string { return ago(time.Now(), t) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lockout</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
.note{padding:.5em 1em;background:#eef}.problem{background:#fee}form.inline{display:inline}
.who{float:right;color:#555;margin-top:-3.2em}.dim{color:#777;font-size:90%}
table.attempts{font-size:13px}table.attempts td.ua{max-width:14em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.o-success{color:#060}.o-failure{color:#a30}.o-refused{color:#a00}.o-lockout{background:#fdd;font-weight:bold}
.o-unlock,.o-reset{background:#dfd;font-weight:bold}
.pages a{margin-right:1em}.nw{white-space:nowrap}
</style></head>
<body>
<h1>Lockout</h1>
{{with .Operator}}<p class="who">Operator: <b>{{.}}</b></p>{{end}}
{{with .Notice}}<p class="note">{{.}}</p>{{end}}
{{with .Problem}}<p class="note problem">{{.}}</p>{{end}}
<h2>Subject</h2>
<form method="get" action="./">
<label>Username <input name="username" value="{{.Username}}"></label>
<label>IP address <input name="ip" value="{{.IP}}"></label>
<button>Show status</button>
</form>
{{if .Queried}}{{if .StatusErr}}<p class="note problem">{{.StatusErr}}</p>{{else}}
<table>
<tr><th>Rule</th><th>Key</th><th>Attempts</th><th>Window left</th><th>Locked</th><th>Lockouts</th>{{if .Journal}}<th>Locked since (UTC)</th><th>Caused by</th>{{end}}</tr>
{{range .Status.Rules}}<tr><td>{{.Rule}}</td><td><code>{{.Key}}</code></td><td>{{.Attempts}} / {{.Limit}}</td><td>{{window .WindowRemaining}}</td><td>{{if .Locked}}{{secs .LockRemaining}}{{else}}no{{end}}</td><td>{{.Lockouts}}</td>
{{- if $.Journal}}{{if .Locked}}{{with .LockedBy}}<td class="nw">{{when .Time}}<br><span class="dim">{{ago .Time}}</span></td><td>{{with .Username}}{{.}} {{end}}from {{with .IP}}{{.}}{{else}}?{{end}}{{with .UserAgent}}<br><span class="dim">{{.}}</span>{{end}}</td>{{else}}<td colspan="2" class="dim">not in the journal</td>{{end}}{{else}}<td></td><td></td>{{end}}{{end}}</tr>
{{else}}<tr><td colspan="{{if .Journal}}8{{else}}6{{end}}">No rule applies to this subject.</td></tr>
{{end}}</table>
<form class="inline" method="post" action="unlock"><input type="hidden" name="username" value="{{.Username}}"><input type="hidden" name="ip" value="{{.IP}}"><button>Unlock</button></form>
<form class="inline" method="post" action="reset"><input type="hidden" name="username" value="{{.Username}}"><input type="hidden" name="ip" value="{{.IP}}"><button>Reset, forgetting the lockout history</button></form>
{{if .Journal}}<h3>Recent attempts of this subject</h3>
{{if .SubjectAttemptsErr}}<p class="note problem">{{.SubjectAttemptsErr}}</p>{{else}}{{template "attempts" .SubjectAttempts}}
{{with .SubjectAttemptsAll}}<p class="pages"><a href="{{.}}">All attempts of this subject</a></p>{{end}}{{end}}
{{end}}{{end}}{{end}}
<h2>Locked keys</h2>
{{if .LocksUnsupported}}<p class="note">This store cannot list locks. Look a subject up above instead.</p>
{{else if .LocksErr}}<p class="note problem">{{.LocksErr}}</p>
{{else}}<table>
<tr><th>Rule</th><th>Subject</th><th>Remaining</th><th></th></tr>
{{range .Locks.Locks}}<tr><td>{{.Rule}}</td><td><code>{{.Subject}}</code></td><td>{{secs .Remaining}}</td><td><form method="post" action="unlock-key"><input type="hidden" name="key" value="{{.Key}}"><button>Unlock</button></form></td></tr>
{{else}}<tr><td colspan="4">No key is locked.</td></tr>
{{end}}</table>
{{if .Locks.Truncated}}<p>Showing the first {{len .Locks.Locks}} locks only.</p>{{end}}
{{end}}
<h2 id="attempts">Recent attempts</h2>
{{if not .Journal}}<p class="note">This policy keeps no journal of attempts (lockout.Config.Journal).</p>
{{else}}{{with .Attempts}}<form method="get" action="./#attempts">
{{with $.Username}}<input type="hidden" name="username" value="{{.}}">{{end}}{{with $.IP}}<input type="hidden" name="ip" value="{{.}}">{{end}}
<label>Username <input name="attempts_username" value="{{.User}}"></label>
<label>IP address <input name="attempts_ip" value="{{.IP}}"></label>
<label>Outcome <select name="outcome"><option value="">any</option>{{$sel := .Outcome}}{{range .Outcomes}}<option{{if eq . $sel}} selected{{end}}>{{.}}</option>{{end}}</select></label>
<button>Filter</button>{{with .Clear}} <a href="{{.}}">Clear</a>{{end}}
</form>
{{if .Err}}<p class="note problem">{{.Err}}</p>{{else}}{{template "attempts" .Records}}
{{if or .Newest .Older}}<p class="pages">{{with .Newest}}<a href="{{.}}">Newest</a>{{end}}{{with .Older}}<a href="{{.}}">Older</a>{{end}}</p>{{end}}
{{end}}{{end}}{{end}}
</body></html>
{{define "attempts"}}<table class="attempts">
<tr><th>Time (UTC)</th><th>Outcome</th><th>Reason</th><th>Rule</th><th>Username</th><th>IP</th><th>User agent</th><th>Fallback</th><th>Operator</th></tr>
{{range .}}<tr><td class="nw">{{when .Time}}<br><span class="dim">{{ago .Time}}</span></td><td class="o-{{.Outcome}}">{{.Outcome}}</td><td class="nw">{{if eq .Outcome "lockout"}}locked {{if lt .LockoutSeconds 0}}until unlocked{{else}}for {{secs .LockoutSeconds}}{{end}}{{else}}{{.Reason}}{{end}}</td><td>{{.Rule}}{{with .Key}}<br><code class="dim">{{.}}</code>{{end}}</td><td>{{.Username}}</td><td>{{.IP}}</td><td class="ua" title="{{.UserAgent}}">{{.UserAgent}}</td><td>{{if .Fallback}}yes{{end}}</td><td class="nw">{{.Operator}}{{with .Via}} <span class="dim">({{.}})</span>{{end}}</td></tr>
{{else}}<tr><td colspan="9">No attempts recorded.</td></tr>
{{end}}</table>{{end}}
`))
