package lockouthttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
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
		lockouthttp.SetOutcome(r, true) // a redirect: say it is a success
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
	// What a browser requires of a __Host- cookie, which no other host
	// can then set: Secure, Path /, no Domain.
	if !strings.HasPrefix(c.Name, "__Host-") || c.Path != "/" || c.Domain != "" || !c.Secure {
		t.Errorf("device cookie %+v: want a __Host- name, Path /, no Domain, Secure", c)
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

// TestOperatorLockDevice: api/lock-device locks one known device of a
// username, names the operator in the journal, and refuses bad input.
func TestOperatorLockDevice(t *testing.T) {
	ctx := context.Background()
	p := newPolicy(t, nil, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(3)},
		Devices: &lockout.DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{'k'}, lockout.MinSecretLen)}},
		Journal: &lockout.JournalConfig{},
	})
	a, err := p.Allow(ctx, lockout.Subject{Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	a.Success(ctx)
	token, _, err := a.DeviceToken()
	if err != nil {
		t.Fatal(err)
	}
	known := lockout.Subject{Username: "alice", DeviceToken: token}
	a, err = p.Allow(ctx, known)
	if err != nil {
		t.Fatal(err)
	}
	device := a.Device()
	a.Success(ctx)

	op := lockouthttp.NewOperator(p, lockouthttp.OperatorConfig{Authorize: isAdmin})
	post := func(contentType, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/api/lock-device", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set(adminHeader, "yes")
		req.Header.Set(operatorHeader, "carol")
		rec := httptest.NewRecorder()
		op.ServeHTTP(rec, req)
		return rec
	}
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
	}{
		{"no device", form, "username=alice&duration=1h", http.StatusBadRequest},
		{"no duration", form, "username=alice&device=" + device, http.StatusBadRequest},
		{"bad duration", form, "username=alice&device=" + device + "&duration=soon", http.StatusBadRequest},
		{"negative duration", form, "username=alice&device=" + device + "&duration=-1h", http.StatusBadRequest},
		{"bad device id", form, "username=alice&device=xyz&duration=1h", http.StatusBadRequest},
		{"bad JSON", "application/json", "{", http.StatusBadRequest},
	} {
		if rec := post(tc.contentType, tc.body); rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, rec.Code, tc.status, rec.Body)
		}
	}
	if _, err := p.Allow(ctx, known); err != nil {
		t.Fatalf("the device before its lock: %v", err)
	}
	body := fmt.Sprintf(`{"username": "alice", "device": %q, "duration": "forever"}`, device)
	if rec := post("application/json", body); rec.Code != http.StatusOK {
		t.Fatalf("lock-device: status %d: %s", rec.Code, rec.Body)
	}
	var refused *lockout.RefusedError
	if _, err := p.Allow(ctx, known); !errors.As(err, &refused) || refused.Reason != lockout.ReasonLocked || !refused.Forever {
		t.Errorf("the locked device: %v, want locked forever", err)
	}
	if _, err := p.Allow(ctx, lockout.Subject{Username: "alice"}); err != nil {
		t.Errorf("alice from an untrusted client after her device's lock: %v, want admitted", err)
	}
	if err := p.SyncJournal(ctx); err != nil {
		t.Fatal(err)
	}
	recs, _, err := p.Attempts(ctx, lockout.AttemptQuery{Outcome: "lockout"})
	if err != nil || len(recs) != 1 || recs[0].Operator != "carol" || recs[0].Via != "api" || recs[0].Duration != backend.NoExpiry {
		t.Errorf("journal's lockouts: %+v, %v; want one, forever, by carol through the api", recs, err)
	}

	plain := lockouthttp.NewOperator(newPolicy(t, nil, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}}), lockouthttp.OperatorConfig{Authorize: isAdmin})
	req := httptest.NewRequest(http.MethodPost, "/api/lock-device", strings.NewReader("username=alice&device="+device+"&duration=1h"))
	req.Header.Set("Content-Type", form)
	req.Header.Set(adminHeader, "yes")
	rec := httptest.NewRecorder()
	plain.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotImplemented {
		t.Errorf("a policy without devices: status %d, want 501", rec.Code)
	}
	req = httptest.NewRequest(http.MethodGet, "/api/lock-device", nil)
	req.Header.Set(adminHeader, "yes")
	rec = httptest.NewRecorder()
	op.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", rec.Code)
	}
}

// TestDeviceCookieNeedsExplicitSuccess: the default status rule never
// sets the device cookie, so that a failure page answered with 200 (or a
// misread redirect) hands no guesser a cookie that lifts the username
// rules; SetOutcome(r, true) or a Succeeded of the caller's does.
func TestDeviceCookieNeedsExplicitSuccess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     lockouthttp.Config
		handler http.HandlerFunc
		cookie  bool
	}{
		{"200 by the default rule", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("Wrong password, try again")) // a failure page answered with 200
		}, false},
		{"303 by the default rule", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/home", http.StatusSeeOther)
		}, false},
		{"SetOutcome true", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			lockouthttp.SetOutcome(r, true)
			w.WriteHeader(200)
		}, true},
		{"SetOutcome false then 200", lockouthttp.Config{}, func(w http.ResponseWriter, r *http.Request) {
			lockouthttp.SetOutcome(r, false)
			w.WriteHeader(200)
		}, false},
		{"own Succeeded", lockouthttp.Config{Succeeded: func(r *http.Request, status int, h http.Header) bool {
			return status == http.StatusSeeOther && h.Get("Location") == "/home"
		}}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/home", http.StatusSeeOther)
		}, true},
		{"own Succeeded says no", lockouthttp.Config{Succeeded: func(r *http.Request, status int, h http.Header) bool {
			return status == http.StatusSeeOther && h.Get("Location") == "/home"
		}}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPolicy(t, nil, lockout.Config{
				Rules:   []lockout.Rule{lockout.ByUsername(3)},
				Devices: &lockout.DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{'k'}, lockout.MinSecretLen)}},
			})
			cfg := tc.cfg
			cfg.Username = lockouthttp.FormField("username")
			h := lockouthttp.NewMiddleware(p, cfg).Wrap(tc.handler)
			form := url.Values{"username": {"alice"}, "password": {"x"}}
			req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := len(rec.Result().Cookies()) == 1; got != tc.cookie {
				t.Errorf("cookies %v, want a device cookie: %v", rec.Result().Cookies(), tc.cookie)
			}
		})
	}
}
