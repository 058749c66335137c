package lockouthttp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

const (
	client  = "198.51.100.7:4321"
	clientA = "198.51.100.7"
)

func refusalBody(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return m
}

func TestAdmittedSuccessAndFailure(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(10)}})
	l := &login{}
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
	alice := lockout.Subject{Username: "alice", IP: clientA}

	if w := post(h, client, "alice", "wrong"); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", w.Code)
	}
	if st := ruleStatus(t, p, alice, "username"); st.Attempts != 1 {
		t.Errorf("after a failure: %v, want 1 attempt", st)
	}
	if w := post(h, client, "Alice", alicePassword); w.Code != http.StatusUnauthorized {
		t.Fatalf("Alice (the handler knows only alice): %d, want 401", w.Code)
	}
	if st := ruleStatus(t, p, alice, "username"); st.Attempts != 2 {
		t.Errorf("Alice and alice share a counter: %v, want 2 attempts", st)
	}
	if w := post(h, client, "alice", alicePassword); w.Code != http.StatusOK || w.Body.String() != "welcome\n" {
		t.Fatalf("right password: %d %q", w.Code, w.Body)
	}
	if st := ruleStatus(t, p, alice, "username"); st.Attempts != 0 {
		t.Errorf("a success resets the username counter: %v", st)
	}
	if st := ruleStatus(t, p, alice, "ip"); st.Attempts != 2 {
		t.Errorf("a success only gives back its own reservation on the IP rule: %v, want 2", st)
	}
	if n := l.verified.Load(); n != 3 {
		t.Errorf("%d verifications, want 3", n)
	}
}

func TestLockedRefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsername(3)
		r.Schedule = lockout.Fixed(time.Minute)
		p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{r}})
		l := &login{}
		h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
		for i := range 3 {
			if w := post(h, client, "alice", "wrong"); w.Code != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d", i+1, w.Code)
			}
		}
		for _, tt := range []struct {
			wait time.Duration
			want string
		}{
			{0, "60"},
			{time.Millisecond, "60"},        // 59.999 s left
			{1499 * time.Millisecond, "59"}, // 58.5 s left
			{58 * time.Second, "1"},         // 0.5 s left
			{499 * time.Millisecond, "1"},   // 1 ms left
		} {
			time.Sleep(tt.wait)
			w := post(h, client, "alice", alicePassword)
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("locked: %d, want 429", w.Code)
			}
			if got := w.Header().Get("Retry-After"); got != tt.want {
				t.Errorf("Retry-After %q, want %q", got, tt.want)
			}
			m := refusalBody(t, w)
			if m["error"] != "login_refused" || m["reason"] != "locked" || fmt.Sprint(m["retry_after"]) != tt.want {
				t.Errorf("body %v", m)
			}
		}
		if n := l.verified.Load(); n != 3 {
			t.Errorf("%d verifications, want 3: a locked attempt must not reach the handler", n)
		}

		// HTML for browsers.
		w := post(h, client, "alice", "x", "Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
		if ct := w.Header().Get("Content-Type"); w.Code != 429 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(w.Body.String(), "Try again in 1 second") {
			t.Errorf("HTML refusal: %d %q %q", w.Code, ct, w.Body)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Vary") != "Accept" {
			t.Errorf("headers %v", w.Header())
		}

		time.Sleep(time.Millisecond) // the lock ends
		if w := post(h, client, "alice", alicePassword); w.Code != http.StatusOK {
			t.Fatalf("after the lock: %d", w.Code)
		}
	})
}

func TestForeverLockAndCapacity(t *testing.T) {
	r := lockout.ByUsername(1)
	r.Schedule = lockout.List(lockout.Forever)
	r.Window = 10 * time.Minute
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{r}})
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(&login{})

	post(h, client, "alice", "wrong")
	w := post(h, client, "alice", alicePassword)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "" {
		t.Errorf("forever lock: %d, Retry-After %q; want 429 without", w.Code, w.Header().Get("Retry-After"))
	}
	if m := refusalBody(t, w); m["reason"] != "locked" || m["retry_after"] != nil {
		t.Errorf("forever lock body %v", m)
	}

	// Capacity: bob's only slot is held by an attempt in flight.
	if _, err := p.Allow(bg, lockout.Subject{Username: "bob"}); err != nil {
		t.Fatal(err)
	}
	w = post(h, client, "bob", "x")
	if m := refusalBody(t, w); w.Code != http.StatusTooManyRequests || m["reason"] != "capacity" {
		t.Errorf("capacity: %d %v", w.Code, m)
	}
	if got := w.Header().Get("Retry-After"); got != "600" && got != "599" {
		t.Errorf("capacity Retry-After %q, want the window's 600 s", got)
	}
}

func TestDenylisted(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{
		Rules:         []lockout.Rule{lockout.ByUsername(3)},
		DenyIPs:       []string{"203.0.113.0/24"},
		DenyUsernames: []string{"mallory"},
	})
	l := &login{}
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
	for _, tt := range []struct{ remote, user string }{
		{"203.0.113.9:1", "alice"},
		{client, "Mallory"},
	} {
		w := post(h, tt.remote, tt.user, alicePassword)
		if w.Code != http.StatusForbidden || w.Header().Get("Retry-After") != "" {
			t.Errorf("%s from %s: %d, Retry-After %q; want 403 without", tt.user, tt.remote, w.Code, w.Header().Get("Retry-After"))
		}
		if m := refusalBody(t, w); m["reason"] != "denylisted" {
			t.Errorf("body %v", m)
		}
	}
	if n := l.verified.Load(); n != 0 {
		t.Errorf("%d verifications of denylisted attempts", n)
	}
}

func TestBackendDown(t *testing.T) {
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(3)}
	t.Run("fallback", func(t *testing.T) {
		// The default: an in-process store decides, with the same limits.
		var backendErrors int
		p := newPolicy(t, downStore{}, lockout.Config{Rules: rules,
			Hooks: lockout.Hooks{BackendError: func(_ context.Context, err error) { backendErrors++ }}})
		l := &login{}
		h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
		for range 3 {
			if w := post(h, client, "alice", "wrong"); w.Code != http.StatusUnauthorized {
				t.Fatalf("wrong password while the store is down: %d, want the handler's 401", w.Code)
			}
		}
		for _, pw := range []string{"wrong", alicePassword} {
			if w := post(h, client, "alice", pw); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
				t.Fatalf("after the limit, while the store is down: %d, Retry-After %q; want 429 with one", w.Code, w.Header().Get("Retry-After"))
			}
		}
		if l.verified.Load() != 3 || backendErrors != 1 {
			t.Errorf("%d verifications, %d backend errors; want 3 and 1 (the breaker opens on the first)", l.verified.Load(), backendErrors)
		}
	})
	t.Run("admit uncounted", func(t *testing.T) {
		var backendErrors int
		p := newPolicy(t, downStore{}, lockout.Config{Rules: rules, Outage: lockout.AdmitUncounted,
			Hooks: lockout.Hooks{BackendError: func(_ context.Context, err error) { backendErrors++ }}})
		l := &login{}
		h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
		for range 5 {
			if w := post(h, client, "alice", "wrong"); w.Code != http.StatusUnauthorized {
				t.Fatalf("wrong password while the store is down: %d, want the handler's 401", w.Code)
			}
		}
		if w := post(h, client, "alice", alicePassword); w.Code != http.StatusOK {
			t.Fatalf("right password while the store is down: %d", w.Code)
		}
		if l.verified.Load() != 6 || backendErrors != 1 {
			t.Errorf("%d verifications, %d backend errors; want 6 and 1", l.verified.Load(), backendErrors)
		}
	})
	t.Run("fail closed", func(t *testing.T) {
		p := newPolicy(t, downStore{}, lockout.Config{Rules: rules, Outage: lockout.FailClosed})
		l := &login{}
		h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
		w := post(h, client, "alice", alicePassword)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "" {
			t.Fatalf("fail closed: %d, Retry-After %q; want 503 without", w.Code, w.Header().Get("Retry-After"))
		}
		if m := refusalBody(t, w); m["reason"] != "unavailable" {
			t.Errorf("body %v", m)
		}
		if l.verified.Load() != 0 {
			t.Error("the handler ran while the policy fails closed")
		}
	})
}

// failUntilRefused posts wrong passwords until a refusal and returns how many
// were admitted; headers are made per request.
func failUntilRefused(t *testing.T, h http.Handler, remote string, headers func(i int) []string) int {
	t.Helper()
	for i := range 100 {
		w := post(h, remote, "", "wrong", headers(i)...)
		switch w.Code {
		case http.StatusTooManyRequests:
			return i
		case http.StatusUnauthorized:
		default:
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	t.Fatal("never refused")
	return 0
}

func TestForgedXForwardedForIgnored(t *testing.T) {
	res, err := lockouthttp.NewIPResolver(lockouthttp.HeaderXForwardedFor, netip.MustParsePrefix("10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		clientIP func(*http.Request) (netip.Addr, error)
	}{
		{"peer only", nil},
		{"resolver, untrusted peer", res.ClientIP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(3)}})
			h := lockouthttp.NewMiddleware(p, lockouthttp.Config{ClientIP: tt.clientIP}).Wrap(&login{})
			n := failUntilRefused(t, h, client, func(i int) []string {
				// A fresh address every time, and ones that look like trusted proxies.
				return []string{"X-Forwarded-For", fmt.Sprintf("203.0.113.%d, 10.0.0.%d", i, i), "X-Real-IP", fmt.Sprintf("203.0.113.%d", i)}
			})
			if n != 3 {
				t.Errorf("refused after %d failures, want 3: the forged headers earned fresh counters", n)
			}
			if st := ruleStatus(t, p, lockout.Subject{IP: clientA}, "ip"); !st.Locked {
				t.Errorf("the peer is not locked: %v", st)
			}
		})
	}
}

func TestTrustedChain(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	for _, tt := range []struct {
		header string
		value  func(i int) string
	}{
		{lockouthttp.HeaderXForwardedFor, func(i int) string { return fmt.Sprintf("192.0.2.%d, 203.0.113.5:%d, 10.1.1.1", i, 1000+i) }},
		{lockouthttp.HeaderForwarded, func(i int) string {
			return fmt.Sprintf(`for=192.0.2.%d, for="203.0.113.5:%d";proto=https, for="[2001:db8:ffff::2]"`, i, 1000+i)
		}},
		{lockouthttp.HeaderXRealIP, func(int) string { return "203.0.113.5" }},
	} {
		t.Run(tt.header, func(t *testing.T) {
			res, err := lockouthttp.NewIPResolver(tt.header, trusted...)
			if err != nil {
				t.Fatal(err)
			}
			p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(3)}})
			h := lockouthttp.NewMiddleware(p, lockouthttp.Config{ClientIP: res.ClientIP}).Wrap(&login{})
			n := failUntilRefused(t, h, "10.0.0.1:443", func(i int) []string { return []string{tt.header, tt.value(i)} })
			if n != 3 {
				t.Errorf("refused after %d failures, want 3", n)
			}
			if st := ruleStatus(t, p, lockout.Subject{IP: "203.0.113.5"}, "ip"); !st.Locked {
				t.Errorf("203.0.113.5 is not locked: %v", st)
			}
			// Another client behind the same proxy is not affected, nor is the proxy.
			if w := post(h, "10.0.0.1:443", "alice", alicePassword, tt.header, strings.ReplaceAll(tt.value(0), "203.0.113.5", "203.0.113.6")); w.Code != http.StatusOK {
				t.Errorf("another client behind the proxy: %d", w.Code)
			}
			if st := ruleStatus(t, p, lockout.Subject{IP: "10.0.0.1"}, "ip"); st.Attempts != 0 || st.Locked {
				t.Errorf("the proxy was counted: %v", st)
			}
		})
	}
}

func TestIPv6PrefixSharesCounter(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(4)}})
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{}).Wrap(&login{})
	n := failUntilRefused(t, &rotating{h: h}, "", func(int) []string { return nil })
	if n != 4 {
		t.Errorf("refused after %d failures from one /64, want 4", n)
	}
	if w := post(h, "[2001:db8:1:2:abcd::99]:5", "alice", alicePassword); w.Code != http.StatusTooManyRequests {
		t.Errorf("a fifth address in the /64: %d, want 429", w.Code)
	}
	if w := post(h, "[2001:db8:1:3::1]:5", "alice", alicePassword); w.Code != http.StatusOK {
		t.Errorf("the next /64: %d, want 200", w.Code)
	}
	if st := ruleStatus(t, p, lockout.Subject{IP: "2001:db8:1:2::"}, "ip"); !st.Locked || st.Key != "ip=2001:db8:1:2::/64" {
		t.Errorf("status %v", st)
	}
}

// rotating sends each request from another address of 2001:db8:1:2::/64.
type rotating struct {
	h http.Handler
	n int
}

func (r *rotating) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.n++
	req.RemoteAddr = fmt.Sprintf("[2001:db8:1:2:%x::%x]:443", r.n*977, r.n)
	r.h.ServeHTTP(w, req)
}

func TestJSONUsernameKeepsBody(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
	var seen []string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var creds struct{ Username, Password string }
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, string(body))
		if err := json.Unmarshal(body, &creds); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		if s, _ := lockouthttp.SubjectFromContext(r.Context()); s.Username != creds.Username {
			t.Errorf("SubjectFromContext: %q, the body: %q", s.Username, creds.Username)
		}
		if creds.Username == "alice" && creds.Password == alicePassword {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	})
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.JSONField("username")}).Wrap(handler)
	send := func(body string) int {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	bodies := []string{
		`{"username":"alice","password":"nope"}`,
		`{"password":"nope","username":"alice","padding":"` + strings.Repeat("x", 100000) + `"}`,
	}
	for _, b := range bodies {
		if code := send(b); code != http.StatusUnauthorized {
			t.Fatalf("failure: %d", code)
		}
	}
	if len(seen) != 2 || seen[0] != bodies[0] || seen[1] != bodies[1] {
		t.Errorf("the handler did not read the bodies as sent")
	}
	if st := ruleStatus(t, p, lockout.Subject{Username: "alice"}, "username"); st.Attempts != 2 {
		t.Errorf("status %v, want 2 attempts under alice", st)
	}
	if code := send(`{"username":"alice","password":"` + alicePassword + `"}`); code != http.StatusNoContent {
		t.Fatalf("success: %d", code)
	}
	// Ambiguous names never reach the handler.
	if code := send(`{"username":"alice","Username":"bob","password":"x"}`); code != http.StatusBadRequest || len(seen) != 3 {
		t.Errorf("ambiguous body: %d, handler ran %d times", code, len(seen))
	}
	if code := send(`{"username":"alice"`); code != http.StatusBadRequest || len(seen) != 3 {
		t.Errorf("malformed body: %d", code)
	}
	if code := send(`{"username":"alice","padding":"` + strings.Repeat("x", lockouthttp.MaxBodyBytes) + `"}`); code != http.StatusRequestEntityTooLarge || len(seen) != 3 {
		t.Errorf("large body: %d", code)
	}
}

func TestBasicAuthUsername(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2)}})
	l := &login{username: func(r *http.Request) string { u, _, _ := r.BasicAuth(); return u }}
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.BasicAuth}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		r.Form = map[string][]string{"password": {pw}}
		l.ServeHTTP(w, r)
	}))
	send := func(user, pw string) int {
		r := httptest.NewRequest("POST", "/login", nil)
		r.SetBasicAuth(user, pw)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if send("alice", "x") != 401 || send("ALICE", "y") != 401 {
		t.Fatal("failures not answered 401")
	}
	if code := send("alice", alicePassword); code != http.StatusTooManyRequests {
		t.Errorf("after 2 failures: %d, want 429", code)
	}
	if code := send("bob", "x"); code != http.StatusUnauthorized {
		t.Errorf("bob: %d, want 401", code)
	}
}

func TestIndistinguishable(t *testing.T) {
	rules := []lockout.Rule{lockout.ByUsername(2)}
	for _, tt := range []struct {
		name string
		cfg  lockout.Config
	}{
		{name: "locked", cfg: lockout.Config{Rules: rules}},
		{name: "denylisted", cfg: lockout.Config{Rules: rules, DenyUsernames: []string{"alice"}}},
		{name: "unavailable", cfg: lockout.Config{Rules: rules, Outage: lockout.FailClosed}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p *lockout.Policy
			if tt.name == "unavailable" {
				p = newPolicy(t, downStore{}, tt.cfg)
			} else {
				p = newPolicy(t, nil, tt.cfg)
			}
			l := &login{}
			h := lockouthttp.NewMiddleware(p, lockouthttp.Config{
				Username: lockouthttp.FormField("username"),
				Conceal:  http.HandlerFunc(writeWrongPassword),
			}).Wrap(l)
			// A wrong password, answered by the login handler.
			wrong := post(h, client, "bob", "x")
			if wrong.Code != http.StatusUnauthorized && tt.name == "locked" {
				t.Fatalf("wrong password: %d", wrong.Code)
			}
			if tt.name == "locked" {
				post(h, client, "alice", "x")
				post(h, client, "alice", "x")
			}
			verified := l.verified.Load()
			refused := post(h, client, "alice", alicePassword)
			if l.verified.Load() != verified {
				t.Fatal("the refused attempt reached the handler")
			}
			want := httptest.NewRecorder()
			writeWrongPassword(want, nil)
			if refused.Code != want.Code || refused.Body.String() != want.Body.String() {
				t.Errorf("refusal %d %q, want the wrong-password answer %d %q", refused.Code, refused.Body, want.Code, want.Body)
			}
			if fmt.Sprint(refused.Header()) != fmt.Sprint(want.Header()) {
				t.Errorf("refusal headers %v, want %v", refused.Header(), want.Header())
			}
		})
	}
}

func TestInvalidSubject(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(3)}})
	l := &login{}
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
	for _, tt := range []struct{ remote, user string }{
		{"not-an-ip", "alice"},
		{"@", "alice"},
		{client, "alice smith"}, // PRECIS rejects spaces
		{client, "\x00"},
	} {
		w := post(h, tt.remote, tt.user, "x")
		if w.Code != http.StatusBadRequest {
			t.Errorf("%q from %q: %d, want 400", tt.user, tt.remote, w.Code)
		}
		if m := refusalBody(t, w); m["error"] != "bad_request" || strings.Contains(w.Body.String(), tt.user) {
			t.Errorf("body %s", w.Body)
		}
	}
	w := post(h, "not-an-ip", "alice", "x", "Accept", "text/html")
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || w.Code != 400 {
		t.Errorf("HTML: %d %v", w.Code, w.Header())
	}
	if l.verified.Load() != 0 {
		t.Error("the handler ran for an invalid subject")
	}

	// A UsernameFunc's own error is a 500, and goes to Config.Error.
	var got error
	h = lockouthttp.NewMiddleware(p, lockouthttp.Config{
		Username: func(*http.Request) (string, error) { return "", errDown },
		Error: func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			lockouthttp.DefaultError(w, r, err)
		},
	}).Wrap(l)
	if w := post(h, client, "alice", "x"); w.Code != http.StatusInternalServerError || !errors.Is(got, errDown) {
		t.Errorf("UsernameFunc error: %d, %v", w.Code, got)
	}
}

func TestOutcome(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(100)}})
	alice := lockout.Subject{Username: "alice"}
	attempts := func() int64 { return ruleStatus(t, p, alice, "username").Attempts }
	run := func(cfg lockouthttp.Config, handler http.HandlerFunc) {
		t.Helper()
		cfg.Username = lockouthttp.FormField("username")
		h := lockouthttp.NewMiddleware(p, cfg).Wrap(handler)
		func() {
			defer func() {
				if v := recover(); v != nil && v != "boom" {
					panic(v)
				}
			}()
			post(h, client, "alice", "x")
		}()
	}
	for _, tt := range []struct {
		name    string
		cfg     lockouthttp.Config
		handler http.HandlerFunc
		success bool
	}{
		{"200", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }, true},
		{"204", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, true},
		// A redirect is as often the answer to a wrong password: a
		// success only when the handler says so.
		{"302", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/home", http.StatusFound) }, false},
		{"303 back to the form", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login?error=1", http.StatusSeeOther)
		}, false},
		{"303 after SetOutcome true", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			lockouthttp.SetOutcome(r, true)
			http.Redirect(w, r, "/home", http.StatusSeeOther)
		}, true},
		{"implicit 200 by Write", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) }, true},
		{"400", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }, false},
		{"500", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, false},
		{"nothing written", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {}, false},
		{"103 then 401", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(103); w.WriteHeader(401) }, false},
		{"103 then 200", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(103); w.WriteHeader(200) }, true},
		{"panic", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200); panic("boom") }, false},
		{"SetOutcome false", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			lockouthttp.SetOutcome(r, false)
			w.WriteHeader(200)
		}, false},
		{"SetOutcome true", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			lockouthttp.SetOutcome(r, true)
			w.WriteHeader(401)
		}, true},
		{"Succeeded", lockouthttp.Config{Succeeded: func(r *http.Request, status int, h http.Header) bool {
			return status == 200 && h.Get("Set-Cookie") != ""
		}}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }, false},
		{"Succeeded with cookie", lockouthttp.Config{Succeeded: func(r *http.Request, status int, h http.Header) bool {
			return status == 200 && h.Get("Set-Cookie") != ""
		}}, func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "x"})
			w.WriteHeader(200)
		}, true},
		{"flush", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := attempts()
			run(tt.cfg, tt.handler)
			got := attempts()
			if tt.success && got != 0 {
				t.Errorf("attempts %d after a success, want 0", got)
			}
			if !tt.success && got != before+1 {
				t.Errorf("attempts %d after a failure, want %d", got, before+1)
			}
		})
	}
	lockouthttp.SetOutcome(httptest.NewRequest("GET", "/", nil), true) // outside a middleware: nothing
}

// TestResponseController checks, over a real connection, that the status
// writer lets a handler flush, set deadlines and stream through
// http.ResponseController.
func TestResponseController(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByIP(5)}})
	flushed := make(chan struct{})
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		if _, ok := w.(http.Flusher); !ok {
			t.Error("not an http.Flusher")
		}
		w.Write([]byte("first\n"))
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-flushed
		w.Write([]byte("second\n"))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	close(flushed)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Errorf("second chunk %q", rest)
	}
	if st := ruleStatus(t, p, lockout.Subject{IP: "127.0.0.1"}, "ip"); st.Attempts != 0 {
		t.Errorf("a streamed 200 counted as a failure: %v", st)
	}
}

func TestSubjectFields(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByFields(2, "tenant", lockout.Username)}})
	var got lockout.Subject
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{
		Username: lockouthttp.FormField("username"),
		Subject: func(r *http.Request, s *lockout.Subject) error {
			s.Fields = map[string]string{"tenant": r.Header.Get("X-Tenant")}
			return nil
		},
	}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = lockouthttp.SubjectFromContext(r.Context())
		w.WriteHeader(401)
	}))
	post(h, client, "alice", "x", "X-Tenant", "acme", "User-Agent", "test/1")
	if got.Username != "alice" || got.IP != clientA || got.UserAgent != "test/1" || got.Fields["tenant"] != "acme" {
		t.Errorf("subject %+v", got)
	}
	post(h, client, "alice", "x", "X-Tenant", "acme")
	if w := post(h, client, "alice", "x", "X-Tenant", "acme"); w.Code != 429 {
		t.Errorf("third failure for acme/alice: %d", w.Code)
	}
	if w := post(h, client, "alice", "x", "X-Tenant", "other"); w.Code != 401 {
		t.Errorf("other tenant: %d", w.Code)
	}
	if _, ok := lockouthttp.SubjectFromContext(bg); ok {
		t.Error("SubjectFromContext outside a middleware")
	}
}

func TestPrefersHTML(t *testing.T) {
	for _, tt := range []struct {
		accept string
		html   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"text/html", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"application/json, text/html;q=0.9", false},
		{"text/html;q=0.5, application/json;q=0.4", true},
		{"text/*, application/json;q=0.1", true},
		{"text/html;q=0, */*", false},
		{"text/html;q=nonsense, application/json;q=0.1", false},
		{"TEXT/HTML", true},
		{"garbage", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if got := lockouthttp.PrefersHTML(r); got != tt.html {
			t.Errorf("PrefersHTML(%q) = %v", tt.accept, got)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		err  lockout.RefusedError
		want int64
	}{
		{lockout.RefusedError{RetryAfter: time.Minute}, 60},
		{lockout.RefusedError{RetryAfter: time.Minute - time.Nanosecond}, 60},
		{lockout.RefusedError{RetryAfter: time.Minute + time.Nanosecond}, 61},
		{lockout.RefusedError{RetryAfter: time.Nanosecond}, 1},
		{lockout.RefusedError{RetryAfter: 0}, 0},
		{lockout.RefusedError{Forever: true}, 0},
	} {
		if got := lockouthttp.RetryAfterSeconds(&tt.err); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tt.err.RetryAfter, got, tt.want)
		}
	}
}

// TestCrossOrigin: a login posted from another site's page (a browser
// says so with Sec-Fetch-Site or Origin) is refused with 403 before it is
// counted, so that a page cannot make its visitors lock out their own
// address and the usernames it names; same-site and non-browser requests
// count, and Config.CrossOrigin can trust an origin or let every request
// through.
func TestCrossOrigin(t *testing.T) {
	trusting := http.NewCrossOriginProtection()
	if err := trusting.AddTrustedOrigin("https://login.example.org"); err != nil {
		t.Fatal(err)
	}
	bypass := http.NewCrossOriginProtection()
	bypass.AddInsecureBypassPattern("/")
	tests := []struct {
		name    string
		cop     *http.CrossOriginProtection
		headers []string
		counted bool
	}{
		{"cross-site", nil, []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"same-site, another origin", nil, []string{"Sec-Fetch-Site", "same-site"}, false},
		{"foreign Origin", nil, []string{"Origin", "https://evil.example"}, false},
		{"same origin", nil, []string{"Sec-Fetch-Site", "same-origin"}, true},
		{"Origin of the host", nil, []string{"Origin", "http://example.com"}, true},
		{"no browser headers", nil, nil, true},
		{"trusted origin", trusting, []string{"Origin", "https://login.example.org", "Sec-Fetch-Site", "cross-site"}, true},
		{"untrusted origin, trusting another", trusting, []string{"Origin", "https://evil.example"}, false},
		{"bypass", bypass, []string{"Sec-Fetch-Site", "cross-site"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(10)}})
			l := &login{}
			h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username"), CrossOrigin: tt.cop}).Wrap(l)
			w := post(h, client, "alice", "wrong", tt.headers...)
			ip := ruleStatus(t, p, lockout.Subject{IP: clientA}, "ip")
			if tt.counted {
				if w.Code != http.StatusUnauthorized || l.verified.Load() != 1 || ip.Attempts != 1 {
					t.Errorf("%d, %d verified, %d counted; want 401, the password checked and counted", w.Code, l.verified.Load(), ip.Attempts)
				}
				return
			}
			if w.Code != http.StatusForbidden || l.verified.Load() != 0 || ip.Attempts != 0 {
				t.Errorf("%d, %d verified, %d counted; want 403, nothing checked or counted", w.Code, l.verified.Load(), ip.Attempts)
			}
			if m := refusalBody(t, w); m["error"] != "cross_origin" {
				t.Errorf("body %v, want error cross_origin", m)
			}
		})
	}
}

// TestBasicAuthMalformed: Basic credentials net/http cannot read are a 400,
// not an attempt without a username (which the username rules would not
// count, while a lenient handler checked alice's password); another scheme
// or none is an attempt without a username.
func TestBasicAuthMalformed(t *testing.T) {
	alice := base64.StdEncoding.EncodeToString([]byte("alice:x"))
	for _, tc := range []struct {
		name, header string
		want         int
		wantUser     string
	}{
		{"good", "Basic " + alice, 200, "alice"},
		{"lower-case scheme", "basic " + alice, 200, "alice"},
		{"unpadded", "Basic " + strings.TrimRight(base64.StdEncoding.EncodeToString([]byte("alice:xy")), "="), 400, ""},
		{"url-safe alphabet", "Basic " + base64.URLEncoding.EncodeToString([]byte("alice:??>")), 400, ""},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), 400, ""},
		{"double space", "Basic  " + alice, 400, ""},
		{"not base64", "Basic !!!", 400, ""},
		{"scheme alone", "Basic", 400, ""},
		{"tab", "Basic\t" + alice, 400, ""},
		{"bearer", "Bearer abc", 200, ""},
		{"none", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/login", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			u, err := lockouthttp.BasicAuth(r)
			code := 200
			if errors.Is(err, lockout.ErrInvalidSubject) {
				code = 400
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want || u != tc.wantUser {
				t.Errorf("BasicAuth(%q) = %q, %v; want %q, %d", tc.header, u, err, tc.wantUser, tc.want)
			}
		})
	}
}

// TestFormFieldAfterParseForm: a handler in front of the middleware that
// calls r.ParseForm (a CSRF check, a method override) leaves a multipart
// body unread, and r.Form without its fields; FormField still finds the
// username there, so the username's limit holds: at most 3 passwords
// checked, from 30 addresses.
func TestFormFieldAfterParseForm(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
	l := &login{}
	guarded := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(l)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		guarded.ServeHTTP(w, r)
	})
	for i := range 30 {
		var body bytes.Buffer
		mp := multipart.NewWriter(&body)
		mp.WriteField("username", "alice")
		mp.WriteField("password", fmt.Sprintf("guess %d", i))
		mp.Close()
		r := httptest.NewRequest("POST", "/login", &body)
		r.Header.Set("Content-Type", mp.FormDataContentType())
		r.RemoteAddr = fmt.Sprintf("198.51.100.%d:1234", i)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if n := l.verified.Load(); n != 3 {
		t.Errorf("%d of alice's passwords checked, want the limit, 3", n)
	}
}
