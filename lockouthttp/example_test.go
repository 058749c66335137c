package lockouthttp_test

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/lockouthttp"
)

// examplePolicy returns a policy locking a username for a minute after 3
// failures, over a fresh memory store.
func examplePolicy() (*lockout.Policy, func()) {
	store, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	rule := lockout.ByUsername(3)
	rule.Schedule = lockout.Fixed(time.Minute)
	policy, err := lockout.New(store, lockout.Config{Rules: []lockout.Rule{rule, lockout.ByIP(20)}})
	if err != nil {
		log.Fatal(err)
	}
	return policy, func() { policy.Close(); store.Close() }
}

func postForm(h http.Handler, path string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func ExampleMiddleware() {
	policy, closeStore := examplePolicy()
	defer closeStore()

	// The login handler verifies the username the middleware counted, and
	// answers a wrong password with 401: a status of 400 or more is a
	// failure.
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := lockouthttp.SubjectFromContext(r.Context())
		if s.Username == "alice" && r.PostFormValue("password") == "correct horse" {
			fmt.Fprintln(w, "welcome")
			return
		}
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	})
	mw := lockouthttp.NewMiddleware(policy, lockouthttp.Config{
		Username: lockouthttp.FormField("username"),
	})
	mux := http.NewServeMux()
	mux.Handle("POST /login", mw.Wrap(login))

	for _, password := range []string{"123456", "password", "qwerty", "correct horse"} {
		w := postForm(mux, "/login", url.Values{"username": {"alice"}, "password": {password}})
		fmt.Print(w.Code)
		if ra := w.Header().Get("Retry-After"); ra != "" {
			fmt.Print(" Retry-After: ", ra)
		}
		fmt.Println()
	}
	// Output:
	// 401
	// 401
	// 401
	// 429 Retry-After: 60
}

func ExampleIPResolver_ClientIP() {
	// The load balancers live in 10.0.0.0/8 and append to X-Forwarded-For.
	res, err := lockouthttp.NewIPResolver(lockouthttp.HeaderXForwardedFor, netip.MustParsePrefix("10.0.0.0/8"))
	if err != nil {
		log.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.5, 10.0.0.7") // the client forged 6.6.6.6

	r.RemoteAddr = "10.0.0.1:55000" // through the load balancers
	ip, _ := res.ClientIP(r)
	fmt.Println(ip)

	r.RemoteAddr = "198.51.100.7:1234" // straight to the server: the header is ignored
	ip, _ = res.ClientIP(r)
	fmt.Println(ip)
	// Output:
	// 203.0.113.5
	// 198.51.100.7
}

func ExampleNewIPResolver_forwarded() {
	res, err := lockouthttp.NewIPResolver(lockouthttp.HeaderForwarded, netip.MustParsePrefix("10.0.0.0/8"))
	if err != nil {
		log.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = "10.0.0.1:55000"
	r.Header.Set("Forwarded", `for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https`)
	ip, _ := res.ClientIP(r)
	fmt.Println(ip)

	r.Header.Set("Forwarded", `for=unknown`) // the proxy does not know its client
	_, err = res.ClientIP(r)
	fmt.Println(err != nil)
	// Output:
	// 2001:db8:cafe::17
	// true
}

func ExampleJSONField() {
	policy, closeStore := examplePolicy()
	defer closeStore()

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the whole body, as the client sent it
		fmt.Printf("handler reads %s\n", body)
		w.WriteHeader(http.StatusUnauthorized)
	})
	h := lockouthttp.NewMiddleware(policy, lockouthttp.Config{
		Username: lockouthttp.JSONField("username"),
	}).Wrap(login)

	r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"Alice","password":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), r)

	st, _ := policy.Status(r.Context(), lockout.Subject{Username: "alice"})
	fmt.Println(st[0])
	// Output:
	// handler reads {"username":"Alice","password":"x"}
	// username u=alice: 1/3 attempts, 0 lockouts
}

func ExampleConfig_conceal() {
	policy, closeStore := examplePolicy()
	defer closeStore()

	wrongPassword := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	}
	mw := lockouthttp.NewMiddleware(policy, lockouthttp.Config{
		Username: lockouthttp.FormField("username"),
		// A locked account answers exactly like a wrong password.
		Conceal: http.HandlerFunc(wrongPassword),
	})
	verified := 0
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verified++
		wrongPassword(w, r) // nobody gets in, for the example
	}))

	for range 4 {
		w := postForm(h, "/login", url.Values{"username": {"alice"}, "password": {"guess"}})
		fmt.Printf("%d %q Retry-After=%q\n", w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
	fmt.Println("passwords verified:", verified)
	// Output:
	// 401 "wrong username or password\n" Retry-After=""
	// 401 "wrong username or password\n" Retry-After=""
	// 401 "wrong username or password\n" Retry-After=""
	// 401 "wrong username or password\n" Retry-After=""
	// passwords verified: 3
}

func ExampleNewOperator() {
	policy, closeStore := examplePolicy()
	defer closeStore()

	// Lock alice out.
	s := lockout.Subject{Username: "alice"}
	for range 3 {
		if a, err := policy.Allow(bg, s); err == nil {
			a.Failure(bg)
		}
	}

	op := lockouthttp.NewOperator(policy, lockouthttp.OperatorConfig{
		// Without Authorize, every request is refused. The name it
		// returns is the operator that unlocks and resets record.
		Authorize: func(r *http.Request) (string, bool) {
			user, pass, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(user+":"+pass), []byte("admin:s3cret")) != 1 {
				return "", false
			}
			return user, true
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/admin/lockout/", http.StripPrefix("/admin/lockout", op))

	get := func(path string) {
		r := httptest.NewRequest("GET", path, nil)
		r.SetBasicAuth("admin", "s3cret")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body)
	}
	get("/admin/lockout/api/status?username=alice")

	r := httptest.NewRequest("POST", "/admin/lockout/api/unlock", strings.NewReader(`{"username":"alice"}`))
	r.Header.Set("Content-Type", "application/json")
	r.SetBasicAuth("admin", "s3cret")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Print(w.Code, " ", w.Body)

	get("/admin/lockout/api/locks")
	// Output:
	// 200 {"username":"alice","rules":[{"rule":"username","key":"u=alice","attempts":0,"limit":3,"window_remaining_seconds":0,"locked":true,"lock_remaining_seconds":60,"lockouts":1}]}
	// 200 {"ok":true,"locks_lifted":1}
	// 200 {"locks":[],"truncated":false}
}
