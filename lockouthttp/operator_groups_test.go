package lockouthttp_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/lockouthttp"
)

// aliceEnv is a policy with a username rule (limit 5) and a username+IP
// rule (limit 2), a login handler behind the middleware, and the operator
// handler, on one test server.
type aliceEnv struct {
	*operatorEnv
	login http.Handler
}

func newAliceEnv(t *testing.T, store backend.Backend) *aliceEnv {
	t.Helper()
	if store == nil {
		store = newStore(t)
	}
	u, uip := lockout.ByUsername(5), lockout.ByUsernameAndIP(2)
	u.Schedule, uip.Schedule = lockout.Fixed(time.Hour), lockout.Fixed(time.Hour)
	rules := []lockout.Rule{u, uip}
	p := newPolicy(t, store, lockout.Config{Rules: rules})
	login := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(&login{})
	return &aliceEnv{serveOperator(t, p, lockouthttp.OperatorConfig{Authorize: isAdmin}), login}
}

// lockAlice locks alice's username+IP keys from clientA and clientB, and
// her username (the fifth failure, from a third address); her correct
// password is then refused from clientA.
func (e *aliceEnv) lockAlice() {
	e.t.Helper()
	for _, ip := range []string{clientA, clientA, clientB, clientB, "192.0.2.77"} {
		if w := post(e.login, ip+":1234", "alice", "wrong"); w.Code != http.StatusUnauthorized {
			e.t.Fatalf("failure from %s: %d", ip, w.Code)
		}
	}
	if w := post(e.login, clientA+":1234", "alice", alicePassword); w.Code != http.StatusTooManyRequests {
		e.t.Fatalf("alice is not locked: %d", w.Code)
	}
	// bob's username lock, which no unlock of alice touches.
	for i := range 5 {
		post(e.login, "192.0.2."+strconv.Itoa(100+i)+":1234", "bob", "wrong")
	}
	if _, err := e.p.Allow(bg, lockout.Subject{Username: "bob"}); err == nil {
		e.t.Fatal("bob is not locked")
	}
}

func (e *aliceEnv) page(query string) string {
	e.t.Helper()
	resp, body := e.do("GET", "/admin/lockout/"+query, "", "", adminHeader, "yes")
	if resp.StatusCode != 200 {
		e.t.Fatalf("page: %d %s", resp.StatusCode, body)
	}
	return body
}

// TestUnlockGroupThenLogin is the check of the issue: alice locked under
// a username rule and a username+IP rule; one unlock, from the page or
// the API, and her next correct login gets 200, from every address.
func TestUnlockGroupThenLogin(t *testing.T) {
	for _, tt := range []struct {
		name, path, ct, body string
		wantStatus           int
	}{
		{"page group unlock", "/admin/lockout/unlock", "application/x-www-form-urlencoded", "username=alice", http.StatusSeeOther},
		{"api unlock by username, form", "/admin/lockout/api/unlock", "application/x-www-form-urlencoded", "username=alice", 200},
		{"api unlock by username, json", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, 200},
		{"api unlock, case variant", "/admin/lockout/api/unlock", "application/json", `{"username":"ALICE"}`, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newAliceEnv(t, nil)
			e.lockAlice()

			// The page shows her three locks in one group, with one
			// Unlock for them all, and bob apart.
			body := e.page("")
			i, j := strings.Index(body, "User <b>alice</b>"), strings.Index(body, "User <b>bob</b>")
			if i < 0 || j < 0 || j < i {
				t.Fatalf("no alice group before bob's:\n%s", body)
			}
			group := body[i:j]
			for _, want := range []string{"u=alice", "u=alice,ip=" + clientA, "u=alice,ip=" + clientB, "Unlock all 3", `name="username" value="alice"`} {
				if !strings.Contains(group, want) {
					t.Errorf("alice's group lacks %q:\n%s", want, group)
				}
			}
			if strings.Count(body, "User <b>alice</b>") != 1 {
				t.Error("alice shows in more than one group")
			}

			resp, b := e.do("POST", tt.path, tt.ct, tt.body, adminHeader, "yes", "Sec-Fetch-Site", "same-origin")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("unlock: %d %s", resp.StatusCode, b)
			}
			// It says how many locks it lifted; again, that none held her.
			for _, want := range []struct{ api, page string }{{`{"ok":true,"locks_lifted":3}`, "done=unlock&"}, {`{"ok":true,"locks_lifted":0}`, "done=unlock-none&"}} {
				if tt.wantStatus == http.StatusSeeOther {
					if loc := resp.Header.Get("Location"); !strings.Contains(loc+"&", want.page) {
						t.Errorf("unlock: redirected to %q, want %q", loc, want.page)
					}
				} else if strings.TrimSpace(b) != want.api {
					t.Errorf("unlock: %s, want %s", b, want.api)
				}
				resp, b = e.do("POST", tt.path, tt.ct, tt.body, adminHeader, "yes", "Sec-Fetch-Site", "same-origin")
			}
			if tt.wantStatus == http.StatusSeeOther {
				if page := e.page("?done=unlock-none"); !strings.Contains(page, "No lock held the subject") {
					t.Error("the page after an unlock that lifted nothing does not say so")
				}
			}
			for _, ip := range []string{clientA, clientB, "192.0.2.77"} {
				if w := post(e.login, ip+":1234", "alice", alicePassword); w.Code != http.StatusOK {
					t.Errorf("alice's correct login from %s after the unlock: %d %s", ip, w.Code, w.Body)
				}
			}
			if _, err := e.p.Allow(bg, lockout.Subject{Username: "bob"}); err == nil {
				t.Error("unlocking alice unlocked bob")
			}
		})
	}
}

// TestUnlockPartial: on a store that cannot list keys, an unlock of a
// username reaches her username lock, not her username+IP locks, and
// says so plainly.
func TestUnlockPartial(t *testing.T) {
	e := newAliceEnv(t, unlistable{newStore(t)})
	e.lockAlice()
	var apiErr struct{ Error, Message string }
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, http.StatusNotImplemented, &apiErr)
	if apiErr.Error != "partial" || !strings.Contains(apiErr.Message, "username and the IP together") {
		t.Errorf("%+v", apiErr)
	}
	resp, _ := e.do("POST", "/admin/lockout/unlock", "application/x-www-form-urlencoded", "username=alice", adminHeader, "yes")
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "problem=partial") {
		t.Fatalf("Location %q", loc)
	}
	if body := e.page(strings.TrimPrefix(loc, "./")); !strings.Contains(body, "Only partly done") {
		t.Errorf("no plain notice of the partial unlock:\n%s", body)
	}
	// Her username+IP lock from clientA remains until it is named.
	if w := post(e.login, clientA+":1", "alice", alicePassword); w.Code != http.StatusTooManyRequests {
		t.Errorf("username+IP lock lifted on an unlistable store? %d", w.Code)
	}
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice","ip":"`+clientA+`"}`, 200, nil)
	if w := post(e.login, clientA+":1", "alice", alicePassword); w.Code != http.StatusOK {
		t.Errorf("after unlocking alice at %s: %d", clientA, w.Code)
	}
}

// TestStatusAlsoLocked: a username's status lists her username+IP locks,
// which an unlock of her lifts too.
func TestStatusAlsoLocked(t *testing.T) {
	e := newAliceEnv(t, nil)
	e.lockAlice()
	st := e.status("alice", "")
	if len(st.Rules) != 1 || len(st.AlsoLocked) != 2 {
		t.Fatalf("status %+v", st)
	}
	for _, lk := range st.AlsoLocked {
		if lk.Rule != "username+ip" || !strings.HasPrefix(lk.Subject, "u=alice,ip=") {
			t.Errorf("also locked %+v", lk)
		}
	}
	if st := e.status("alice", clientA); len(st.Rules) != 2 || len(st.AlsoLocked) != 0 {
		t.Errorf("status of alice at %s: %+v", clientA, st)
	}
	body := e.page("?username=alice")
	if !strings.Contains(body, "also holds this subject") || !strings.Contains(body, "u=alice,ip="+clientB) {
		t.Errorf("page lacks alice's other locks:\n%s", body)
	}
}

// TestResetConfirm: the page asks before a reset or a reset-all, and
// does nothing until confirmed; the API's reset-all wants confirm=yes.
func TestResetConfirm(t *testing.T) {
	for _, tt := range []struct {
		name, path, body string
		confirmPage      string // the confirmation page's marker, or "" for an API call
		wantStatus       int
		wantReset        bool
	}{
		{"page reset, unconfirmed", "/admin/lockout/reset", "username=alice", "Reset this subject?", 200, false},
		{"page reset, confirmed", "/admin/lockout/reset", "username=alice&confirm=yes", "", http.StatusSeeOther, true},
		{"page reset-all, unconfirmed", "/admin/lockout/reset-all", "", "Reset everything?", 200, false},
		{"page reset-all, confirm=no", "/admin/lockout/reset-all", "confirm=no", "Reset everything?", 200, false},
		{"page reset-all, confirmed", "/admin/lockout/reset-all", "confirm=yes", "", http.StatusSeeOther, true},
		{"api reset-all, unconfirmed", "/admin/lockout/api/reset-all", "", "", 400, false},
		{"api reset-all, confirmed", "/admin/lockout/api/reset-all", "confirm=yes", "", 200, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newAliceEnv(t, nil)
			e.lockAlice()
			resp, body := e.do("POST", tt.path, "application/x-www-form-urlencoded", tt.body, adminHeader, "yes", "Sec-Fetch-Site", "same-origin")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if tt.confirmPage != "" {
				for _, want := range []string{tt.confirmPage, `name="confirm" value="yes"`, "Cancel"} {
					if !strings.Contains(body, want) {
						t.Errorf("confirmation page lacks %q:\n%s", want, body)
					}
				}
			}
			if strings.Contains(tt.path, "api/") && !tt.wantReset && !strings.Contains(body, "confirm_required") {
				t.Errorf("body %s", body)
			}
			st := e.status("alice", clientA)
			u := ruleState(t, st, "username")
			reset := !u.Locked && u.Lockouts == 0
			if reset != tt.wantReset {
				t.Errorf("alice reset %v, want %v: %+v", reset, tt.wantReset, st)
			}
			if reset && strings.Contains(tt.path, "reset-all") {
				if _, err := e.p.Allow(bg, lockout.Subject{Username: "bob"}); err != nil {
					t.Errorf("bob still locked after reset-all: %v", err)
				}
			}
		})
	}
	// On a store that cannot list, reset-all says it cannot.
	e := newAliceEnv(t, unlistable{newStore(t)})
	var apiErr struct{ Error string }
	e.api("POST", "/admin/lockout/api/reset-all", "application/json", `{"confirm":true}`, http.StatusNotImplemented, &apiErr)
	if apiErr.Error != "unsupported" {
		t.Errorf("%+v", apiErr)
	}
}

// TestLookupByAnyField: the lookup form asks for every field the rules
// use, and a subject is found, and unlocked, by a user agent or a custom
// field.
func TestLookupByAnyField(t *testing.T) {
	rules := []lockout.Rule{lockout.ByFields(2, lockout.UserAgent), lockout.ByFields(2, "tenant"), lockout.ByUsername(5)}
	p := newPolicy(t, nil, lockout.Config{Rules: rules})
	e := serveOperator(t, p, lockouthttp.OperatorConfig{Authorize: isAdmin})
	for _, s := range []lockout.Subject{{UserAgent: "EvilBot/1.0"}, {Fields: map[string]string{"tenant": "acme"}}} {
		for range 2 {
			a, err := p.Allow(bg, s)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(bg)
		}
	}
	_, body := e.do("GET", "/admin/lockout/", "", "", adminHeader, "yes")
	for _, want := range []string{`name="username"`, `name="user_agent"`, `name="field.tenant"`} {
		if !strings.Contains(body, want) {
			t.Errorf("lookup form lacks %s", want)
		}
	}
	if strings.Contains(body, `name="ip"`) {
		t.Error("lookup form asks for an IP no rule uses")
	}
	for _, tt := range []struct {
		name, query, rule, unlock string
	}{
		{"user agent", "user_agent=EvilBot%2F1.0", "useragent", `{"user_agent":"EvilBot/1.0"}`},
		{"custom field", "field.tenant=acme", "tenant", `{"fields":{"tenant":"acme"}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var st lockouthttp.SubjectStatus
			e.api("GET", "/admin/lockout/api/status?"+tt.query, "", "", 200, &st)
			if r := ruleState(t, st, tt.rule); !r.Locked {
				t.Fatalf("status %+v", st)
			}
			_, body := e.do("GET", "/admin/lockout/?"+tt.query, "", "", adminHeader, "yes")
			if !strings.Contains(body, `<b class="locked">`) {
				t.Errorf("page shows no lock for %s:\n%s", tt.query, body)
			}
			e.api("POST", "/admin/lockout/api/unlock", "application/json", tt.unlock, 200, nil)
			e.api("GET", "/admin/lockout/api/status?"+tt.query, "", "", 200, &st)
			if r := ruleState(t, st, tt.rule); r.Locked {
				t.Errorf("still locked after unlock: %+v", st)
			}
		})
	}
}

// TestOperatorPageEscapesHostileValues: usernames, user agents and custom
// fields are shown escaped, in the groups, the lookup form and the
// confirmation page.
func TestOperatorPageEscapesHostileValues(t *testing.T) {
	rules := []lockout.Rule{lockout.ByUsername(1), lockout.ByFields(1, lockout.UserAgent), lockout.ByFields(1, "tenant")}
	p := newPolicy(t, nil, lockout.Config{Rules: rules})
	op := lockouthttp.NewOperator(p, lockouthttp.OperatorConfig{Authorize: isAdmin})
	// No spaces: a username with one is not allowed.
	hostile := []string{`<script>alert(1)</script>`, `"><img/src=x/onerror=alert(2)>`, `'onmouseover='alert(3)`}
	for _, h := range hostile {
		a, err := p.Allow(bg, lockout.Subject{Username: "u" + h, UserAgent: h + " x", Fields: map[string]string{"tenant": h}})
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(bg)
	}
	for _, tt := range []struct{ name, method, target, body string }{
		{"page", "GET", "/", ""},
		{"status", "GET", "/?" + url.Values{"username": {"u" + hostile[0]}, "user_agent": {hostile[1]}, "field.tenant": {hostile[2]}}.Encode(), ""},
		{"confirm", "POST", "/reset", url.Values{"username": {"u" + hostile[1]}, "user_agent": {hostile[0]}}.Encode()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			r.Header.Set(adminHeader, "yes")
			if tt.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			w := httptest.NewRecorder()
			op.ServeHTTP(w, r)
			body := w.Body.String()
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, body)
			}
			for _, bad := range []string{"<script>", "<img", "alert(2)>", `='alert`} {
				if strings.Contains(body, bad) {
					t.Errorf("unescaped %q in:\n%s", bad, body)
				}
			}
		})
	}
}

// TestStatusAlsoLockedCanonical: a status looked up by another spelling
// of the username ("ALICE", full width) reports the canonical username and
// finds her locks, as the unlock of that spelling lifts them, also when no
// rule is keyed by the username alone (whose key would tell the canonical
// form).
func TestStatusAlsoLockedCanonical(t *testing.T) {
	uip := lockout.ByUsernameAndIP(2)
	uip.Schedule = lockout.Fixed(time.Hour)
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{uip}})
	e := serveOperator(t, p, lockouthttp.OperatorConfig{Authorize: isAdmin})
	lock(t, p, "alice", clientA)
	for _, name := range []string{"alice", "ALICE", "Ａｌｉｃｅ"} {
		st := e.status(name, "")
		if st.Username != "alice" {
			t.Errorf("status of %q: username %q, want the canonical alice", name, st.Username)
		}
		if len(st.AlsoLocked) != 1 || st.AlsoLocked[0].Subject != "u=alice,ip="+clientA {
			t.Errorf("status of %q: also locked %+v, want alice's lock from %s", name, st.AlsoLocked, clientA)
		}
		_, body := e.do("GET", "/admin/lockout/?"+url.Values{"username": {name}}.Encode(), "", "", adminHeader, "yes")
		if !strings.Contains(body, "also holds this subject") {
			t.Errorf("page of %q lacks her lock", name)
		}
	}
}
