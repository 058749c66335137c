// Command loginserver is a small login server guarded by lockout: the
// integration example of the library, and the first thing to run.
//
//	go run ./examples/loginserver
//
// It serves a login page at http://127.0.0.1:8080/ and a login endpoint,
// POST /login, that takes a form (username, password) or a JSON object
// ({"username": "...", "password": "..."}). Demo users are alice/wonderland
// and bob/builder. Three wrong passwords lock a username out for 10 seconds,
// then 30 s, 1 min, 5 min and for good; ten from one client address lock the
// address. The operator page, under /admin/, shows and lifts the locks, and
// lists the recent attempts from the policy's journal; its Basic auth user
// (admin, or -admin-user) is the operator's name that unlocks and resets
// record, and its password is printed at start.
//
// The journal of attempts is kept by the store when it can (memory, and
// the stores that implement backend.Journal), else by an in-process memory
// store beside it, lost at exit (the banner says which).
//
// The lockout state lives in a bbolt file in a temporary directory (-data
// names a directory to keep it in), or in the store -store names: memory,
// redis://host:port[/db] or memcache://host:port[,host:port]. Run it with -h
// for every flag.
//
// The files: main.go wires lockout into an HTTP server (read it first);
// store.go opens the store the -store flag names; users.go keeps the demo
// users' password hashes; pages.go holds the HTML.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/lockouthttp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "loginserver:", err)
		os.Exit(1)
	}
}

// account is a demo user.
type account struct{ Name, Password string }

// demoUsers are the accounts of the example.
var demoUsers = []account{
	{"alice", "wonderland"},
	{"bob", "builder"},
}

// defaultAdminUser is the operator page's Basic auth user name, and so the
// operator's name in the journal, unless -admin-user names another.
const defaultAdminUser = "admin"

// run serves until ctx is done, then shuts the server down gracefully and
// closes the store. It writes the banner and the log to stdout, and calls
// ready, if not nil, with the address it listens on once it accepts
// connections.
func run(ctx context.Context, args []string, stdout io.Writer, ready func(addr string)) (err error) {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stdout, nil))

	// 1. The store that keeps counters and locks.
	store, err := openStore(ctx, cfg.store, cfg.dataDir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	// The journal of attempts, for the operator page: in the store when it
	// keeps one, else in memory.
	journal, journalAbout, err := journalFor(store)
	if err != nil {
		return err
	}

	// 2. The policy: three rules, checked together. Username rules stop
	// guessing one account's password from anywhere; the IP rule stops
	// one client from trying many accounts.
	rules := []lockout.Rule{
		lockout.ByUsername(cfg.limit),
		lockout.ByUsernameAndIP(cfg.limit),
		lockout.ByIP(cfg.ipLimit),
	}
	for i := range rules {
		rules[i].Schedule = cfg.schedule
	}
	policy, err := lockout.New(store.Backend, lockout.Config{
		Rules: rules,
		// Record every attempt's outcome, lockout, unlock and reset, in
		// the background; the operator page lists them.
		Journal: journal,
		// When the store fails, an in-process fallback decides with the
		// same rules (the default Outage mode), and the error is logged;
		// Outage: lockout.FailClosed would refuse attempts instead (503).
		Logger: logger, // lockouts at Warn, store errors at Error
		Hooks: lockout.Hooks{
			Refusal: func(_ context.Context, e *lockout.RefusedError) {
				logger.Info("refused", "rule", e.Rule, "key", e.Key, "reason", e.Reason, "retry_after_seconds", lockouthttp.RetryAfterSeconds(e))
			},
		},
	})
	if err != nil {
		return err
	}
	defer policy.Close()
	// Ask the store once, so that a server that does not answer shows now.
	if _, err := policy.Status(ctx, lockout.Subject{Username: "alice", IP: "127.0.0.1"}); err != nil {
		return fmt.Errorf("store %s: %w", store.About, err)
	}

	users, err := newUsers(cfg.hashIterations, demoUsers)
	if err != nil {
		return err
	}

	// 3. The middleware around the login handler. It counts the attempt
	// under the username the request claims (a form field or a JSON
	// field) and the client address, refuses locked clients with 429 and
	// Retry-After before any password is checked, and reports the
	// handler's outcome: a 2xx status is a success (a handler that
	// redirects after a success calls lockouthttp.SetOutcome(r, true)).
	clientIP := lockouthttp.PeerIP
	if len(cfg.trustedProxies) > 0 {
		res, err := lockouthttp.NewIPResolver(lockouthttp.HeaderXForwardedFor, cfg.trustedProxies...)
		if err != nil {
			return err
		}
		clientIP = res.ClientIP
	}
	web := site{limits: fmt.Sprintf("%d wrong passwords lock a username (and a username at one address); %d from one address, whatever the usernames, lock the address for everyone there. Lockouts last %s.",
		cfg.limit, cfg.ipLimit, describeSchedule(cfg.scheduleText))}
	guard := lockouthttp.NewMiddleware(policy, lockouthttp.Config{
		ClientIP: clientIP,
		Username: loginUsername,
		// A refused browser sees the login page again, with what happened
		// and when to try again; other clients get lockouthttp's JSON.
		Refused: web.refused,
	})

	// 4. The operator page and API, behind HTTP Basic auth. The Basic
	// user name is the operator's name: unlocks and resets made through
	// the page or the API carry it into the log and the journal.
	adminPassword := cfg.adminPassword
	if adminPassword == "" {
		adminPassword = rand.Text()
	}
	operator := lockouthttp.NewOperator(policy, lockouthttp.OperatorConfig{
		Authorize: func(r *http.Request) (string, bool) {
			if !checkBasicAuth(r, cfg.adminUser, adminPassword) {
				return "", false
			}
			return cfg.adminUser, true
		},
		Unauthorized: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="lockout operator", charset="UTF-8"`)
			http.Error(w, "operator password required", http.StatusUnauthorized)
		}),
	})
	// The operator's password is a password too: guesses at it are
	// counted and locked out per address, by a policy of its own (its
	// keys apart, under another prefix, so that a locked login address
	// does not keep its operator from the page), whose lockouts end by
	// themselves (within 15 minutes) and are logged. A request without
	// credentials (a browser's first, which gets the challenge) guesses
	// nothing and is not counted. Every other one is admitted before its
	// password is checked, so that no guess is checked uncounted, and
	// reported at once, before the operator page runs. The requests of
	// one address take turns at that, in this process: each holds a slot
	// of the address's limit while it is decided, and a page's parallel
	// requests would otherwise be refused for capacity.
	adminPolicy, err := lockout.New(store.Backend, lockout.Config{
		Prefix: "lockout-operator",
		Rules: []lockout.Rule{{Name: "operator-ip", Fields: []lockout.Field{lockout.IP}, Limit: cfg.limit,
			Schedule: lockout.Exponential(time.Minute, 2, 15*time.Minute)}},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	defer adminPolicy.Close()
	var turns addressTurns
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			operator.ServeHTTP(w, r)
			return
		}
		ip, err := clientIP(r)
		if err != nil || !ip.IsValid() {
			http.Error(w, "the client address cannot be checked", http.StatusBadRequest)
			return
		}
		err = turns.take(r.Context(), ip.String(), func() error {
			a, err := adminPolicy.Allow(r.Context(), lockout.Subject{IP: ip.String()})
			if err != nil {
				return err
			}
			if checkBasicAuth(r, cfg.adminUser, adminPassword) {
				a.Success(r.Context())
			} else {
				a.Failure(r.Context())
			}
			return nil
		})
		var re *lockout.RefusedError
		switch {
		case errors.As(err, &re) && re.Reason == lockout.ReasonLocked:
			secs := lockouthttp.RetryAfterSeconds(re)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			http.Error(w, fmt.Sprintf("Too many wrong operator passwords from your address. Try again in %d seconds.", secs), http.StatusTooManyRequests)
			return
		case errors.As(err, &re) && re.Reason == lockout.ReasonCapacity:
			// Attempts not reported (another process's in flight, or one
			// whose report the store lost) hold the address's slots.
			secs := lockouthttp.RetryAfterSeconds(re)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			http.Error(w, fmt.Sprintf("Too many operator sign-ins in progress from your address. Try again in %d seconds.", secs), http.StatusTooManyRequests)
			return
		case err != nil:
			http.Error(w, "the lockout store is unavailable", http.StatusServiceUnavailable)
			return
		}
		operator.ServeHTTP(w, r)
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", web.loginPage)
	mux.Handle("POST /login", guard.Wrap(loginHandler(users, logger, web)))
	mux.Handle("/admin/", http.StripPrefix("/admin", admin))

	// 5. Serve until ctx is done (SIGINT or SIGTERM in main).
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("%w (choose another address with -addr)", err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A client that stalls its body is cut off: a login request is
		// small, and a stalled one must not hold a slot for long.
		ReadTimeout: 30 * time.Second,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	printBanner(stdout, cfg, store.About, journalAbout, baseURL(ln.Addr()), adminPassword)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served // http.ErrServerClosed
	return nil
}

// loginUsername returns the username a login request claims, from its JSON
// body or its form. The middleware counts the attempt under this name.
func loginUsername(r *http.Request) (string, error) {
	if isJSON(r) {
		return jsonUsername(r)
	}
	return formUsername(r)
}

var (
	jsonUsername = lockouthttp.JSONField("username")
	formUsername = lockouthttp.FormField("username")
)

func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json"
}

// loginHandler verifies a password. It runs only for attempts the policy
// admitted, and answers 200 or 401: the middleware reads the outcome from
// the status. A real application would start a session on success.
func loginHandler(users *users, logger *slog.Logger, web site) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Verify exactly the username the middleware counted.
		subject, _ := lockouthttp.SubjectFromContext(r.Context())
		password, err := loginPassword(r)
		if err != nil {
			web.reply(w, r, http.StatusBadRequest, "bad_request", "The request body is malformed.", "")
			return
		}
		if !users.verify(subject.Username, password) {
			logger.Info("login failed", "username", subject.Username, "ip", subject.IP)
			web.reply(w, r, http.StatusUnauthorized, "invalid_credentials", "Wrong username or password.", subject.Username)
			return
		}
		logger.Info("login", "username", subject.Username, "ip", subject.IP)
		web.reply(w, r, http.StatusOK, "", "Welcome, "+subject.Username+".", subject.Username)
	})
}

// loginPassword returns the password of a JSON or form login request.
func loginPassword(r *http.Request) (string, error) {
	if !isJSON(r) {
		return r.PostFormValue("password"), nil
	}
	var body struct {
		Password string `json:"password"`
	}
	// The middleware read the body already, so it is at most
	// lockouthttp.MaxBodyBytes long.
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Password, nil
}

// checkBasicAuth reports, in constant time, whether r carries the Basic
// credentials user:password.
// addressTurns makes the operator requests of one address take turns, and
// lets those of other addresses through: a lock per address, made while
// some request of it waits or runs. The zero value is ready to use.
type addressTurns struct {
	mu    sync.Mutex
	turns map[string]*turn
}

type turn struct {
	held    chan struct{} // a token while a request runs
	waiters int           // requests that hold or wait for it
}

// take runs f when no other request of addr runs, or returns ctx's error
// if ctx ends first.
func (t *addressTurns) take(ctx context.Context, addr string, f func() error) error {
	t.mu.Lock()
	if t.turns == nil {
		t.turns = make(map[string]*turn)
	}
	tu := t.turns[addr]
	if tu == nil {
		tu = &turn{held: make(chan struct{}, 1)}
		t.turns[addr] = tu
	}
	tu.waiters++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if tu.waiters--; tu.waiters == 0 {
			delete(t.turns, addr)
		}
		t.mu.Unlock()
	}()
	select {
	case tu.held <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-tu.held }()
	return f()
}

func checkBasicAuth(r *http.Request, user, password string) bool {
	u, p, ok := r.BasicAuth()
	got := sha256.Sum256([]byte(u + ":" + p))
	want := sha256.Sum256([]byte(user + ":" + password))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && ok
}

// config holds the command line.
type config struct {
	addr           string
	store          string
	dataDir        string
	limit, ipLimit int
	schedule       lockout.Schedule
	scheduleText   string
	adminUser      string
	adminPassword  string
	hashIterations int
	trustedProxies []netip.Prefix
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("loginserver", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "`address` to listen on")
	fs.StringVar(&cfg.store, "store", "bolt", "lockout `store`: "+storeKinds)
	fs.StringVar(&cfg.dataDir, "data", "", "`directory` of the bolt store's file (default: a new temporary directory, removed at exit)")
	fs.IntVar(&cfg.limit, "limit", 3, "failed logins before a username (anywhere, or from one address) is locked out")
	fs.IntVar(&cfg.ipLimit, "ip-limit", 10, "failed logins from one client address, any usernames, before the address is locked out")
	// No forever step by default: with one, whoever knows a username locks
	// its owner out until an operator steps in, with a dozen requests over
	// a few minutes (a review: 15).
	fs.StringVar(&cfg.scheduleText, "schedule", "10s,30s,1m,5m,15m", "lockout `durations`: the n-th lockout within 24 h lasts the n-th; the last repeats (forever: until an operator unlocks)")
	fs.StringVar(&cfg.adminUser, "admin-user", defaultAdminUser, "operator page's Basic auth `user`, the operator's name in the journal")
	fs.StringVar(&cfg.adminPassword, "admin-password", "", "`password` of the operator page's user (default: random, printed at start)")
	fs.IntVar(&cfg.hashIterations, "hash-iterations", defaultHashIterations, "PBKDF2-SHA256 `iterations` of the demo users' password hashes")
	proxies := fs.String("trusted-proxies", "", "comma-separated `prefixes` of reverse proxies whose X-Forwarded-For is believed (default: none, the peer is the client)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.schedule, err = parseSchedule(cfg.scheduleText); err != nil {
		return cfg, fmt.Errorf("-schedule: %w", err)
	}
	if cfg.limit < 1 || cfg.ipLimit < 1 {
		return cfg, errors.New("-limit and -ip-limit: want at least 1")
	}
	if cfg.adminUser == "" || strings.ContainsAny(cfg.adminUser, ":") {
		return cfg, errors.New("-admin-user: want a name without ':'")
	}
	if cfg.hashIterations < 1 {
		return cfg, errors.New("-hash-iterations: want at least 1")
	}
	for p := range strings.SplitSeq(*proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return cfg, fmt.Errorf("-trusted-proxies: %w", err)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.trustedProxies = append(cfg.trustedProxies, prefix)
	}
	return cfg, nil
}

// parseSchedule parses "10s,30s,1m,forever" into a lockout.List schedule.
func parseSchedule(s string) (lockout.Schedule, error) {
	var ds []time.Duration
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "forever" {
			ds = append(ds, lockout.Forever)
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, fmt.Errorf("duration %s: want a positive one", part)
		}
		ds = append(ds, d)
	}
	if i := indexForever(ds); i >= 0 && i != len(ds)-1 {
		return nil, errors.New("forever may only be the last entry")
	}
	return lockout.List(ds...), nil
}

func indexForever(ds []time.Duration) int {
	for i, d := range ds {
		if d == lockout.Forever {
			return i
		}
	}
	return -1
}

// baseURL is the URL to print for a listener: a wildcard address is
// reached on the loopback address.
func baseURL(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	ip := ap.Addr()
	if ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return "http://" + netip.AddrPortFrom(ip, ap.Port()).String()
}

// printBanner prints the users, the URLs and how to watch a lockout.
func printBanner(w io.Writer, cfg config, storeAbout, journalAbout, base, adminPassword string) {
	var users []string
	for _, u := range demoUsers {
		users = append(users, u.Name+" / "+u.Password)
	}
	host := "127.0.0.1"
	if ap, err := netip.ParseAddrPort(strings.TrimPrefix(base, "http://")); err == nil {
		host = ap.Addr().String()
	}
	fmt.Fprintf(w, `lockout example login server
  login page:  %[1]s/
  users:       %[2]s
  rules:       %[3]d failed logins lock a username (and a username at one address),
               %[4]d lock a client address; lockouts last %[5]s
  store:       %[6]s
  journal:     %[10]s
  operator:    %[1]s/admin/  (user %[7]s, password %[8]s)

Watch a lockout: four wrong passwords in a row, then the right one.

  for pw in guess1 guess2 guess3 guess4 wonderland; do
    curl -s -o /dev/null -D - -d username=alice -d password=$pw %[1]s/login | grep -Ei '^(HTTP|Retry-After)'
  done

The first three get 401, the rest 429 with Retry-After (seconds). Wait that long,
and the right password gets 200; three more failures lock alice out for longer.
Ask the operator API about alice, lift her locks, or list her recent attempts
(the unlock among them, naming the operator %[7]s):

  curl -s -u %[7]s:%[8]s '%[1]s/admin/api/status?username=alice&ip=%[9]s'
  curl -s -u %[7]s:%[8]s -d username=alice -d ip=%[9]s %[1]s/admin/api/unlock
  curl -s -u %[7]s:%[8]s '%[1]s/admin/api/attempts?username=alice'

JSON works too:

  curl -s -H 'Content-Type: application/json' -d '{"username":"bob","password":"builder"}' %[1]s/login

`, base, strings.Join(users, ", "), cfg.limit, cfg.ipLimit, describeSchedule(cfg.scheduleText),
		storeAbout, cfg.adminUser, adminPassword, host, journalAbout)
}

func describeSchedule(s string) string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if len(parts) == 1 {
		return parts[0] + " each"
	}
	last := parts[len(parts)-1]
	if last == "forever" {
		return strings.Join(parts[:len(parts)-1], ", ") + ", then until unlocked"
	}
	return strings.Join(parts, ", ") + ", then " + last + " each"
}
