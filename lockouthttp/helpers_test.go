package lockouthttp_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
)

var bg = context.Background()

// newStore returns a fresh memory store, closed when the test ends. Inside
// a synctest bubble, call it inside the bubble.
func newStore(t testing.TB) *memory.Store {
	t.Helper()
	s, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPolicy(t testing.TB, store backend.Backend, cfg lockout.Config) *lockout.Policy {
	t.Helper()
	if store == nil {
		store = newStore(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// downStore is a store whose every call fails.
type downStore struct{}

var errDown = errors.New("store is down")

func (downStore) Do(context.Context, []backend.Op, []backend.Result) error { return errDown }
func (downStore) Close() error                                             { return nil }

// unlistable hides the Lister of the store it wraps.
type unlistable struct{ backend.Backend }

// login is a login handler: form fields username and password, 200 for
// alice's password, 401 otherwise. It counts the passwords it verifies.
type login struct {
	verified atomic.Int64
	// username, when set, reads the username the handler verifies.
	username func(r *http.Request) string
}

const alicePassword = "correct horse"

func (l *login) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.verified.Add(1)
	user := r.FormValue("username")
	if l.username != nil {
		user = l.username(r)
	}
	if user == "alice" && r.FormValue("password") == alicePassword {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("welcome\n"))
		return
	}
	writeWrongPassword(w, r)
}

func writeWrongPassword(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write([]byte("wrong username or password\n"))
}

// post sends a login form to h from remote, with optional headers as
// name, value pairs.
func post(h http.Handler, remote, user, password string, headers ...string) *httptest.ResponseRecorder {
	form := url.Values{"username": {user}, "password": {password}}
	r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// ruleStatus returns the status of the named rule for s.
func ruleStatus(t testing.TB, p *lockout.Policy, s lockout.Subject, rule string) lockout.RuleStatus {
	t.Helper()
	st, err := p.Status(bg, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st {
		if r.Rule == rule {
			return r
		}
	}
	t.Fatalf("no rule %q applies to %+v (status %v)", rule, s, st)
	return lockout.RuleStatus{}
}
