package lockouthttp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

// TestDeviceCookie: a successful login sets the device cookie (Secure,
// HttpOnly, SameSite=Lax); a failed one does not; with the cookie, alice
// logs in while untrusted clients' failures keep her username locked.
func TestDeviceCookie(t *testing.T) {
	p := newPolicy(t, nil, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(3)},
		Devices: &lockout.DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{'k'}, lockout.MinSecretLen)}},
	})
	mw := lockouthttp.NewMiddleware(p, lockouthttp.Config{Username: lockouthttp.FormField("username")})
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "right" {
			http.Error(w, "wrong", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/home", http.StatusSeeOther)
	}))
	post := func(password string, cookie *http.Cookie) *http.Response {
		form := url.Values{"username": {"alice"}, "password": {password}}
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	if res := post("wrong", nil); len(res.Cookies()) != 0 {
		t.Errorf("a failed login set cookies: %v", res.Cookies())
	}
	res := post("right", nil)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("successful login: status %d, cookies %v; want 303 and the device cookie", res.StatusCode, res.Cookies())
	}
	c := res.Cookies()[0]
	if c.Name != lockouthttp.DefaultDeviceCookie || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge <= 0 {
		t.Errorf("device cookie %+v: want %s, Secure, HttpOnly, SameSite=Lax, a MaxAge", c, lockouthttp.DefaultDeviceCookie)
	}
	for range 10 {
		post("guess", nil)
	}
	if res := post("right", nil); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("untrusted client after the attack: status %d, want 429", res.StatusCode)
	}
	forged := *c
	forged.Value = strings.Repeat("A", len(c.Value))
	if res := post("right", &forged); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("forged cookie after the attack: status %d, want 429", res.StatusCode)
	}
	res = post("right", &http.Cookie{Name: c.Name, Value: c.Value})
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("known device after the attack: status %d, want 303", res.StatusCode)
	}
	if len(res.Cookies()) != 1 || res.Cookies()[0].Value == "" {
		t.Errorf("known device's login: cookies %v, want a refreshed device cookie", res.Cookies())
	}
}
