package main

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-lockout/lockout/lockouthttp"
)

// victim is the account the attack guesses the password of.
const victim = "victim"

// hashLen is the length of a stored password hash.
const hashLen = 32

// account is a stored credential: a salt and PBKDF2-HMAC-SHA256 of the
// password.
type account struct {
	salt, hash []byte
}

// loginApp is the sample login endpoint: POST username and password as a
// form; 200 when they match an account, 401 otherwise. An unknown username
// is checked against a dummy account, so that it costs the same as a wrong
// password (as Django does).
type loginApp struct {
	iterations int
	accounts   map[string]account // read-only once built
	dummy      account

	verified       atomic.Int64 // password verifications
	victimVerified atomic.Int64 // of them, on the victim's account
}

// userName and password are the credentials of account i.
func userName(i int) string { return fmt.Sprintf("user%07d", i) }
func password(i int) string { return fmt.Sprintf("correct-horse-%07d", i) }

// victimPassword is the password the attack never guesses.
const victimPassword = "battery-staple-victim"

// newLoginApp builds n accounts (user0000000 ... with password(i)) and the
// victim's, hashing on every CPU.
func newLoginApp(n, iterations int) (*loginApp, error) {
	a := &loginApp{iterations: iterations, accounts: make(map[string]account, n+1)}
	type job struct {
		name, pw string
	}
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range jobs {
				acct, err := a.newAccount(j.name, j.pw)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				a.accounts[j.name] = acct
				mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- job{userName(i), password(i)}
	}
	jobs <- job{victim, victimPassword}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	dummy, err := a.newAccount("", "dummy password nobody has")
	if err != nil {
		return nil, err
	}
	a.dummy = dummy
	return a, nil
}

func (a *loginApp) newAccount(name, pw string) (account, error) {
	salt := sha256.Sum256([]byte("lockbench salt " + name))
	h, err := pbkdf2.Key(sha256.New, pw, salt[:16], a.iterations, hashLen)
	if err != nil {
		return account{}, fmt.Errorf("hash the password of %q: %w", name, err)
	}
	return account{salt: salt[:16], hash: h}, nil
}

// ServeHTTP verifies the posted credentials.
func (a *loginApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, pw := r.PostFormValue("username"), r.PostFormValue("password")
	if s, ok := lockouthttp.SubjectFromContext(r.Context()); ok {
		name = s.Username // verify exactly the name the middleware counted
	}
	acct, known := a.accounts[name]
	if !known {
		acct = a.dummy
	}
	sum, err := pbkdf2.Key(sha256.New, pw, acct.salt, a.iterations, hashLen)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	a.verified.Add(1)
	if name == victim {
		a.victimVerified.Add(1)
	}
	if known && subtle.ConstantTimeCompare(sum, acct.hash) == 1 {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("welcome\n"))
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("wrong username or password\n"))
}

// tuneIterations returns the PBKDF2-HMAC-SHA256 iteration count that takes
// about cost on this machine: the fastest of a few timed runs, scaled.
func tuneIterations(cost time.Duration) (int, error) {
	const probe = 20_000
	best := time.Duration(1<<63 - 1)
	salt := make([]byte, 16)
	for range 5 {
		start := time.Now()
		if _, err := pbkdf2.Key(sha256.New, "probe", salt, probe, hashLen); err != nil {
			return 0, fmt.Errorf("time PBKDF2: %w", err)
		}
		best = min(best, time.Since(start))
	}
	n := int(float64(probe) * float64(cost) / float64(best))
	return max(n, 1), nil
}
