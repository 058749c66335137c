package lockouthttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/lockouthttp"
)

// operatorEnv is a policy with an operator handler mounted under
// /admin/lockout/ of a test server.
type operatorEnv struct {
	t   *testing.T
	p   *lockout.Policy
	srv *httptest.Server
}

const adminHeader = "X-Test-Admin"

func newOperatorEnv(t *testing.T, store backend.Backend, cfg lockouthttp.OperatorConfig) *operatorEnv {
	t.Helper()
	return newOperatorEnvWith(t, store, nil, cfg)
}

// newOperatorEnvWith is newOperatorEnv with the given journal.
func newOperatorEnvWith(t *testing.T, store backend.Backend, journal *lockout.JournalConfig, cfg lockouthttp.OperatorConfig) *operatorEnv {
	t.Helper()
	r := lockout.ByUsername(2)
	r.Schedule = lockout.Fixed(time.Minute)
	p := newPolicy(t, store, lockout.Config{Rules: []lockout.Rule{r, lockout.ByIP(10)}, Journal: journal})
	return serveOperator(t, p, cfg)
}

// serveOperator serves p's operator handler, under /admin/lockout/.
func serveOperator(t *testing.T, p *lockout.Policy, cfg lockouthttp.OperatorConfig) *operatorEnv {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/admin/lockout/", http.StripPrefix("/admin/lockout", lockouthttp.NewOperator(p, cfg)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &operatorEnv{t, p, srv}
}

// isAdmin authorizes the requests with the admin header, as the operator
// the header X-Test-Operator names, or "tester".
func isAdmin(r *http.Request) (string, bool) {
	if r.Header.Get(adminHeader) != "yes" {
		return "", false
	}
	if name := r.Header.Get(operatorHeader); name != "" {
		return name, true
	}
	return "tester", true
}

const operatorHeader = "X-Test-Operator"

// lock locks alice's username, from ip.
func (e *operatorEnv) lock(user, ip string) {
	e.t.Helper()
	lock(e.t, e.p, user, ip)
}

func lock(t *testing.T, p *lockout.Policy, user, ip string) {
	t.Helper()
	s := lockout.Subject{Username: user, IP: ip}
	for range 2 {
		a, err := p.Allow(bg, s)
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(bg)
	}
	if _, err := p.Allow(bg, s); err == nil {
		t.Fatalf("%s is not locked", user)
	}
}

// do sends a request with the given headers (name, value pairs) and
// returns the response with its body read.
func (e *operatorEnv) do(method, path, contentType, body string, headers ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// api sends an authorized request and decodes a JSON answer into v.
func (e *operatorEnv) api(method, path, contentType, body string, wantStatus int, v any) {
	e.t.Helper()
	resp, b := e.do(method, path, contentType, body, adminHeader, "yes")
	if resp.StatusCode != wantStatus {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, wantStatus)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(b), v); err != nil {
			e.t.Fatalf("%s %s: %q: %v", method, path, b, err)
		}
	}
}

func (e *operatorEnv) status(user, ip string) lockouthttp.SubjectStatus {
	e.t.Helper()
	var st lockouthttp.SubjectStatus
	e.api("GET", "/admin/lockout/api/status?"+url.Values{"username": {user}, "ip": {ip}}.Encode(), "", "", 200, &st)
	return st
}

func ruleState(t *testing.T, st lockouthttp.SubjectStatus, rule string) lockouthttp.RuleState {
	t.Helper()
	for _, r := range st.Rules {
		if r.Rule == rule {
			return r
		}
	}
	t.Fatalf("no rule %q in %+v", rule, st)
	return lockouthttp.RuleState{}
}

func TestOperatorRefusesWithoutAuthorizer(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  lockouthttp.OperatorConfig
	}{
		{"nil", lockouthttp.OperatorConfig{}},
		{"false", lockouthttp.OperatorConfig{Authorize: func(*http.Request) (string, bool) { return "mallory", false }}},
		{"not admin", lockouthttp.OperatorConfig{Authorize: isAdmin}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newOperatorEnv(t, nil, tt.cfg)
			e.lock("alice", clientA)
			for _, req := range []struct{ method, path string }{
				{"GET", "/admin/lockout/"},
				{"GET", "/admin/lockout/api/status?username=alice"},
				{"GET", "/admin/lockout/api/locks"},
				{"POST", "/admin/lockout/api/unlock"},
				{"POST", "/admin/lockout/unlock"},
				{"GET", "/admin/lockout/nonexistent"},
			} {
				// Even with the header the "not admin" authorizer wants: that
				// one is only refused without it.
				var headers []string
				if tt.name != "not admin" {
					headers = []string{adminHeader, "yes"}
				}
				resp, body := e.do(req.method, req.path, "application/x-www-form-urlencoded", "username=alice", headers...)
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("%s %s: %d %s, want 403", req.method, req.path, resp.StatusCode, body)
				}
				if strings.Contains(body, "alice") {
					t.Errorf("%s %s: the refusal discloses %q", req.method, req.path, body)
				}
			}
			if _, err := e.p.Allow(bg, lockout.Subject{Username: "alice"}); err == nil {
				t.Error("an unauthorized request unlocked alice")
			}
		})
	}
}

func TestOperatorUnauthorizedHandler(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{
		Authorize: isAdmin,
		Unauthorized: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="lockout"`)
			http.Error(w, "log in", http.StatusUnauthorized)
		}),
	})
	resp, _ := e.do("GET", "/admin/lockout/", "", "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%d %v", resp.StatusCode, resp.Header)
	}
}

func TestOperatorAPI(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", clientA)

	st := e.status("alice", clientA)
	if st.Username != "alice" || st.IP != clientA || len(st.Rules) != 2 {
		t.Fatalf("status %+v", st)
	}
	u := ruleState(t, st, "username")
	if !u.Locked || u.LockRemaining < 59 || u.LockRemaining > 60 || u.Lockouts != 1 || u.Key != "u=alice" || u.Limit != 2 {
		t.Errorf("username rule %+v", u)
	}
	if ip := ruleState(t, st, "ip"); ip.Locked || ip.Attempts != 2 || ip.WindowRemaining < 890 || ip.WindowRemaining > 900 {
		t.Errorf("ip rule %+v", ip)
	}
	// Only the rules that apply to the fields given.
	if st := e.status("", clientA); len(st.Rules) != 1 || st.Rules[0].Rule != "ip" {
		t.Errorf("status by IP %+v", st)
	}

	var locks lockouthttp.LockList
	e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
	if len(locks.Locks) != 1 || locks.Truncated {
		t.Fatalf("locks %+v", locks)
	}
	lk := locks.Locks[0]
	if lk.Rule != "username" || lk.Subject != "u=alice" || lk.Remaining < 59 || lk.Remaining > 60 || lk.Key == "" {
		t.Errorf("lock %+v", lk)
	}

	// Unlock, by JSON: the lock goes, the history stays.
	var ok struct{ OK bool }
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, 200, &ok)
	if !ok.OK {
		t.Error("unlock did not say ok")
	}
	if u := ruleState(t, e.status("alice", ""), "username"); u.Locked || u.Lockouts != 1 || u.Attempts != 0 {
		t.Errorf("after unlock %+v", u)
	}
	if a, err := e.p.Allow(bg, lockout.Subject{Username: "alice"}); err != nil {
		t.Errorf("alice still refused after unlock: %v", err)
	} else {
		a.Success(bg)
	}

	// Reset, by form: the history goes too.
	e.lock("alice", clientA)
	e.api("POST", "/admin/lockout/api/reset", "application/x-www-form-urlencoded", "username=alice", 200, nil)
	if u := ruleState(t, e.status("alice", ""), "username"); u.Locked || u.Lockouts != 0 {
		t.Errorf("after reset %+v", u)
	}

	// Unlock by key, from the query string.
	e.lock("bob", clientA)
	e.api("GET", "/admin/lockout/api/locks?limit=5", "", "", 200, &locks)
	if len(locks.Locks) != 1 || locks.Locks[0].Subject != "u=bob" {
		t.Fatalf("locks %+v", locks)
	}
	e.api("POST", "/admin/lockout/api/unlock-key?"+url.Values{"key": {locks.Locks[0].Key}}.Encode(), "", "", 200, nil)
	if u := ruleState(t, e.status("bob", ""), "username"); u.Locked {
		t.Errorf("after unlock-key %+v", u)
	}
	e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
	if len(locks.Locks) != 0 {
		t.Errorf("locks after unlock-key %+v", locks)
	}

	// Truncation.
	e.lock("carol", clientA)
	e.lock("dave", clientA)
	e.api("GET", "/admin/lockout/api/locks?limit=1", "", "", 200, &locks)
	if len(locks.Locks) != 1 || !locks.Truncated {
		t.Errorf("limit=1: %+v", locks)
	}

	// Errors.
	var apiErr struct{ Error, Message string }
	for _, tt := range []struct {
		method, path, ct, body string
		status                 int
		code                   string
	}{
		{"GET", "/admin/lockout/api/status", "", "", 400, "bad_request"},
		{"GET", "/admin/lockout/api/status?ip=garbage", "", "", 400, "bad_request"},
		{"GET", "/admin/lockout/api/status?username=a%20b", "", "", 400, "bad_request"},
		{"POST", "/admin/lockout/api/unlock", "application/json", `{}`, 400, "bad_request"},
		{"POST", "/admin/lockout/api/unlock", "application/json", `{"username":`, 400, "bad_request"},
		{"POST", "/admin/lockout/api/unlock", "application/json", `{"ip":"1.2.3.4:80"}`, 400, "bad_request"},
		{"POST", "/admin/lockout/api/unlock-key", "application/json", `{"key":""}`, 400, "bad_request"},
		{"POST", "/admin/lockout/api/unlock-key", "application/json", `{"key":"lockout:a:username:{u=alice}"}`, 400, "bad_request"},
		{"GET", "/admin/lockout/api/locks?limit=-1", "", "", 400, "bad_request"},
		{"GET", "/admin/lockout/api/unlock", "", "", 405, "method_not_allowed"},
		{"POST", "/admin/lockout/api/status", "", "", 405, "method_not_allowed"},
		{"DELETE", "/admin/lockout/", "", "", 405, "method_not_allowed"},
		{"GET", "/admin/lockout/api/nothing", "", "", 404, "not_found"},
		{"POST", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=" + strings.Repeat("x", 100<<10), 400, "bad_request"},
	} {
		e.api(tt.method, tt.path, tt.ct, tt.body, tt.status, &apiErr)
		if apiErr.Error != tt.code {
			t.Errorf("%s %s %s: error %q, want %q", tt.method, tt.path, tt.body, apiErr.Error, tt.code)
		}
	}
	resp, _ := e.do("GET", "/admin/lockout/api/unlock", "", "", adminHeader, "yes")
	if resp.Header.Get("Allow") != "POST" {
		t.Errorf("405 without Allow: %v", resp.Header)
	}
}

func TestOperatorCSRF(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for _, tt := range []struct {
		name    string
		headers []string
		allowed bool
	}{
		{"cross-site", []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"same-site", []string{"Sec-Fetch-Site", "same-site"}, false},
		{"foreign origin", []string{"Origin", "https://evil.example"}, false},
		{"same-origin", []string{"Sec-Fetch-Site", "same-origin"}, true},
		{"origin matches host", []string{"Origin", "http://" + host}, true},
		{"no browser headers", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lock(t, e.p, "alice", "")
			headers := append([]string{adminHeader, "yes"}, tt.headers...)
			for _, path := range []string{"/admin/lockout/api/unlock", "/admin/lockout/unlock"} {
				resp, body := e.do("POST", path, "application/x-www-form-urlencoded", "username=alice", headers...)
				locked := ruleState(t, e.status("alice", ""), "username").Locked
				if tt.allowed && (resp.StatusCode >= 400 || locked) {
					t.Errorf("%s: %d %s, locked %v; want it done", path, resp.StatusCode, body, locked)
				}
				if !tt.allowed && (resp.StatusCode != http.StatusForbidden || !locked) {
					t.Errorf("%s: %d %s, locked %v; want 403 and still locked", path, resp.StatusCode, body, locked)
				}
				if tt.allowed {
					lock(t, e.p, "alice", "")
				}
			}
			e.p.Reset(bg, lockout.Subject{Username: "alice"})
		})
	}
}

func TestOperatorPage(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", clientA)
	e.lock("<script>alert(1)</script>", clientA)

	resp, body := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %v", resp.StatusCode, resp.Header)
	}
	// alice's username counter was cleared by her lock: the page says
	// so, rather than a bare "0 / 2" beside the lock.
	for _, want := range []string{"u=alice", `action="unlock"`, `action="reset"`, `action="unlock-key"`, `name="key"`, "&lt;script&gt;", "cleared by the lock"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("the page is not escaped")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", resp.Header)
	}

	// A form action answers 303 back to the page, which shows a notice.
	resp, _ = e.do("POST", "/admin/lockout/unlock", "application/x-www-form-urlencoded", "username=alice", adminHeader, "yes", "Sec-Fetch-Site", "same-origin")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "./?") {
		t.Fatalf("form action: %d, Location %q", resp.StatusCode, loc)
	}
	target, _ := url.Parse(e.srv.URL + "/admin/lockout/unlock")
	next := target.ResolveReference(&url.URL{Path: "./", RawQuery: strings.TrimPrefix(loc, "./?")})
	if next.Path != "/admin/lockout/" || next.Query().Get("done") != "unlock" || next.Query().Get("username") != "alice" {
		t.Errorf("Location %q resolves to %v", loc, next)
	}
	_, body = e.do("GET", next.RequestURI(), "", "", adminHeader, "yes")
	if !strings.Contains(body, "Unlocked") {
		t.Errorf("no notice after the action:\n%s", body)
	}
	resp, _ = e.do("POST", "/admin/lockout/reset", "application/x-www-form-urlencoded", "ip=garbage&confirm=yes", adminHeader, "yes")
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "problem=invalid") {
		t.Errorf("invalid subject: Location %q", loc)
	}
	// Text in the URL is never shown as a notice.
	_, body = e.do("GET", "/admin/lockout/?done=<b>hi</b>&problem=pwned", "", "", adminHeader, "yes")
	if strings.Contains(body, "pwned") || strings.Contains(body, "hi</b>") {
		t.Error("the page shows text from its URL")
	}
	// Nor on a page another site linked to: it did not follow a form of
	// the page's own.
	for _, site := range []string{"cross-site", "same-site", "none"} {
		_, body = e.do("GET", "/admin/lockout/?done=reset-all&problem=failed", "", "", adminHeader, "yes", "Sec-Fetch-Site", site)
		if strings.Contains(body, "Reset all: every") || strings.Contains(body, "The action failed") {
			t.Errorf("Sec-Fetch-Site %s: the page shows a notice the link asked for", site)
		}
	}
	_, body = e.do("GET", "/admin/lockout/?done=reset-all", "", "", adminHeader, "yes", "Sec-Fetch-Site", "same-origin")
	if !strings.Contains(body, "Reset all: every") {
		t.Error("same-origin: no notice")
	}
}

func TestOperatorMountPoints(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2)}})
	op := lockouthttp.NewOperator(p, lockouthttp.OperatorConfig{Authorize: func(*http.Request) (string, bool) { return "anyone", true }})
	for _, tt := range []struct {
		name    string
		handler http.Handler
		path    string
		status  int
		loc     string
	}{
		{"root", op, "/", 200, ""},
		{"prefix without slash", http.StripPrefix("/ops", op), "/ops", 302, "ops/"},
		{"prefix without slash, query", http.StripPrefix("/ops", op), "/ops?username=x", 302, "ops/?username=x"},
		{"prefix with slash", http.StripPrefix("/ops", op), "/ops/", 200, ""},
		{"stripped with slash", http.StripPrefix("/ops/", op), "/ops/", 200, ""},
		{"stripped with slash, api", http.StripPrefix("/ops/", op), "/ops/api/locks", 200, ""},
		{"deep", http.StripPrefix("/a/b/c", op), "/a/b/c/api/status?username=x", 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.handler.ServeHTTP(w, httptest.NewRequest("GET", tt.path, nil))
			if w.Code != tt.status || w.Header().Get("Location") != tt.loc {
				t.Errorf("GET %s: %d, Location %q; want %d, %q", tt.path, w.Code, w.Header().Get("Location"), tt.status, tt.loc)
			}
		})
	}
}

func TestOperatorUnlistableStore(t *testing.T) {
	e := newOperatorEnv(t, unlistable{newStore(t)}, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", clientA)
	var apiErr struct{ Error, Message string }
	e.api("GET", "/admin/lockout/api/locks", "", "", http.StatusNotImplemented, &apiErr)
	if apiErr.Error != "unsupported" || apiErr.Message != "this store cannot list locks" {
		t.Errorf("%+v", apiErr)
	}
	_, body := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	if !strings.Contains(body, "This store cannot list locks") || !strings.Contains(body, "u=alice") {
		t.Errorf("page:\n%s", body)
	}
	// Everything else still works.
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, 200, nil)
}

func TestOperatorBackendDown(t *testing.T) {
	e := newOperatorEnv(t, downStore{}, lockouthttp.OperatorConfig{Authorize: isAdmin})
	var apiErr struct{ Error, Message string }
	e.api("GET", "/admin/lockout/api/status?username=alice", "", "", http.StatusServiceUnavailable, &apiErr)
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, http.StatusServiceUnavailable, &apiErr)
	if apiErr.Error != "backend" {
		t.Errorf("%+v", apiErr)
	}
	_, body := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	if !strings.Contains(body, "The store failed") {
		t.Errorf("page:\n%s", body)
	}
}

// TestOperatorAlsoLockedPartial: when the store holds more locks than the
// listing takes, a subject's status says that its other locks may be
// missing (an attacker who locks many keys can push them out of the
// listing); with room, it lists them.
func TestOperatorAlsoLockedPartial(t *testing.T) {
	for _, tc := range []struct {
		maxLocks int
		partial  bool
	}{{100, false}, {3, true}} {
		t.Run(fmt.Sprint("MaxLocks=", tc.maxLocks), func(t *testing.T) {
			pair := lockout.ByUsernameAndIP(2)
			p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2), pair}})
			op := lockouthttp.NewOperator(p, lockouthttp.OperatorConfig{Authorize: isAdmin, MaxLocks: tc.maxLocks})
			for _, u := range []string{"alice", "bob", "carol", "dave"} {
				lock(t, p, u, clientA)
			}
			r := httptest.NewRequest("GET", "/api/status?username=alice", nil)
			r.Header.Set(adminHeader, "yes")
			w := httptest.NewRecorder()
			op.ServeHTTP(w, r)
			var st lockouthttp.SubjectStatus
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
				t.Fatalf("%d %s: %v", w.Code, w.Body, err)
			}
			if st.AlsoLockedPartial != tc.partial {
				t.Errorf("also_locked_partial %v, want %v (also_locked %+v)", st.AlsoLockedPartial, tc.partial, st.AlsoLocked)
			}
			if !tc.partial && (len(st.AlsoLocked) != 1 || st.AlsoLocked[0].Subject != "u=alice,ip="+clientA) {
				t.Errorf("also_locked %+v, want alice's username+IP lock", st.AlsoLocked)
			}
		})
	}
}

// TestOperatorFormTooLarge: a form over the operator's body limit is
// answered with its own problem, not a failure to look for in the log.
func TestOperatorFormTooLarge(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	body := "key=" + strings.Repeat("x", 1<<20)
	resp, _ := e.do("POST", "/admin/lockout/unlock-key", "application/x-www-form-urlencoded", body, adminHeader, "yes")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "problem=toolarge") {
		t.Errorf("%d, Location %q; want 303 to problem=toolarge", resp.StatusCode, loc)
	}
}

// TestOperatorRejectsUnknownParams: a POST with a parameter the API does
// not know (a typo: "usernme", "ipp") or with more than one JSON value is
// 400 bad_request and touches nothing. Taken silently, a typo widens the
// action: {"username": "alice", "ipp": "..."} unlocked alice from every
// address, and "usernme=alice&ip=..." every user's locks from the address.
func TestOperatorRejectsUnknownParams(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", "")
	for _, tt := range []struct {
		name, path, ct, body string
	}{
		{"json typo", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","ipp":"` + clientB + `"}`},
		{"json typo reset", "/admin/lockout/api/reset", "application/json", `{"username":"alice","confirm":"yes","usr_agent":"x"}`},
		{"json two values", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","ip":"` + clientB + `"} {"username":"alice"}`},
		{"json keys typo", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","kyes":["x"]}`},
		// encoding/json alone would take "IP" for "ip", and the last of
		// two: alice from every address.
		{"json member twice", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","ip":"` + clientB + `","ip":""}`},
		{"json member case", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","ip":"` + clientB + `","IP":""}`},
		{"form typo", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice&ipp=" + clientB},
		{"form empty field name", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice&field.=x"},
		{"query typo", "/admin/lockout/api/unlock?usernme=bob", "application/x-www-form-urlencoded", "username=alice"},
		// ParseForm skips a multipart body: the unlock would reach alice
		// from every address, not from clientB alone.
		{"multipart", "/admin/lockout/api/unlock?username=alice", "multipart/form-data; boundary=x",
			"--x\r\nContent-Disposition: form-data; name=\"ip\"\r\n\r\n" + clientB + "\r\n--x--\r\n"},
	} {
		resp, body := e.do("POST", tt.path, tt.ct, tt.body, adminHeader, "yes")
		var apiErr struct{ Error, Message string }
		if err := json.Unmarshal([]byte(body), &apiErr); resp.StatusCode != http.StatusBadRequest || err != nil || apiErr.Error != "bad_request" {
			t.Errorf("%s: %d %s, want 400 bad_request", tt.name, resp.StatusCode, body)
		}
		if u := ruleState(t, e.status("alice", ""), "username"); !u.Locked {
			t.Errorf("%s: alice unlocked by a rejected request: %+v", tt.name, u)
			e.lock("alice", "")
		}
	}
}

// TestOperatorUnlockKeysAllOrNothing: an unlock-key of several keys, one
// of which is not a lock key of the policy, is refused (400, or the page's
// "notlock") and lifts none of them, as a single bad key does.
func TestOperatorUnlockKeysAllOrNothing(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", "")
	e.lock("bob", "")
	var locks lockouthttp.LockList
	e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
	if len(locks.Locks) != 2 {
		t.Fatalf("locks %+v", locks)
	}
	good := []string{locks.Locks[0].Key, locks.Locks[1].Key}
	const bad = "lockout:l:nosuchrule:{u=x}"
	form := func(keys ...string) string { return url.Values{"key": keys}.Encode() }
	jsonKeys := func(keys ...string) string {
		b, _ := json.Marshal(map[string][]string{"keys": keys})
		return string(b)
	}
	for _, tt := range []struct {
		name, path, ct, body string
		status               int
	}{
		{"api json, bad key last", "/admin/lockout/api/unlock-key", "application/json", jsonKeys(good[0], good[1], bad), 400},
		{"api json, bad key first", "/admin/lockout/api/unlock-key", "application/json", jsonKeys(bad, good[0]), 400},
		{"api form", "/admin/lockout/api/unlock-key", "application/x-www-form-urlencoded", form(good[1], bad), 400},
		{"page form", "/admin/lockout/unlock-key", "application/x-www-form-urlencoded", form(good[0], bad), 303},
	} {
		resp, body := e.do("POST", tt.path, tt.ct, tt.body, adminHeader, "yes")
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, body, tt.status)
		}
		if loc := resp.Header.Get("Location"); tt.status == 303 && !strings.Contains(loc, "problem=notlock") {
			t.Errorf("%s: Location %q, want problem=notlock", tt.name, loc)
		}
		for _, u := range []string{"alice", "bob"} {
			if st := ruleState(t, e.status(u, ""), "username"); !st.Locked {
				t.Errorf("%s: %s unlocked by a refused unlock-key", tt.name, u)
				e.lock(u, "")
			}
		}
	}
	e.api("POST", "/admin/lockout/api/unlock-key", "application/json", jsonKeys(good...), 200, nil)
	e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
	if len(locks.Locks) != 0 {
		t.Errorf("after unlock-key of both: %+v", locks)
	}
}

// TestOperatorRefusesUnknownField: an unlock or a reset naming a custom
// field that no rule is keyed by is a 400 that changes nothing: the policy
// would drop the field, and a typo (field.tenat, or field.ip for ip) would
// lift alice's locks in every tenant, or from every address.
func TestOperatorRefusesUnknownField(t *testing.T) {
	r := lockout.ByFields(2, lockout.Username, lockout.Field("tenant"))
	r.Schedule = lockout.Fixed(time.Hour)
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{r}})
	e := serveOperator(t, p, lockouthttp.OperatorConfig{Authorize: isAdmin})
	in := func(tenant string) lockout.Subject {
		return lockout.Subject{Username: "alice", Fields: map[string]string{"tenant": tenant}}
	}
	for _, tenant := range []string{"acme", "globex"} {
		for range 2 {
			a, err := p.Allow(bg, in(tenant))
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(bg)
		}
	}
	for _, tc := range []struct{ name, path, ct, body string }{
		{"form typo", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice&field.tenat=acme"},
		{"json typo", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","fields":{"tenat":"acme"}}`},
		{"predefined as a field", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice&field.ip=192.0.2.1"},
		{"reset", "/admin/lockout/api/reset", "application/x-www-form-urlencoded", "username=alice&field.tenat=acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do("POST", tc.path, tc.ct, tc.body, adminHeader, "yes")
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no rule of the policy is keyed by the field") {
				t.Errorf("%s: %d %s, want 400 naming the field", tc.body, resp.StatusCode, body)
			}
			for _, tenant := range []string{"acme", "globex"} {
				if _, err := p.Allow(bg, in(tenant)); err == nil {
					t.Errorf("alice in %s unlocked by a request naming an unknown field", tenant)
				}
			}
		})
	}
	// The page says so too, and the right name works.
	resp, _ := e.do("POST", "/admin/lockout/unlock", "application/x-www-form-urlencoded", "username=alice&field.tenat=acme", adminHeader, "yes")
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "problem=unknownfield") {
		t.Errorf("page unlock with an unknown field: redirected to %q, want problem=unknownfield", loc)
	}
	resp, body := e.do("POST", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice&field.tenant=acme", adminHeader, "yes")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"ok":true,"locks_lifted":1}` {
		t.Errorf("unlock in acme: %d %s", resp.StatusCode, body)
	}
	if _, err := p.Allow(bg, in("globex")); err == nil {
		t.Error("the unlock in acme unlocked globex")
	}
}

// TestOperatorNeedsName: an authorizer that allows a request without
// naming the operator is refused: every unlock and reset names who made
// it.
func TestOperatorNeedsName(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{
		Authorize: func(r *http.Request) (string, bool) { return "", r.Header.Get(adminHeader) == "yes" },
	})
	e.lock("alice", "")
	resp, body := e.do("POST", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice", adminHeader, "yes")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unlock by an operator with no name: %d %s, want 403", resp.StatusCode, body)
	}
	if _, err := e.p.Allow(bg, lockout.Subject{Username: "alice"}); err == nil {
		t.Error("alice unlocked by an operator with no name")
	}
}
