package lockouthttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
)

// DefaultMaxLocks is how many locks the operator handler lists when
// OperatorConfig.MaxLocks is zero.
const DefaultMaxLocks = 1000

// maxOperatorBody bounds the bodies of the operator's POST requests: a
// group's Unlock posts each of its keys when their values are hashed (up
// to OperatorConfig.MaxLocks of them, about 110 bytes each).
const maxOperatorBody = 1 << 20

// OperatorConfig configures an Operator.
type OperatorConfig struct {
	// Authorize reports whether a request may use the operator handler,
	// e.g. by checking a session or Basic credentials in constant time,
	// and names the operator who makes it. The name goes, with the
	// interface ("http" for the page, "api" for the JSON API), into the
	// events, the log lines and the journal records of every unlock and
	// reset the request makes (lockout.WithOperator): give one that
	// identifies a person, such as a user name. A nil Authorize refuses
	// every request, and so does one that allows a request without a name
	// (403).
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
//	GET  ./                   the HTML page (?username=&ip=&user_agent=&field.NAME=
//	                          shows a subject's status; attempts_username=,
//	                          attempts_ip=, outcome= and before= page
//	                          through recent attempts)
//	POST ./unlock, ./reset, ./unlock-key, ./reset-all
//	                          the page's forms; they answer 303 back to it.
//	                          reset and reset-all first answer a page that
//	                          asks to confirm, whose button posts again
//	                          with confirm=yes
//	GET  api/status?username=&ip=&user_agent=&field.NAME=
//	                          SubjectStatus
//	POST api/unlock           lift every lock whose key holds the subject
//	                          (Policy.Unlock) and clear those counters; the
//	                          lockout history stays
//	POST api/reset            the same, and forget the lockout history
//	POST api/reset-all        with confirm=yes: clear every counter, lock
//	                          and history of the policy (Policy.ResetAll)
//	GET  api/locks[?limit=n]  LockList; 501 when the store cannot list
//	POST api/unlock-key       lift locks by their keys, as listed
//	POST api/lock-device      username, device (its id) and duration
//	                          ("forever", or such as "24h"): lock one known
//	                          device (Policy.LockDevice); 501 no_devices
//	                          without lockout.Config.Devices
//	GET  api/attempts?username=&ip=&outcome=&before=&limit=
//	                          AttemptList: the journal's records, newest
//	                          first, filtered (every parameter optional);
//	                          next is the cursor of the older page, for
//	                          before=; limit defaults to 50, at most 1000;
//	                          501 no_journal without lockout.Config.Journal
//
// POST parameters come as a form (application/x-www-form-urlencoded, or
// the query string: username, ip, user_agent, field.NAME, key (repeated
// for several), confirm) or as a JSON object: {"username": "...", "ip":
// "...", "user_agent": "...", "fields": {"NAME": "..."}}, {"key": "..."}
// or {"keys": [...]}, {"confirm": "yes"}. An unlock reaches every lock
// whose key holds the fields given: {"username": "alice"} lifts her
// username lock and her username+IP locks from every address, where the
// store can list its keys. Where it cannot (memcached), it lifts the locks
// of the rules keyed by exactly the fields given and answers 501
// {"error": "partial", ...}: give every field of a rule (the username and
// the IP) to reach its lock. An unlock answers {"ok": true,
// "locks_lifted": N} (Policy.UnlockCount): 0 when no lock held the
// subject, which the page says too. JSON errors look like {"error":
// "bad_request", "message": "..."}.
//
// The page groups the locked keys by subject: every lock of one username
// (its username rule, its username+IP rules from every address, ...) in
// one group, keys without a username by IP address, then by their other
// fields; a group's Unlock lifts them all (Policy.Unlock of the group's
// subject). Keys whose value is a hash (values longer than 64 bytes, such
// as most user agents) are unlocked key by key.
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
// that cannot be keyed, a malformed body, a POST parameter or JSON member
// other than those above, a field.NAME that no rule is keyed by (a typo
// such as "ipp" or "field.tenat" would widen the action), a limit that is
// not a positive integer, an unknown outcome, a cursor the journal does
// not know) or
// confirm_required (a reset-all without confirm=yes); 403 forbidden or
// cross_origin; 404 not_found; 405 method_not_allowed; 501 unsupported
// (the store cannot list locks, or reset all), partial (an unlock or reset
// that could not reach every lock, see above) or no_journal (the policy
// keeps no journal); 503 backend (the store failed). An unlock-key of a key that
// is not a lock key of the policy (any one of several keys) is 400
// bad_request, and touches nothing, not even the other keys:
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
	// Username (canonical), IP, UserAgent and Fields are the subject
	// looked up, as the policy keys it.
	Username  string            `json:"username,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
	// Rules lists the rules that apply to the subject: those keyed by
	// fields it gives, every one.
	Rules []RuleState `json:"rules"`
	// AlsoLocked lists the other locks whose key holds the subject, those
	// of rules keyed by more fields than it gives (alice's username+IP
	// locks, for {"username": "alice"}), where the store can list them.
	// An unlock of the subject lifts them too.
	AlsoLocked []LockState `json:"also_locked,omitempty"`
	// AlsoLockedPartial reports that the store holds more locks than the
	// listing took (OperatorConfig.MaxLocks), so that AlsoLocked may miss
	// some: an attacker who locks many keys can push the subject's out of
	// the listing. An unlock of the subject lifts them all the same.
	AlsoLockedPartial bool `json:"also_locked_partial,omitempty"`
}

// RuleState is the state of one rule key, in JSON. Durations are whole
// seconds, rounded up; -1 means until unlocked (or, for a window, never).
type RuleState struct {
	// Rule and Key name the rule key: the rule, and its subject part
	// ("u=alice").
	Rule string `json:"rule"`
	Key  string `json:"key"`
	// Attempts counts the failures (and attempts in flight) of the
	// current window, against the rule's Limit.
	Attempts int64 `json:"attempts"`
	Limit    int   `json:"limit"`
	// WindowRemaining is the time until Attempts starts afresh.
	WindowRemaining int64 `json:"window_remaining_seconds"`
	// Locked is set while the key is locked, for LockRemaining.
	Locked        bool  `json:"locked"`
	LockRemaining int64 `json:"lock_remaining_seconds"`
	// Lockouts counts the key's lockouts within its history window.
	Lockouts int64 `json:"lockouts"`
	// LockedSince and LockedBy describe a lock's start: when, and the
	// journal's lockout record (the attempt that caused it: its IP, user
	// agent, and the username for a rule without one). Absent without a
	// journal; when its record is gone, or too far back to find in four
	// reads of the journal; and, with JournalConfig.HashKey, whose
	// records keep no rule key, for a key that the username and the
	// address do not make alone (an IPv6 prefix, a user agent, a custom
	// field): another key's lockout could not be told from it.
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

	fields []lockout.SubjectField
}

// StatusLink is the page's link to the status of the lock's subject,
// empty when a value is a hash.
func (l LockState) StatusLink() string {
	v := url.Values{}
	for _, f := range l.fields {
		if f.Hashed {
			return ""
		}
		p := tagParam(f.Tag)
		if p == paramIP {
			if pr, err := netip.ParsePrefix(f.Value); err == nil {
				v.Set(p, pr.Addr().String())
				continue
			}
		}
		v.Set(p, f.Value)
	}
	return "./?" + v.Encode()
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
	if operator == "" {
		// Every unlock and reset names who made it: an authorizer that
		// names no one is a mistake to fix, not an anonymous operator.
		apiError(w, http.StatusForbidden, "forbidden", "the authorizer named no operator (OperatorConfig.Authorize must return a name)")
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
	case "unlock", "reset", "unlock-key", "reset-all":
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
	case "api/lock-device":
		if !post {
			methodNotAllowed(w, "POST")
			return
		}
		o.apiLockDevice(w, r.WithContext(lockout.WithOperator(r.Context(), operator, "api")))
	case "api/unlock", "api/reset", "api/unlock-key", "api/reset-all":
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

// actionParams are the parameters of a POST.
type actionParams struct {
	subject lockout.Subject
	keys    []string
	confirm bool
}

// params reads a subject, keys and confirm from a JSON body or a form.
// exactMembers checks that the JSON object in body names each of its
// members once, spelled exactly as one of names.
func exactMembers(body []byte, names ...string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		if !slices.Contains(names, name) {
			return fmt.Errorf("unknown member %q: want %s", name, strings.Join(names, ", "))
		}
		if seen[name] {
			return fmt.Errorf("member %q given twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

func params(w http.ResponseWriter, r *http.Request) (actionParams, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxOperatorBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") {
		// ParseForm would skip the body, and act on the query string's
		// fields alone: a wider action than the one sent.
		return actionParams{}, fmt.Errorf("content type %s: send a form (application/x-www-form-urlencoded) or JSON", mt)
	}
	if mt == "application/json" {
		var v struct {
			Username  string            `json:"username"`
			IP        string            `json:"ip"`
			UserAgent string            `json:"user_agent"`
			Fields    map[string]string `json:"fields"`
			Key       string            `json:"key"`
			Keys      []string          `json:"keys"`
			Confirm   any               `json:"confirm"`
		}
		// A parameter the API does not know is a typo ("ipp"), and one
		// silently dropped widens the action (alice from every address):
		// refuse it, and anything after the object. encoding/json
		// matches names without case and keeps the last of a name given
		// twice ({"ip": "192.0.2.1", "IP": ""} would be alice from
		// every address): refuse those too.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return actionParams{}, err
		}
		if err := exactMembers(body, "username", "ip", "user_agent", "fields", "key", "keys", "confirm"); err != nil {
			return actionParams{}, err
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return actionParams{}, err
		}
		if _, err := dec.Token(); err != io.EOF {
			return actionParams{}, errors.New("want one JSON object, and nothing after it")
		}
		p := actionParams{
			subject: lockout.Subject{Username: v.Username, IP: v.IP, UserAgent: v.UserAgent, Fields: v.Fields},
			keys:    v.Keys,
			confirm: v.Confirm == true || v.Confirm == "yes",
		}
		if v.Key != "" {
			p.keys = append([]string{v.Key}, p.keys...)
		}
		return p, nil
	}
	if err := r.ParseForm(); err != nil {
		return actionParams{}, err
	}
	for k := range r.Form {
		switch {
		case k == paramUsername, k == paramIP, k == paramUserAgent, k == "key", k == "confirm":
		case strings.HasPrefix(k, paramField) && len(k) > len(paramField):
		default:
			return actionParams{}, fmt.Errorf("unknown parameter %q: want username, ip, user_agent, field.NAME, key or confirm", k)
		}
	}
	var keys []string
	for _, k := range r.Form["key"] {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return actionParams{subject: subjectFrom(r.Form), keys: keys, confirm: r.Form.Get("confirm") == "yes"}, nil
}

func (o *Operator) status(ctx context.Context, s lockout.Subject) (SubjectStatus, error) {
	st, err := o.p.Status(ctx, s)
	if err != nil {
		return SubjectStatus{}, err
	}
	out := SubjectStatus{Username: s.Username, IP: s.IP, UserAgent: s.UserAgent, Fields: s.Fields, Rules: make([]RuleState, len(st))}
	if s.Username != "" {
		// Canonical, as documented, and as the keys hold it: alsoLocked
		// matches the locks' keys against it ("ALICE" finds alice's).
		if out.Username, err = o.p.CanonicalUsername(s.Username); err != nil {
			return SubjectStatus{}, err
		}
	}
	for i, rs := range st {
		out.Rules[i] = RuleState{
			Rule:            rs.Rule,
			Key:             rs.Key,
			Attempts:        rs.Attempts,
			Limit:           rs.Limit,
			WindowRemaining: seconds(rs.WindowRemaining),
			Locked:          rs.Locked,
			Lockouts:        rs.Lockouts,
		}
		if rs.Locked {
			out.Rules[i].LockRemaining = seconds(rs.LockRemaining)
			if rec := o.lockOrigin(ctx, s.Username, s.IP, rs); rec != nil {
				out.Rules[i].LockedSince = &rec.Time
				out.Rules[i].LockedBy = rec
			}
		}
	}
	return out, nil
}

// alsoLocked returns the locks in list that hold the subject of st (as
// Policy.Unlock finds them: a key of a rule keyed by at least one of the
// fields the subject gives, with its values) but are not among st's rules'
// keys.
func alsoLocked(st SubjectStatus, list []LockState) []LockState {
	// The values the keys hold: as given, and the username canonical, as
	// a rule key shows it.
	want := map[string]string{}
	for p, vs := range subjectValues(lockout.Subject{Username: st.Username, UserAgent: st.UserAgent, Fields: st.Fields}) {
		want[paramTag(p)] = vs[0]
	}
	shown := map[string]bool{}
	for _, r := range st.Rules {
		shown[r.Rule+"\x00"+r.Key] = true
		for part := range strings.SplitSeq(r.Key, ",") {
			if tag, v, _ := strings.Cut(part, "="); tag == "u" {
				want["u"] = v
			}
		}
	}
	ip, ipErr := lockout.ParseIP(st.IP)
	var out []LockState
	for _, lk := range list {
		if shown[lk.Rule+"\x00"+lk.Subject] {
			continue
		}
		matched, ok := 0, true
		for _, f := range lk.fields {
			if f.Tag == "ip" {
				if st.IP != "" {
					matched++
					ok = ok && ipErr == nil && ipHolds(f.Value, ip)
				}
			} else if v, given := want[f.Tag]; given {
				matched++
				ok = ok && f.Value == v
			}
		}
		if ok && matched > 0 {
			out = append(out, lk)
		}
	}
	return out
}

// ipHolds reports whether a key's IP value (an address or a prefix) holds
// ip.
func ipHolds(v string, ip netip.Addr) bool {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Contains(ip)
	}
	a, err := netip.ParseAddr(v)
	return err == nil && a == ip
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
		list.Locks = append(list.Locks, LockState{Key: lk.Key, Rule: lk.Rule, Subject: lk.SubjectString(), Remaining: seconds(lk.Remaining), fields: lk.KeyInfo.Subject})
	}
	return list, nil
}

// do runs an action: "unlock", "reset", "unlock-key" or "reset-all". It
// returns how many locks unlock lifted, or how many keys reset-all
// removed.
func (o *Operator) do(ctx context.Context, action string, p actionParams) (int, error) {
	switch action {
	case "unlock-key":
		if len(p.keys) == 0 {
			return 0, errMissing
		}
		// All or nothing: a key that is not a lock key of the policy
		// refuses the whole request before any is lifted.
		return 0, o.p.UnlockKeys(ctx, p.keys...)
	case "unlock", "reset":
		if emptySubject(p.subject) {
			return 0, errMissing
		}
		if err := o.knownFields(p.subject); err != nil {
			return 0, err
		}
		if action == "reset" {
			return 0, o.p.Reset(ctx, p.subject)
		}
		return o.p.UnlockCount(ctx, p.subject)
	case "reset-all":
		if !p.confirm {
			return 0, errConfirm
		}
		return o.p.ResetAll(ctx)
	}
	return 0, errors.New("lockouthttp: unknown action " + action)
}

// knownFields returns an error wrapping lockout.ErrInvalidSubject for a
// custom field of s that no rule of the policy is keyed by. The policy
// ignores such a field, so a typo in its name ("field.tenat", or
// "field.ip" for "ip") would widen an unlock or a reset to every value of
// the field the operator meant.
func (o *Operator) knownFields(s lockout.Subject) error {
	if len(s.Fields) == 0 {
		return nil
	}
	rules := o.p.Rules()
	for name := range s.Fields {
		f := lockout.Field(name)
		known := f != lockout.Username && f != lockout.IP && f != lockout.UserAgent && // not Subject.Fields'
			slices.ContainsFunc(rules, func(r lockout.Rule) bool { return slices.Contains(r.Fields, f) })
		if !known {
			return fmt.Errorf("%w: %q", errUnknownField, name)
		}
	}
	return nil
}

var (
	errUnknownField = fmt.Errorf("%w: no rule of the policy is keyed by the field", lockout.ErrInvalidSubject)
	errMissing      = errors.New("lockouthttp: no subject given")
	errConfirm      = errors.New("lockouthttp: confirm=yes is required")
)

func (o *Operator) apiStatus(w http.ResponseWriter, r *http.Request) {
	s := subjectFrom(r.URL.Query())
	if emptySubject(s) {
		apiError(w, http.StatusBadRequest, "bad_request", "give a username, an ip, a user_agent or a field.NAME")
		return
	}
	st, err := o.status(r.Context(), s)
	if err != nil {
		o.actionError(w, "status", err)
		return
	}
	if list, err := o.locks(r.Context(), o.cfg.MaxLocks); err == nil {
		st.AlsoLocked, st.AlsoLockedPartial = alsoLocked(st, list.Locks), list.Truncated
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
	p, err := params(w, r)
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	n, err := o.do(r.Context(), action, p)
	if err != nil {
		o.actionError(w, action, err)
		return
	}
	switch action {
	case "reset-all":
		writeJSON(w, http.StatusOK, struct {
			OK   bool `json:"ok"`
			Keys int  `json:"keys"`
		}{true, n})
		return
	case "unlock":
		// 0 when no lock held the subject (a mistyped username): an
		// unlock that lifted nothing must not read as one that did.
		writeJSON(w, http.StatusOK, struct {
			OK          bool `json:"ok"`
			LocksLifted int  `json:"locks_lifted"`
		}{true, n})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

// apiLockDevice locks one known device of a username (Policy.LockDevice):
// username, device (its id: Attempt.Device, or the d= part of a device
// rule's key) and duration ("forever", or a Go duration such as "24h"),
// as a JSON object or a form.
func (o *Operator) apiLockDevice(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxOperatorBody)
	var v struct {
		Username string `json:"username"`
		Device   string `json:"device"`
		Duration string `json:"duration"`
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	} else {
		if err := r.ParseForm(); err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		v.Username, v.Device, v.Duration = r.Form.Get("username"), r.Form.Get("device"), r.Form.Get("duration")
	}
	if v.Username == "" || v.Device == "" || v.Duration == "" {
		apiError(w, http.StatusBadRequest, "bad_request", "give a username, a device and a duration (\"forever\", or such as \"24h\")")
		return
	}
	d := lockout.Forever
	if v.Duration != "forever" {
		var err error
		if d, err = time.ParseDuration(v.Duration); err != nil || d <= 0 {
			apiError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("duration %q: want \"forever\" or a positive duration such as \"24h\"", v.Duration))
			return
		}
	}
	err := o.p.LockDevice(r.Context(), v.Username, v.Device, d)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, struct {
			OK bool `json:"ok"`
		}{true})
	case errors.Is(err, lockout.ErrNoDevices):
		apiError(w, http.StatusNotImplemented, "no_devices", err.Error())
	default:
		o.actionError(w, "lock-device", err)
	}
}

// partialMessage explains an ErrPartial.
const partialMessage = "this store cannot list its keys: only the locks of rules keyed by exactly the fields given were lifted; give the username and the IP together to reach a username+IP lock"

// actionError answers a failed status or action.
func (o *Operator) actionError(w http.ResponseWriter, action string, err error) {
	switch {
	case errors.Is(err, errMissing):
		apiError(w, http.StatusBadRequest, "bad_request", "give a username, an ip, a user_agent or a field.NAME (or a key)")
	case errors.Is(err, errConfirm):
		apiError(w, http.StatusBadRequest, "confirm_required", action+" clears every counter, lock and lockout history of the policy: send confirm=yes")
	case errors.Is(err, lockout.ErrInvalidSubject), errors.Is(err, lockout.ErrNotLockKey):
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, lockout.ErrPartial):
		apiError(w, http.StatusNotImplemented, "partial", partialMessage)
	case errors.Is(err, errors.ErrUnsupported):
		apiError(w, http.StatusNotImplemented, "unsupported", "this store cannot list its keys: "+err.Error())
	default:
		apiError(w, http.StatusServiceUnavailable, "backend", err.Error())
	}
}

// Notices and problems the page shows after a form action, by code: the
// page never displays text taken from its URL.
var notices = map[string]string{
	"unlock":      "Unlocked: every lock holding the subject lifted, and its counters cleared.",
	"unlock-none": "No lock held the subject: nothing to lift (its counters were cleared). Check the spelling of the username or address.",
	"reset":       "Reset: counters, locks and lockout history of every key holding the subject cleared.",
	"unlock-key":  "Lock lifted.",
	"reset-all":   "Reset all: every counter, lock and lockout history of this policy cleared.",
}

var problems = map[string]string{
	"missing":      "Give a username, an IP address, or another field.",
	"invalid":      "That username or IP address cannot be checked.",
	"unknownfield": "No rule of this policy is keyed by that field: check its name. Nothing was changed.",
	"failed":       "The action failed (see the server's log); nothing may have changed.",
	"partial":      "Only partly done: this store cannot list its keys, so only the locks of rules keyed by exactly the fields given were lifted. Give the username and the IP address together to reach a username+IP lock.",
	"unsupported":  "This store cannot list its keys, so it cannot reset everything.",
	"notlock":      "That key is no longer a lock of this policy.",
	"toolarge":     "The form was too large: unlock the group's keys one by one.",
}

func (o *Operator) formAction(w http.ResponseWriter, r *http.Request, action string) {
	p, err := params(w, r)
	if err == nil && !p.confirm && (action == "reset" || action == "reset-all") {
		if action == "reset" && emptySubject(p.subject) {
			err = errMissing
		} else {
			o.confirmPage(w, action, p.subject)
			return
		}
	}
	q := subjectValues(p.subject)
	n := 0
	if err == nil {
		n, err = o.do(r.Context(), action, p)
	}
	switch {
	case err == nil && action == "unlock" && n == 0:
		q.Set("done", "unlock-none")
	case err == nil:
		q.Set("done", action)
	case errors.Is(err, errMissing):
		q.Set("problem", "missing")
	case errors.Is(err, errUnknownField):
		q.Set("problem", "unknownfield")
	case errors.Is(err, lockout.ErrInvalidSubject):
		q.Set("problem", "invalid")
	case errors.Is(err, lockout.ErrNotLockKey):
		q.Set("problem", "notlock")
	case errors.Is(err, lockout.ErrPartial):
		q.Set("problem", "partial")
	case errors.Is(err, errors.ErrUnsupported):
		q.Set("problem", "unsupported")
	case errors.As(err, new(*http.MaxBytesError)):
		q.Set("problem", "toolarge")
	default:
		q.Set("problem", "failed")
	}
	w.Header().Set("Location", "./?"+q.Encode())
	w.WriteHeader(http.StatusSeeOther)
}

// confirmPage asks to confirm a reset or a reset-all, without JavaScript:
// its button posts the same action again with confirm=yes.
func (o *Operator) confirmPage(w http.ResponseWriter, action string, s lockout.Subject) {
	d := struct {
		Action, Back string
		All          bool
		Subject      []lookupField
	}{Action: action, All: action == "reset-all", Back: "./?" + subjectValues(s).Encode()}
	v := subjectValues(s)
	for _, f := range o.lookupFields(s, nil) {
		if v.Get(f.Param) != "" {
			d.Subject = append(d.Subject, f)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = confirmPage.Execute(w, d)
}

type pageData struct {
	Operator        string
	Subject         lockout.Subject
	Lookup          []lookupField
	Notice, Problem string
	Queried         bool
	Status          SubjectStatus
	StatusErr       string
	// SubjectForm is the subject's fields, for the unlock and reset
	// buttons.
	SubjectForm      []lookupField
	Locks            LockList
	Groups           []LockGroup
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
		Subject:  subjectFrom(q),
	}
	// A notice reports what the page's own form did: not on a page
	// another site linked to ("?done=reset-all" must not tell the
	// operator that someone reset everything).
	if site := r.Header.Get("Sec-Fetch-Site"); site == "" || site == "same-origin" {
		d.Notice, d.Problem = notices[q.Get("done")], problems[q.Get("problem")]
	}
	ctx := r.Context()
	list, err := o.locks(ctx, o.cfg.MaxLocks)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		d.LocksUnsupported = true
	case err != nil:
		d.LocksErr = "The store failed: " + err.Error()
	}
	d.Locks = list
	d.Groups = groupLocks(list.Locks)
	d.Lookup = o.lookupFields(d.Subject, list.Locks)
	if !emptySubject(d.Subject) {
		d.Queried = true
		for _, f := range d.Lookup {
			if f.Value != "" {
				d.SubjectForm = append(d.SubjectForm, f)
			}
		}
		st, err := o.status(ctx, d.Subject)
		switch {
		case errors.Is(err, lockout.ErrInvalidSubject):
			d.StatusErr = "That username or IP address cannot be checked: " + err.Error()
		case err != nil:
			d.StatusErr = "The store failed: " + err.Error()
		default:
			st.AlsoLocked, st.AlsoLockedPartial = alsoLocked(st, list.Locks), list.Truncated
		}
		d.Status = st
	}
	d.Attempts, d.Journal = o.pageAttemptsView(ctx, q)
	if d.Journal && d.Queried && d.StatusErr == "" && (d.Subject.Username != "" || d.Subject.IP != "") {
		list, err := o.pageOfAttempts(ctx, lockout.AttemptQuery{Username: d.Subject.Username, IP: d.Subject.IP, Limit: subjectAttempts})
		if err != nil {
			d.SubjectAttemptsErr = "The journal's store failed: " + err.Error()
		}
		d.SubjectAttempts = list.Records
		if list.Next != "" {
			d.SubjectAttemptsAll = subjectAttemptsLink(d.Subject.Username, d.Subject.IP)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = operatorPage.Execute(w, d)
}

const pageStyle = `
body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
.note{padding:.5em 1em;background:#eef}.problem{background:#fee}form.inline{display:inline}
.who{float:right;color:#555;margin-top:-3.2em}.dim{color:#777;font-size:90%}
table.attempts{font-size:13px}table.attempts td.cut{max-width:11em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
span.cut{display:inline-block;max-width:18em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;vertical-align:bottom}
.o-success{color:#060}.o-failure{color:#a30}.o-refused{color:#a00}.o-lockout{background:#fdd;font-weight:bold}
.o-unlock,.o-reset{background:#dfd;font-weight:bold}
.pages a{margin-right:1em}.nw{white-space:nowrap}
form.lookup label{margin-right:.8em}
table.locks{min-width:44em}table.locks form{margin:0}
tr.ghead th{background:#f3f3f7;font-weight:normal;border-top:2px solid #889}
tbody.group td:first-child{padding-left:1.6em}
.locked{color:#a00}tr.also td{background:#fff8f0}
button.small{font-size:85%}
form.danger{margin-top:1em}form.danger button{color:#a00}
.confirm{max-width:40em}.confirm ul{margin:.5em 0}
.legend{color:#555;font-size:90%;max-width:60em}
.scroll{overflow-x:auto;max-width:100%}
.confirm button{background:#a00;color:#fff;border:1px solid #700;border-radius:3px;padding:.35em .9em;font-weight:bold}
`

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

// separators replaces what QuoteValue quotes only because a value could
// run into the next one of a subject string (showValue).
var separators = strings.NewReplacer(",", "_", "=", "_", `"`, "_", `\`, "_", "~", "_")

// showValue returns a client's value (username, user agent) for a cell of
// its own: quoted when it holds a look-alike or a hidden character (see
// lockout.QuoteValue), as it is otherwise, separators included, which a
// cell needs no quoting for.
func showValue(v string) string {
	plain := separators.Replace(v)
	if v == "" || lockout.QuoteValue(plain) == plain {
		return v
	}
	return lockout.QuoteValue(v)
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
	"show": showValue,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lockout</title>
<style>` + pageStyle + `</style></head>
<body>
<h1>Lockout</h1>
{{with .Operator}}<p class="who">Operator: <b>{{.}}</b></p>{{end}}
{{with .Notice}}<p class="note">{{.}}</p>{{end}}
{{with .Problem}}<p class="note problem">{{.}}</p>{{end}}
<h2>Look up a subject</h2>
<form method="get" action="./" class="lookup">
{{range .Lookup}}<label>{{.Label}} <input name="{{.Param}}" value="{{.Value}}"></label>
{{end}}<button>Show status</button>
</form>
<p class="dim">Any one field is enough. The status lists the rules keyed by the fields given; Unlock lifts every lock whose key holds them (a username's locks from every address, too).</p>
{{if .Queried}}{{if .StatusErr}}<p class="note problem">{{.StatusErr}}</p>{{else}}
<div class="scroll"><table>
<tr><th>Rule</th><th>Key</th><th title="Failed attempts (and attempts in flight) counted in the current window, and the rule's limit: the limit-th failure locks the key">Attempts / limit</th><th title="Time until the count of attempts starts afresh">Window left</th><th title="Time left on the lock, if the key is locked">Locked</th><th title="Lockouts of this key within the history window; each makes the next lock longer">Lockouts in history</th>{{if .Journal}}<th>Locked since (UTC)</th><th title="The attempt whose failure locked the key: for a rule keyed by the address alone, the last of the failures from it, whatever their usernames">Locked by the attempt of</th>{{end}}</tr>
{{range .Status.Rules}}<tr><td>{{.Rule}}</td><td><code>{{.Key}}</code></td><td>{{.Attempts}} / {{.Limit}}{{if and .Locked (eq .Attempts 0)}}<br><span class="dim">cleared by the lock</span>{{end}}</td><td>{{window .WindowRemaining}}</td><td>{{if .Locked}}<b class="locked">{{secs .LockRemaining}}</b>{{else}}no{{end}}</td><td>{{.Lockouts}}</td>
{{- if $.Journal}}{{if .Locked}}{{with .LockedBy}}<td class="nw">{{when .Time}}<br><span class="dim">{{ago .Time}}</span></td><td>{{with .Username}}<span class="cut" title="{{show .}}">{{show .}}</span> {{end}}from {{with .IP}}{{.}}{{else}}?{{end}}{{with .UserAgent}}<br><span class="dim cut" title="{{show .}}">{{show .}}</span>{{end}}</td>{{else}}<td colspan="2" class="dim">not found in the journal</td>{{end}}{{else}}<td></td><td></td>{{end}}{{end}}</tr>
{{else}}<tr><td colspan="{{if .Journal}}8{{else}}6{{end}}">No rule is keyed by exactly these fields.</td></tr>
{{end}}{{range .Status.AlsoLocked}}<tr class="also"><td>{{.Rule}}</td><td><code>{{.Subject}}</code></td><td colspan="2" class="dim">also holds this subject{{with .StatusLink}} (<a href="{{.}}">status</a>){{end}}</td><td><b class="locked">{{secs .Remaining}}</b></td><td></td>{{if $.Journal}}<td></td><td></td>{{end}}</tr>
{{end}}</table></div>
{{if .Status.AlsoLockedPartial}}<p class="note">More keys are locked than the page lists: other locks holding this subject may be missing above. Unlock lifts them all the same.</p>{{end}}
<p class="legend"><b>Attempts / limit</b>: failures (and attempts in progress) counted in the current window, and the rule's limit; the limit-th failure locks the key.
<b>Window left</b>: until that count starts afresh. <b>Locked</b>: time left on the lock. <b>Lockouts in history</b>: the key's lockouts within the rule's history window (24 h by default); each makes the next lock longer, and only a reset forgets them.</p>
<form class="inline" method="post" action="unlock">{{template "subject" .SubjectForm}}<button title="Lift every lock whose key holds this subject and clear those counters; the lockout history stays">Unlock</button></form>
<form class="inline" method="post" action="reset">{{template "subject" .SubjectForm}}<button title="Asks to confirm first">Reset, forgetting the lockout history…</button></form>
{{if .Journal}}<h3>Recent attempts of this subject</h3>
{{if .SubjectAttemptsErr}}<p class="note problem">{{.SubjectAttemptsErr}}</p>{{else}}{{template "attempts" .SubjectAttempts}}
{{with .SubjectAttemptsAll}}<p class="pages"><a href="{{.}}">All attempts of this subject</a></p>{{end}}{{end}}
{{end}}{{end}}{{end}}
<h2>Locked keys, by subject</h2>
{{if .LocksUnsupported}}<p class="note">This store cannot list locks. Look a subject up above instead.</p>
{{else if .LocksErr}}<p class="note problem">{{.LocksErr}}</p>
{{else}}<p class="dim">One group per user (her username lock and her username+IP locks from every address), then per IP address, then per other field. A group's Unlock lifts every lock of its subject; the lockout history stays, so a repeat offence still locks for longer.</p>
<div class="scroll"><table class="locks">
<tr><th>Rule</th><th title="The rule key: the fields the rule counts by, as stored (usernames canonical, IPv6 addresses as their prefix)">Key</th><th title="Time left on the lock; on a group's row, the longest of its locks">Lock left</th><th></th></tr>
{{range .Groups}}<tbody class="group">
<tr class="ghead"><th colspan="2">{{if eq .Kind "user"}}User <b>{{.Label}}</b>{{else if eq .Kind "ip"}}IP address <b>{{.Label}}</b>{{else}}<b>{{.Label}}</b>{{end}}
<span class="dim">· {{len .Locks}} lock{{if ne (len .Locks) 1}}s{{end}}{{with .StatusLink}} · <a href="{{.}}">status</a>{{end}}</span></th>
<th>{{secs .Longest}}</th>
<th><form method="post" action="{{.UnlockAction}}">{{template "subject" .UnlockValues}}<button title="{{if eq .Kind "ip"}}Lift every lock that holds this address, including usernames' locks from it{{else}}Lift every lock of this subject{{end}}">{{if eq (len .Locks) 1}}Unlock{{else}}Unlock all {{len .Locks}}{{end}}</button></form></th></tr>
{{range .Locks}}<tr><td>{{.Rule}}</td><td><code>{{.Subject}}</code></td><td>{{secs .Remaining}}</td><td><form method="post" action="unlock-key"><input type="hidden" name="key" value="{{.Key}}"><button class="small" title="Lift this lock only">Unlock this key</button></form></td></tr>
{{end}}</tbody>
{{else}}<tr><td colspan="4">No key is locked.</td></tr>
{{end}}</table></div>
{{if .Locks.Truncated}}<p>Showing the first {{len .Locks.Locks}} locks only.</p>{{end}}
<form method="post" action="reset-all" class="danger"><button title="Asks to confirm first">Reset all…</button> <span class="dim">clears every counter, lock and lockout history of this policy</span></form>
{{end}}
<h2 id="attempts">Recent attempts</h2>
{{if not .Journal}}<p class="note">This policy keeps no journal of attempts (lockout.Config.Journal).</p>
{{else}}{{with .Attempts}}{{if or .Stats.Dropped .Stats.Unrecorded}}<p class="note">Not every attempt is here: since this process started, {{.Stats.Dropped}} record{{if ne .Stats.Dropped 1}}s were{{else}} was{{end}} dropped (the journal's queue was full, its store failed, or the policy was closed) and {{.Stats.Unrecorded}} refused attempt{{if ne .Stats.Unrecorded 1}}s were{{else}} was{{end}} not recorded (over JournalConfig.RefusedPerSecond). {{.Stats.Written}} written.</p>
{{end}}<form method="get" action="./#attempts">
{{range $.SubjectForm}}<input type="hidden" name="{{.Param}}" value="{{.Value}}">{{end}}
<label>Username <input name="attempts_username" value="{{.User}}"></label>
<label>IP address <input name="attempts_ip" value="{{.IP}}"></label>
<label>Outcome <select name="outcome"><option value="">any</option>{{$sel := .Outcome}}{{range .Outcomes}}<option{{if eq . $sel}} selected{{end}}>{{.}}</option>{{end}}</select></label>
<button>Filter</button>{{with .Clear}} <a href="{{.}}">Clear</a>{{end}}
</form>
{{if .Err}}<p class="note problem">{{.Err}}</p>{{else}}{{template "attempts" .Records}}
{{if or .Newest .Older}}<p class="pages">{{with .Newest}}<a href="{{.}}">Newest</a>{{end}}{{with .Older}}<a href="{{.}}">Older</a>{{end}}</p>{{end}}
{{end}}{{end}}{{end}}
</body></html>
{{define "subject"}}{{range .}}<input type="hidden" name="{{.Param}}" value="{{.Value}}">{{end}}{{end}}
{{define "attempts"}}<div class="scroll"><table class="attempts">
<tr><th>Time (UTC)</th><th>Outcome</th><th>Reason</th><th>Rule</th><th>Username</th><th>IP</th><th>User agent</th><th>Fallback</th><th>Operator</th></tr>
{{range .}}<tr><td class="nw">{{when .Time}}<br><span class="dim">{{ago .Time}}</span></td><td class="o-{{.Outcome}}">{{.Outcome}}</td><td class="nw">{{if eq .Outcome "lockout"}}locked {{if lt .LockoutSeconds 0}}until unlocked{{else}}for {{secs .LockoutSeconds}}{{end}}{{else}}{{.Reason}}{{end}}</td><td>{{.Rule}}{{with .Key}}<br><code class="dim">{{.}}</code>{{end}}</td><td class="cut" title="{{show .Username}}">{{show .Username}}</td><td>{{.IP}}</td><td class="cut" title="{{show .UserAgent}}">{{show .UserAgent}}</td><td>{{if .Fallback}}yes{{end}}</td><td class="nw">{{.Operator}}{{with .Via}} <span class="dim">({{.}})</span>{{end}}</td></tr>
{{else}}<tr><td colspan="9">No attempts found.</td></tr>
{{end}}</table></div>{{end}}
`))

var confirmPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Confirm {{if .All}}reset all{{else}}reset{{end}}</title>
<style>` + pageStyle + `</style></head>
<body><div class="confirm">
{{if .All}}<h1>Reset everything?</h1>
<p>This clears <b>every</b> counter, lock and lockout history this policy keeps: every locked user and address is unlocked, and every repeat offender starts again from a first lockout. Other policies sharing the store are not touched.</p>
{{else}}<h1>Reset this subject?</h1>
<ul>{{range .Subject}}<li>{{.Label}}: <b>{{.Value}}</b></li>{{end}}</ul>
<p>This clears the counters, the locks <b>and the lockout history</b> of every key that holds this subject: its next lockout counts as a first one again, as short as the schedule's first. Unlock alone keeps the history.</p>
{{end}}
<form method="post" action="{{.Action}}">{{range .Subject}}<input type="hidden" name="{{.Param}}" value="{{.Value}}">{{end}}<input type="hidden" name="confirm" value="yes">
<button>Yes, {{if .All}}reset everything{{else}}reset{{end}}</button> <a href="{{.Back}}">Cancel</a></form>
</div></body></html>
`))
