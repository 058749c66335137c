package lockouthttp_test

import (
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

// TestDjangoSettings covers the rows of the README's migration tables that
// lockouthttp answers: where the client address and the username come from,
// what a locked-out client is shown, and switching the protection off.
func TestDjangoSettings(t *testing.T) {
	proxy := netip.MustParsePrefix("10.0.0.1/32")
	resolver, err := lockouthttp.NewIPResolver(lockouthttp.HeaderXForwardedFor, proxy)
	if err != nil {
		t.Fatal(err)
	}
	lockedPage := template.Must(template.New("locked").Parse(`<p>Locked out: try again in {{.}} seconds.</p>`))
	tests := []struct {
		name   string
		policy func(t *testing.T) *lockout.Policy // default: a username rule and an IP rule, limit 2
		cfg    lockouthttp.Config
		run    func(t *testing.T, h http.Handler, l *login)
	}{
		{"BEHIND_REVERSE_PROXY, REVERSE_PROXY_HEADER, IPWARE_*: NewIPResolver", nil, lockouthttp.Config{ClientIP: resolver.ClientIP}, func(t *testing.T, h http.Handler, l *login) {
			// Two clients behind the proxy: one is locked out, the other is not.
			for range 2 {
				post(h, "10.0.0.1:4000", "", "guess", "X-Forwarded-For", "198.51.100.7")
			}
			if w := post(h, "10.0.0.1:4000", "", "guess", "X-Forwarded-For", "198.51.100.7"); w.Code != http.StatusTooManyRequests {
				t.Errorf("the locked client through the proxy: %d, want 429", w.Code)
			}
			if w := post(h, "10.0.0.1:4000", "", "guess", "X-Forwarded-For", "198.51.100.8"); w.Code != http.StatusUnauthorized {
				t.Errorf("another client through the proxy: %d, want 401", w.Code)
			}
			// A client that is not the proxy cannot choose its address.
			if w := post(h, "198.51.100.7:5000", "", "guess", "X-Forwarded-For", "203.0.113.1"); w.Code != http.StatusTooManyRequests {
				t.Errorf("the locked client, direct, with a forged header: %d, want 429", w.Code)
			}
		}},
		{"USERNAME_FORM_FIELD=email: FormField", nil, lockouthttp.Config{Username: lockouthttp.FormField("email")}, func(t *testing.T, h http.Handler, l *login) {
			send := func(remote string) int {
				form := url.Values{"email": {"alice@example.com"}, "password": {"guess"}}
				r, w := formRequest(form, remote)
				h.ServeHTTP(w, r)
				return w.Code
			}
			send("192.0.2.1:1")
			send("192.0.2.2:1")
			if code := send("192.0.2.3:1"); code != http.StatusTooManyRequests {
				t.Errorf("third failure for one email from a third address: %d, want 429 (the username is locked)", code)
			}
		}},
		{"LOCKOUT_TEMPLATE: Refused renders a template", nil, lockouthttp.Config{
			Refused: func(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusForbidden) // defender and axes answer 403 by default
				lockedPage.Execute(w, lockouthttp.RetryAfterSeconds(err))
			},
		}, func(t *testing.T, h http.Handler, l *login) {
			for range 2 {
				post(h, "192.0.2.1:1", "alice", "guess")
			}
			w := post(h, "192.0.2.1:1", "alice", "guess")
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "try again in 60 seconds") {
				t.Errorf("locked: %d %q, want 403 and the template", w.Code, w.Body.String())
			}
		}},
		{"LOCKOUT_URL: Refused redirects", nil, lockouthttp.Config{
			Refused: func(w http.ResponseWriter, r *http.Request, err *lockout.RefusedError) {
				http.Redirect(w, r, "/locked/", http.StatusSeeOther)
			},
		}, func(t *testing.T, h http.Handler, l *login) {
			for range 2 {
				post(h, "192.0.2.1:1", "alice", "guess")
			}
			w := post(h, "192.0.2.1:1", "alice", alicePassword)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/locked/" {
				t.Errorf("locked: %d to %q, want 303 to /locked/", w.Code, w.Header().Get("Location"))
			}
			if n := l.verified.Load(); n != 2 {
				t.Errorf("%d passwords verified, want 2: none while locked", n)
			}
		}},
		{"AXES_ENABLED=False: lockout.Disabled()", func(t *testing.T) *lockout.Policy {
			p := lockout.Disabled()
			t.Cleanup(func() { p.Close() })
			return p
		}, lockouthttp.Config{}, func(t *testing.T, h http.Handler, l *login) {
			for i := range 20 {
				if w := post(h, "192.0.2.1:1", "alice", "guess"); w.Code != http.StatusUnauthorized {
					t.Fatalf("failure %d: %d, want 401", i+1, w.Code)
				}
			}
			if w := post(h, "192.0.2.1:1", "alice", alicePassword); w.Code != http.StatusOK {
				t.Errorf("the right password after 20 failures: %d, want 200", w.Code)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p *lockout.Policy
			if tc.policy != nil {
				p = tc.policy(t)
			} else {
				rule := func(r lockout.Rule) lockout.Rule { r.Schedule = lockout.Fixed(time.Minute); return r }
				p = newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{rule(lockout.ByUsername(2)), rule(lockout.ByIP(2))}})
			}
			cfg := tc.cfg
			if cfg.Username == nil {
				cfg.Username = lockouthttp.FormField("username")
			}
			l := &login{}
			tc.run(t, lockouthttp.NewMiddleware(p, cfg).Wrap(l), l)
		})
	}
}

// formRequest returns a login form post from remote, and a recorder.
func formRequest(form url.Values, remote string) (*http.Request, *httptest.ResponseRecorder) {
	r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	return r, httptest.NewRecorder()
}
