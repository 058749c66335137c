package lockouthttp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

// TestRefusalPage: a refused browser gets a page that says what happened,
// when to try again, and links back to the form; other clients get JSON.
func TestRefusalPage(t *testing.T) {
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tt := range []struct {
		name     string
		schedule lockout.Schedule
		formURL  string
		accept   string
		html     bool
		want     []string
		wantNot  []string
	}{
		{"browser, timed lock", lockout.Fixed(4 * time.Minute), "", browser, true,
			[]string{"<title>Login locked</title>", "Too many failed login attempts. Try again in 4 minutes.", "You can try again at <b>", " UTC</b>", `<a href="/login">Back to the login form</a>`},
			[]string{"administrator"}},
		{"browser, form elsewhere", lockout.Fixed(30 * time.Second), "/sign-in?next=%2Fhome", browser, true,
			[]string{"Try again in 30 seconds.", `<a href="/sign-in?next=%2Fhome">Back to the login form</a>`}, nil},
		{"browser, forever", lockout.List(lockout.Forever), "", browser, true,
			[]string{"until an administrator unlocks it", `href="/login"`},
			[]string{"Try again in", "You can try again at"}},
		{"json client", lockout.Fixed(4 * time.Minute), "", "application/json", false,
			[]string{`"error":"login_refused"`, `"reason":"locked"`, `"retry_after":240`, "Try again in 4 minutes."},
			[]string{"<", "Back to"}},
		{"no Accept", lockout.List(lockout.Forever), "", "", false,
			[]string{`"reason":"locked"`, "until an administrator unlocks it"},
			[]string{"retry_after", "<"}},
		{"curl's */*", lockout.Fixed(time.Minute), "", "*/*", false, []string{`"retry_after":60`}, []string{"<"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := lockout.ByUsername(1)
			r.Schedule = tt.schedule
			p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{r}})
			h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username"), FormURL: tt.formURL}).Wrap(&login{})
			post(h, client, "alice", "wrong")
			w := post(h, client, "alice", alicePassword, "Accept", tt.accept)
			body := w.Body.String()
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("%d %s", w.Code, body)
			}
			ct := w.Header().Get("Content-Type")
			if got := strings.HasPrefix(ct, "text/html"); got != tt.html {
				t.Errorf("Content-Type %q, want HTML %v", ct, tt.html)
			}
			if !tt.html && !json.Valid([]byte(body)) {
				t.Errorf("not JSON: %s", body)
			}
			for _, want := range tt.want {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			for _, bad := range tt.wantNot {
				if strings.Contains(body, bad) {
					t.Errorf("body has %q:\n%s", bad, body)
				}
			}
		})
	}
}

func TestRefusalMessage(t *testing.T) {
	for _, tt := range []struct {
		err         lockout.RefusedError
		title, want string
	}{
		{lockout.RefusedError{Reason: lockout.ReasonLocked, RetryAfter: 4 * time.Minute}, "Login locked", "Too many failed login attempts. Try again in 4 minutes."},
		{lockout.RefusedError{Reason: lockout.ReasonLocked, RetryAfter: 1500 * time.Millisecond}, "Login locked", "Try again in 2 seconds."},
		{lockout.RefusedError{Reason: lockout.ReasonLocked, Forever: true}, "Login locked", "until an administrator unlocks it."},
		{lockout.RefusedError{Reason: lockout.ReasonCapacity, RetryAfter: time.Minute}, "Too many attempts", "at once. Try again in 60 seconds."},
		{lockout.RefusedError{Reason: lockout.ReasonDenylisted}, "Login not allowed", "not allowed"},
		{lockout.RefusedError{Reason: lockout.ReasonUnavailable}, "Login unavailable", "temporarily unavailable"},
	} {
		title, msg := lockouthttp.RefusalMessage(&tt.err)
		if title != tt.title || !strings.Contains(msg, tt.want) {
			t.Errorf("%v: %q %q, want %q and %q", &tt.err, title, msg, tt.title, tt.want)
		}
	}
}

// TestRefusalPageLinkStaysOnSite: the default link back is the request's
// path, never another host's.
func TestRefusalPageLinkStaysOnSite(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(1)}})
	h := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")}).Wrap(&login{})
	post(h, client, "alice", "wrong")
	for _, tt := range []struct{ path, want string }{
		{"/login", `href="/login"`},
		{"//evil.example/login", `href="/"`},
		{`/\evil.example/login`, `href="/"`},
	} {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password=x"))
		r.URL.Path = tt.path
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Accept", "text/html")
		r.RemoteAddr = client
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("path %q: body lacks %s:\n%s", tt.path, tt.want, w.Body)
		}
	}
}
