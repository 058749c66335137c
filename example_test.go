package lockout_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memory"
)

// checkPassword stands for the application's own password check.
func checkPassword(username, password string) bool {
	return username == "alice" && password == "correct horse battery staple"
}

// The quick start of the README: three rules on the memory store, and a
// guesser locked out after five wrong passwords.
func Example() {
	store, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	policy, err := lockout.New(store, lockout.Config{
		Rules: []lockout.Rule{
			lockout.ByUsername(5),      // 5 failures per username
			lockout.ByIP(20),           // 20 per client IP (IPv6: per /64)
			lockout.ByUsernameAndIP(5), // 5 per username from one IP
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()

	ctx := context.Background()
	login := func(username, password, ip string) error {
		subject := lockout.Subject{Username: username, IP: ip}
		ok, err := policy.Check(ctx, subject, func(context.Context) (bool, error) {
			return checkPassword(username, password), nil // runs only when admitted
		})
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("wrong username or password")
		}
		return nil
	}

	for i := 1; i <= 6; i++ {
		err := login("alice", "guess", "203.0.113.7")
		var refused *lockout.RefusedError
		if errors.As(err, &refused) {
			fmt.Printf("attempt %d: %s, retry after %v\n", i, refused.Reason, refused.RetryAfter.Round(time.Second))
			continue
		}
		fmt.Printf("attempt %d: %v\n", i, err)
	}
	// Output:
	// attempt 1: wrong username or password
	// attempt 2: wrong username or password
	// attempt 3: wrong username or password
	// attempt 4: wrong username or password
	// attempt 5: wrong username or password
	// attempt 6: locked, retry after 1m0s
}

// Allow and the Attempt it returns split a decision around the caller's own
// verification.
func ExamplePolicy_Allow() {
	store, _ := memory.New(nil)
	defer store.Close()
	policy, _ := lockout.New(store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}})
	defer policy.Close()
	ctx := context.Background()

	attempt, err := policy.Allow(ctx, lockout.Subject{Username: "Alice", IP: "2001:db8::1"})
	if err != nil {
		fmt.Println("refused:", err) // do not verify the password
		return
	}
	if checkPassword("alice", "correct horse battery staple") {
		attempt.Success(ctx) // resets alice's counter
	} else {
		attempt.Failure(ctx)
	}
	st, _ := policy.Status(ctx, lockout.Subject{Username: "ALICE"})
	fmt.Println(st[0])
	// Output:
	// username u=alice: 0/3 attempts, 0 lockouts
}

// Escalating lockouts as django-defender configures them with
// DEFENDER_LOCKOUT_COOLOFF_TIME = [60, 120, 300, 600, 0]... except that
// "forever" must be named.
func ExampleList() {
	s := lockout.List(time.Minute, 2*time.Minute, 5*time.Minute, 10*time.Minute, lockout.Forever)
	for n := 1; n <= 6; n++ {
		if d := s.Lockout(n); d == lockout.Forever {
			fmt.Printf("lockout %d: until unlocked\n", n)
		} else {
			fmt.Printf("lockout %d: %v\n", n, d)
		}
	}
	// Output:
	// lockout 1: 1m0s
	// lockout 2: 2m0s
	// lockout 3: 5m0s
	// lockout 4: 10m0s
	// lockout 5: until unlocked
	// lockout 6: until unlocked
}

// An Observer that tells a user their account was locked. The observer runs
// on the decision's goroutine: a real one hands the email to another.
func ExampleObserver() {
	store, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	user, ip := lockout.ByUsername(3), lockout.ByIP(3)
	user.Schedule = lockout.Fixed(15 * time.Minute)
	// The rules that lock an account: keyed by the username alone (filled
	// below, before any decision). An IP rule's lockout names whatever
	// username the last attempt sent.
	accountRules := map[string]bool{}
	notify := lockout.ObserverFunc(func(ctx context.Context, e lockout.Event) {
		if e.Kind == lockout.EventLockout && accountRules[e.Rule] {
			fmt.Printf("mail %s: sign-in paused for %v (lockout %d)\n", e.Subject.Username, e.Duration, e.Count)
		}
	})
	policy, err := lockout.New(store, lockout.Config{Rules: []lockout.Rule{user, ip}, Observer: notify})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()
	for _, r := range policy.Rules() { // with their names ("username", "ip")
		if slices.Equal(r.Fields, []lockout.Field{lockout.Username}) {
			accountRules[r.Name] = true
		}
	}
	ctx := context.Background()
	// Three failures on alice lock her username and the address; then
	// three on made-up names from another address lock only that address:
	// bob, whom the last one named, gets no mail.
	for _, s := range []lockout.Subject{
		{Username: "Alice", IP: "192.0.2.1"}, {Username: "alice", IP: "192.0.2.1"}, {Username: "ALICE", IP: "192.0.2.1"},
		{Username: "x1", IP: "192.0.2.7"}, {Username: "x2", IP: "192.0.2.7"}, {Username: "bob", IP: "192.0.2.7"},
	} {
		if a, err := policy.Allow(ctx, s); err == nil {
			a.Failure(ctx)
		}
	}
	// Output:
	// mail alice: sign-in paused for 15m0s (lockout 1)
}

// The attempt journal: every outcome, lockout and operator action on the
// record, read back newest first.
func ExamplePolicy_Attempts() {
	store, err := memory.New(nil) // keeps journals for 24 h (JournalRetention)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	policy, err := lockout.New(store, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(2)},
		Journal: &lockout.JournalConfig{},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()
	ctx := context.Background()
	mallory := lockout.Subject{Username: "alice", IP: "203.0.113.9", UserAgent: "guesser/1.0"}
	for range 3 {
		if a, err := policy.Allow(ctx, mallory); err == nil {
			a.Failure(ctx)
		}
	}
	opCtx := lockout.WithOperator(ctx, "ops@example.com", "api")
	if err := policy.Unlock(opCtx, lockout.Subject{Username: "alice"}); err != nil {
		log.Fatal(err)
	}
	policy.SyncJournal(ctx) // records are written in the background

	recs, _, err := policy.Attempts(ctx, lockout.AttemptQuery{Username: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%-8s %-7s %-11s %s", r.Outcome, r.Reason, r.IP, r.Operator)))
	}
	// Output:
	// unlock                       ops@example.com
	// refused  locked  203.0.113.9
	// lockout          203.0.113.9
	// failure          203.0.113.9
	// failure          203.0.113.9
}

// A login handler's test runs with lockouts off: Disabled admits every
// attempt and counts nothing, but still rejects the subjects production
// would.
func ExampleDisabled() {
	policy := lockout.Disabled()
	defer policy.Close()
	ctx := context.Background()
	for range 10 {
		a, err := policy.Allow(ctx, lockout.Subject{Username: "alice", IP: "192.0.2.1"})
		if err != nil {
			log.Fatal(err)
		}
		a.Failure(ctx)
	}
	fmt.Println("ten wrong passwords, never refused")
	_, err := policy.Allow(ctx, lockout.Subject{Username: "alice", IP: "not an address"})
	fmt.Println(errors.Is(err, lockout.ErrInvalidSubject))
	// Output:
	// ten wrong passwords, never refused
	// true
}

// An operator lifts a user's locks: Unlock clears the locks and counters of
// every key that holds the subject, and keeps the lockout history, so that
// a repeat offence still locks for longer; Reset forgets that too.
func ExamplePolicy_Unlock() {
	store, _ := memory.New(nil)
	defer store.Close()
	policy, _ := lockout.New(store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2)}})
	defer policy.Close()
	ctx := context.Background()
	alice := lockout.Subject{Username: "alice"}

	for range 2 {
		if a, err := policy.Allow(ctx, alice); err == nil {
			a.Failure(ctx) // the second locks alice
		}
	}
	_, err := policy.Allow(ctx, alice)
	var refused *lockout.RefusedError
	if errors.As(err, &refused) {
		fmt.Println("before:", refused.Reason, "by rule", refused.Rule)
	}

	ctx = lockout.WithOperator(ctx, "admin", "example") // named in the journal and the log
	if err := policy.Unlock(ctx, alice); err != nil {
		log.Fatal(err)
	}
	a, err := policy.Allow(ctx, alice)
	fmt.Println("after:", err)
	a.Success(ctx)
	st, _ := policy.Status(ctx, alice)
	fmt.Println(st[0])
	// Output:
	// before: locked by rule username
	// after: <nil>
	// username u=alice: 0/2 attempts, 1 lockouts
}
