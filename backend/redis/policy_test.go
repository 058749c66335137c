package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
)

// tripCounter counts the round trips go-redis clients make with the
// store's commands, per node address: one per command sent alone, one per
// pipeline. A ClusterClient's own hook counts under "": one per pipeline
// (or command) the store sends, whatever nodes it touches.
type tripCounter struct {
	mu    sync.Mutex
	trips map[string]int
}

func newTripCounter() *tripCounter { return &tripCounter{trips: map[string]int{}} }

func (c *tripCounter) add(addr string) {
	c.mu.Lock()
	c.trips[addr]++
	c.mu.Unlock()
}

// take returns the counts so far and starts afresh.
func (c *tripCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.trips
	c.trips = map[string]int{}
	return m
}

// hook returns a go-redis hook that counts the round trips of the client
// of addr.
func (c *tripCounter) hook(addr string) goredis.Hook { return tripHook{c, addr} }

type tripHook struct {
	c    *tripCounter
	addr string
}

func (h tripHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h tripHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if slices.Contains(scriptCommands, cmd.Name()) {
			h.c.add(h.addr)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts a pipeline that carries a command of the
// store's, not the handshake go-redis makes on a new connection.
func (h tripHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if slices.ContainsFunc(cmds, func(c goredis.Cmder) bool { return slices.Contains(scriptCommands, c.Name()) }) {
			h.c.add(h.addr)
		}
		return next(ctx, cmds)
	}
}

// commandCalls returns how many times the servers of admins ran each
// command (INFO commandstats, summed over the servers), leaving out INFO
// and the handshake of new connections. Commands a script calls are counted
// too.
func commandCalls(t *testing.T, admins []*goredis.Client) map[string]int64 {
	t.Helper()
	calls := map[string]int64{}
	for _, c := range admins {
		addr := c.Options().Addr
		info, err := c.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatalf("INFO commandstats on %s: %v", addr, err)
		}
		for line := range strings.Lines(info) {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") || slices.Contains(uncounted, name) {
				continue
			}
			v, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO commandstats on %s: %q", addr, line)
			}
			calls[strings.TrimPrefix(name, "cmdstat_")] += n
		}
	}
	return calls
}

// uncounted are the commandstats entries commandCalls leaves out.
var uncounted = []string{"cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_ping"}

// scriptCommands are the commands the store sends; any other command the
// server counts ran inside its script.
var scriptCommands = []string{"evalsha", "eval"}

// describeCalls formats the difference between two commandCalls, the
// store's own commands first, and returns how many of those there were.
func describeCalls(before, after map[string]int64) (string, int64) {
	var sent, inside []string
	var n int64
	for _, name := range slices.Sorted(maps.Keys(after)) {
		d := after[name] - before[name]
		if d == 0 {
			continue
		}
		if slices.Contains(scriptCommands, name) {
			sent = append(sent, fmt.Sprintf("%d %s", d, strings.ToUpper(name)))
			n += d
		} else {
			inside = append(inside, fmt.Sprintf("%s=%d", name, d))
		}
	}
	s := strings.Join(sent, " + ")
	if s == "" {
		s = "no command"
	}
	if len(inside) > 0 {
		s += " (calling " + strings.Join(inside, " ") + ")"
	}
	return s, n
}

func budgetRules() []lockout.Rule {
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(10), lockout.ByUsernameAndIP(3)}
	for i := range rules {
		rules[i].Schedule = lockout.Fixed(time.Hour)
	}
	return rules
}

// checkRoundTrips walks a policy with three rules (username, IP,
// username+IP) through every step of the round-trip budget and counts, for
// each step, the round trips the client made (trips) and the commands the
// servers (admins, one client each) saw. An admitted decision must be one
// round trip: one pipeline, or a single command, with at most one round trip
// to each node.
func checkRoundTrips(t *testing.T, store *redisstore.Store, trips *tripCounter, admins []*goredis.Client) {
	p, err := lockout.New(store, lockout.Config{
		Rules:  budgetRules(),
		Prefix: fmt.Sprintf("trips%d", time.Now().UnixNano()),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s := lockout.Subject{Username: "alice", IP: "198.51.100.7"}
	step := func(name string, budget int, f func() error) {
		t.Helper()
		trips.take()
		before := commandCalls(t, admins)
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		perNode := trips.take()
		pipelines, cluster := perNode[""]
		delete(perNode, "")
		desc, sent := describeCalls(before, commandCalls(t, admins))
		rounds := 0
		for _, n := range perNode {
			rounds = max(rounds, n)
		}
		if cluster {
			t.Logf("%-28s %d pipeline(s): %d round trip(s) to each of %d node(s), %s", name+":", pipelines, rounds, len(perNode), desc)
			if name == "admitted" && pipelines != 1 {
				t.Errorf("admitted: %d pipelines or commands sent, want 1", pipelines)
			}
		} else {
			t.Logf("%-28s %d round trip(s), %s", name+":", rounds, desc)
		}
		if rounds > budget {
			t.Errorf("%s: %d round trips to one node (%v), budget %d", name, rounds, perNode, budget)
		}
		// An admitted decision: one round trip, one script call per slot
		// (one on a single server).
		if name == "admitted" {
			want := int64(1)
			if len(admins) > 1 {
				want = sent // checked against the nodes below
			}
			if rounds != 1 || sent != want || sent < int64(len(perNode)) || sent > 3 {
				t.Errorf("admitted: %d round trips (%v), %d script calls; want one round trip, one script call per slot",
					rounds, perNode, sent)
			}
		}
	}
	var a *lockout.Attempt
	allow := func() (err error) {
		a, err = p.Allow(ctx, s)
		if err == nil && a.Err() != nil {
			err = a.Err()
		}
		return err
	}
	report := func(ok bool) func() error {
		return func() error {
			if ok {
				return a.Success(ctx)
			}
			return a.Failure(ctx)
		}
	}
	step("admitted", 1, allow)
	step("failure that does not lock", 0, report(false))
	step("admitted", 1, allow)
	step("success", 1, report(true))
	for range 2 {
		if err := allow(); err != nil {
			t.Fatal(err)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	step("admitted", 1, allow)
	step("failure that locks", 3, report(false))
	step("refused (locked)", 2, func() error {
		if _, err := p.Allow(ctx, s); !errors.Is(err, lockout.ErrLocked) {
			return fmt.Errorf("want ErrLocked, got %v", err)
		}
		return nil
	})
}

// TestPolicyRoundTrips counts the round trips and the commands of each step
// of the round-trip budget on one server. (TestCluster does it on a
// Cluster.)
func TestPolicyRoundTrips(t *testing.T) {
	srv := testserver.Redis(t)
	trips := newTripCounter()
	client := newClient(t, srv.Addr, nil)
	client.AddHook(trips.hook(srv.Addr))
	store := newStore(t, client, nil)
	checkRoundTrips(t, store, trips, []*goredis.Client{newClient(t, srv.Addr, nil)})
}

// TestPolicyOutage stops the server under decisions from many goroutines
// (three rules, a 200 ms timeout), through one policy of each Outage mode
// on one store: every decision returns within its deadlines; while the
// server is down the fallback policy decides locally, the fail-closed one
// refuses with ErrUnavailable and the admit-uncounted one admits with the
// error; nothing panics and no goroutine is left behind; and once the
// server is back, empty and without the script, decisions go to it again
// on the same client, within the probe interval.
func TestPolicyOutage(t *testing.T) {
	for _, ctxTimeouts := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			testPolicyOutage(t, ctxTimeouts)
		})
	}
}

func testPolicyOutage(t *testing.T, ctxTimeouts bool) {
	srv := testserver.Redis(t)
	srv.RequireControl(t)
	client := newClient(t, srv.Addr, func(o *goredis.Options) {
		o.ReadTimeout = time.Second
		o.WriteTimeout = time.Second
		o.ContextTimeoutEnabled = ctxTimeouts
	})
	store := newStore(t, client, nil)

	const (
		workers = 18
		timeout = 200 * time.Millisecond
		// A decision is at most two calls: Allow, then Success.
		bound = 2*timeout + lateSlack
	)
	type side struct {
		p                   *lockout.Policy
		mode                lockout.Outage
		ok, degraded        atomic.Int64 // decisions: by the store, and while it was failing (each as the mode says)
		lastClean           atomic.Int64 // unix nanos of the latest decision by the store
		okAtStop, okAtStart int64
		degradedDown        int64
		starts, ends        atomic.Int64
	}
	sides := []*side{{mode: lockout.Fallback}, {mode: lockout.FailClosed}, {mode: lockout.AdmitUncounted}}
	rules := []lockout.Rule{
		lockout.ByUsername(math.MaxInt32), lockout.ByIP(math.MaxInt32), lockout.ByUsernameAndIP(math.MaxInt32),
	}
	for i, sd := range sides {
		p, err := lockout.New(store, lockout.Config{
			Rules:   rules,
			Prefix:  fmt.Sprintf("outage%d", i),
			Timeout: timeout,
			Outage:  sd.mode,
			Logger:  slog.New(slog.DiscardHandler),
			Hooks: lockout.Hooks{Degraded: func(_ context.Context, e lockout.DegradedEvent) {
				if e.Start {
					sd.starts.Add(1)
				} else {
					sd.ends.Add(1)
				}
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		sd.p = p
	}
	// Warm up: the pool has connections, the script is loaded.
	for _, sd := range sides {
		if ok, err := sd.p.Check(t.Context(), lockout.Subject{Username: "warm", IP: "192.0.2.1"},
			func(context.Context) (bool, error) { return true, nil }); !ok || err != nil {
			t.Fatalf("warm-up decision: %v, %v", ok, err)
		}
	}
	base := settledGoroutines(t, 0)

	var (
		stop     atomic.Bool
		late     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		slowest  time.Duration
		problems []string
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	for g := range workers {
		sd := sides[g%len(sides)]
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					problem("worker %d panicked: %v", g, r)
				}
			}()
			for i := 0; !stop.Load(); i++ {
				s := lockout.Subject{Username: fmt.Sprintf("user%d", g), IP: fmt.Sprintf("10.0.%d.%d", g, i%200)}
				start := time.Now()
				a, err := sd.p.Allow(context.Background(), s)
				var rerr error
				if err == nil {
					if i%2 == 0 { // a success costs a call, a failure none
						rerr = a.Success(context.Background())
					} else {
						rerr = a.Failure(context.Background())
					}
				}
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
				if took > bound {
					late.Add(1)
				}
				switch {
				case err == nil && a.Err() == nil && !a.Fallback():
					if rerr == nil {
						sd.ok.Add(1)
						sd.lastClean.Store(time.Now().UnixNano())
					} // else: the report failed, which the outcome survives
				case sd.mode == lockout.Fallback && err == nil && a.Fallback() && a.Err() == nil:
					sd.degraded.Add(1)
				case sd.mode == lockout.AdmitUncounted && err == nil && a.Err() != nil && !a.Fallback():
					sd.degraded.Add(1)
				case sd.mode == lockout.FailClosed && errors.Is(err, lockout.ErrUnavailable):
					sd.degraded.Add(1)
				default:
					problem("%v: Allow = %v, %v", sd.mode, a, err)
				}
				if err != nil || a.Err() != nil || a.Fallback() {
					time.Sleep(5 * time.Millisecond) // do not spin while the store is down
				}
			}
		})
	}

	time.Sleep(300 * time.Millisecond)
	for _, sd := range sides {
		sd.okAtStop = sd.ok.Load()
	}
	srv.Stop()
	time.Sleep(600 * time.Millisecond)
	for _, sd := range sides {
		sd.degradedDown = sd.degraded.Load()
	}
	srv.Start()
	restarted := time.Now()
	for _, sd := range sides {
		sd.okAtStart = sd.ok.Load()
	}
	recovered := func() bool {
		for _, sd := range sides {
			if sd.lastClean.Load() < restarted.Add(200*time.Millisecond).UnixNano() {
				return false
			}
		}
		return true
	}
	for time.Since(restarted) < 5*time.Second && !recovered() {
		time.Sleep(50 * time.Millisecond)
	}
	recoveredAfter := time.Since(restarted)
	stop.Store(true)
	wg.Wait()
	// Degraded mode ends once the fallback's counts are written back,
	// which goes on while decisions already go to the store.
	for _, sd := range sides {
		for deadline := time.Now().Add(3 * time.Second); sd.ends.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}

	for _, sd := range sides {
		t.Logf("%v: %d clean decisions before the stop; %d decided as the mode says while down; %d clean decisions after the restart",
			sd.mode, sd.okAtStop, sd.degradedDown, sd.ok.Load()-sd.okAtStart)
		if sd.okAtStop == 0 {
			t.Errorf("%v: no clean decision before the stop", sd.mode)
		}
		if sd.degradedDown == 0 {
			t.Errorf("%v: no degraded decision while the server was down", sd.mode)
		}
		if sd.starts.Load() != 1 || sd.ends.Load() != 1 {
			t.Errorf("%v: degraded mode started %d and ended %d times, want once each", sd.mode, sd.starts.Load(), sd.ends.Load())
		}
	}
	t.Logf("slowest decision %v (bound %v); decisions went back to the store %v after the restart", slowest, bound, recoveredAfter)
	if n := late.Load(); n > 0 {
		t.Errorf("%d decisions took longer than %v (slowest %v)", n, bound, slowest)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if !recovered() {
		t.Fatal("decisions did not go back to the store within 5 s of the restart")
	}
	// The same client and store keep working: a fresh subject is counted.
	for _, sd := range sides {
		s := lockout.Subject{Username: "fresh", IP: "192.0.2.9"}
		a, err := sd.p.Allow(t.Context(), s)
		if err != nil || a.Err() != nil || a.Fallback() {
			t.Fatalf("%v after the restart: Allow = %v, %v", sd.mode, a, err)
		}
		st, err := sd.p.Status(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st {
			if r.Attempts != 1 {
				t.Errorf("after the restart: rule %s holds %d attempts, want 1", r.Rule, r.Attempts)
			}
		}
	}
	settledGoroutines(t, base)
}

// TestDecisionCommandsDevicesAndRepeats extends TestDecisionCommands to
// known devices and the memory of wrong passwords: an admitted decision
// still sends one command (a device's attempt, a fingerprinted one, a
// repeat); the failure of a fingerprinted attempt sends none (its memory
// goes in the background, in batches); a repeat's failure one (its
// give-back); a success one, as before.
func TestDecisionCommandsDevicesAndRepeats(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	store := newStore(t, client, nil)
	rules := []lockout.Rule{lockout.ByUsername(1000), lockout.ByIP(1000), lockout.ByUsernameAndIP(1000)}
	p, err := lockout.New(store, lockout.Config{
		Rules:        rules,
		Logger:       slog.New(slog.DiscardHandler),
		Devices:      &lockout.DeviceConfig{Keys: [][]byte{[]byte(strings.Repeat("k", lockout.MinSecretLen))}, Rule: lockout.Rule{Limit: 1000}},
		Fingerprints: &lockout.FingerprintConfig{Secret: []byte(strings.Repeat("s", lockout.MinSecretLen))},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	admins := []*goredis.Client{client}
	token, _, err := p.DeviceToken("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	plain := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
	device := plain
	device.DeviceToken = token
	fresh := func(i int) lockout.Subject {
		s := plain
		s.PasswordFingerprint = p.Fingerprint(fmt.Sprint("guess ", i))
		return s
	}
	repeat := plain
	repeat.PasswordFingerprint = p.Fingerprint("old password")
	// Warm up: counters exist, "old password" is remembered.
	for _, s := range []lockout.Subject{plain, device, repeat} {
		a, err := p.Allow(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(t.Context())
	}
	type step struct {
		name    string
		subject func(i int) lockout.Subject
		success bool
		// commands sent by Allow, and by the outcome
		allow, outcome int64
	}
	for _, st := range []step{
		{"plain failure", func(int) lockout.Subject { return plain }, false, 1, 0},
		{"known device failure", func(int) lockout.Subject { return device }, false, 1, 0},
		{"known device success", func(int) lockout.Subject { return device }, true, 1, 1},
		{"fingerprinted failure", fresh, false, 1, 0},
		{"repeated wrong password", func(int) lockout.Subject { return repeat }, false, 1, 1},
	} {
		if st.name == "repeated wrong password" {
			// The fresh ones pushed it out of the last three: again.
			a, err := p.Allow(t.Context(), repeat)
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(t.Context())
		}
		var desc string
		var total int64
		const n = 10
		for i := range n {
			// The memory's background writes land between decisions.
			time.Sleep(memoryWritten)
			before := commandCalls(t, admins)
			a, err := p.Allow(t.Context(), st.subject(i))
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			mid := commandCalls(t, admins)
			if st.success {
				a.Success(t.Context())
			} else {
				a.Failure(t.Context())
			}
			after := commandCalls(t, admins)
			var sent int64
			desc, sent = describeCalls(before, mid)
			if sent != st.allow {
				t.Errorf("%s: Allow sent %d commands, want %d: %s", st.name, sent, st.allow, desc)
			}
			if d, sent := describeCalls(mid, after); sent != st.outcome {
				t.Errorf("%s: the outcome sent %d commands, want %d: %s", st.name, sent, st.outcome, d)
			}
			for name, v := range mid {
				total += v - before[name]
			}
		}
		t.Logf("%s: Allow: %s (%.1f commands on the server)", st.name, desc, float64(total)/n)
	}

	// A burst of distinct wrong passwords: their memory goes in a few
	// calls, not one per failure.
	time.Sleep(memoryWritten)
	before := commandCalls(t, admins)
	const burst, workers = 40, 8
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range burst / workers {
				a, err := p.Allow(t.Context(), fresh(1000+g*burst+i))
				if err != nil {
					t.Error(err)
					return
				}
				a.Failure(t.Context())
			}
		})
	}
	wg.Wait()
	time.Sleep(memoryWritten)
	desc, sent := describeCalls(before, commandCalls(t, admins))
	if background := sent - burst; background < 1 || background > burst/4 {
		t.Errorf("%d fingerprinted failures sent %d commands (%s): want %d for the decisions and 1 to %d for the memory", burst, sent, desc, burst, burst/4)
	}
	t.Logf("%d fingerprinted failures: %s", burst, desc)
}

// memoryWritten is long enough for the policy's background writer to have
// written the memory of wrong passwords (it gathers for 5 ms).
const memoryWritten = 100 * time.Millisecond

// TestDecisionCommands counts the commands the server runs for an admitted
// decision with three rules over existing counters (the steady state):
// one EVALSHA, whose script runs three INCRBY, three PTTL (a give-back
// must know when the counter it is for ends) and one EXISTS over the three
// lock markers, and nothing else; with Options.GuardGiveBacks, three
// PEXPIRETIME and one TIME in place of the PTTLs.
func TestDecisionCommands(t *testing.T) {
	// With the journal on, a decision still sends one command: the
	// journal's records go in the background, in batches.
	for _, tc := range []struct{ journal, guard bool }{{false, false}, {true, false}, {false, true}} {
		journal := tc.journal
		t.Run(fmt.Sprintf("journal=%v,guard=%v", tc.journal, tc.guard), func(t *testing.T) {
			srv := testserver.Redis(t)
			client := newClient(t, srv.Addr, nil)
			store := newStore(t, client, &redisstore.Options{GuardGiveBacks: tc.guard})
			if store.GuardsExpiry() != tc.guard {
				t.Fatalf("GuardsExpiry() = %v with GuardGiveBacks %v on Redis 7", store.GuardsExpiry(), tc.guard)
			}
			rules := []lockout.Rule{lockout.ByUsername(1000), lockout.ByIP(1000), lockout.ByUsernameAndIP(1000)}
			cfg := lockout.Config{Rules: rules, Logger: slog.New(slog.DiscardHandler)}
			if journal {
				cfg.Journal = &lockout.JournalConfig{}
			}
			p, err := lockout.New(store, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			sync := func() {
				if journal {
					if err := p.SyncJournal(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
			}
			s := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
			a, err := p.Allow(t.Context(), s) // creates the counters
			if err != nil {
				t.Fatal(err)
			}
			a.Failure(t.Context())
			sync()
			admins := []*goredis.Client{client}
			const n = 20
			var total int64
			var desc string
			start := commandCalls(t, admins)
			for range n {
				before := commandCalls(t, admins)
				a, err := p.Allow(t.Context(), s)
				if err != nil {
					t.Fatal(err)
				}
				after := commandCalls(t, admins)
				a.Failure(t.Context()) // no call: the reservation counts it
				sync()                 // its record is written before the next decision
				var sent int64
				desc, sent = describeCalls(before, after)
				if sent != 1 {
					t.Fatalf("an admitted decision sent %d commands, want 1: %s", sent, desc)
				}
				for name, v := range after {
					total += v - before[name]
				}
			}
			t.Logf("an admitted decision: %s", desc)
			if per, want := float64(total)/n, 8.0; tc.guard && per > want+1 || !tc.guard && per > want {
				t.Errorf("an admitted decision ran %.1f commands on the server, want at most 8 (EVALSHA, 3 INCRBY, 3 PTTL, 1 EXISTS; guarded, 9: 3 PEXPIRETIME and 1 TIME for the PTTLs): %s", per, desc)
			}
			if journal {
				all, _ := describeCalls(start, commandCalls(t, admins))
				t.Logf("%d decisions and their journal records: %s", n, all)
				if st := p.JournalStats(); st.Written != n+1 || st.Dropped != 0 {
					t.Errorf("journal %+v, want %d records written", st, n+1)
				}
			}
		})
	}
}

// TestEvictionDegrades sets a server to evict keys after New: the store's
// next check fails its calls, the policy's fallback decides (and holds
// alice to her limit), and once the server is set back the policy returns
// to the store, with alice's lock written back to it.
func TestEvictionDegrades(t *testing.T) {
	srv := testserver.Redis(t)
	client := newClient(t, srv.Addr, nil)
	store := newStore(t, client, &redisstore.Options{EvictionCheckInterval: 20 * time.Millisecond})
	events := make(chan lockout.DegradedEvent, 8)
	p, err := lockout.New(store, lockout.Config{
		Rules:         []lockout.Rule{lockout.ByUsername(3)},
		ProbeInterval: 50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
		Hooks:         lockout.Hooks{Degraded: func(_ context.Context, e lockout.DegradedEvent) { events <- e }},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	configure := func(policy string) {
		t.Helper()
		for _, kv := range [][2]string{{"maxmemory", "1gb"}, {"maxmemory-policy", policy}} {
			// Not t.Context(): the cleanup runs after it ends.
			if err := client.ConfigSet(context.Background(), kv[0], kv[1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { configure("noeviction") })
	// next makes decisions on others (which also drive the probes of the
	// store in degraded mode) until the policy reports a degraded event.
	next := func(others string) lockout.DegradedEvent {
		t.Helper()
		for i := range 500 {
			a, err := p.Allow(t.Context(), lockout.Subject{Username: fmt.Sprint(others, i)})
			if err != nil {
				t.Fatal(err)
			}
			a.Success(t.Context())
			select {
			case e := <-events:
				return e
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Fatal("no degraded event in 5 s")
		return lockout.DegradedEvent{}
	}
	configure("allkeys-lru")
	if start := next("warm"); !start.Start || !errors.Is(start.Err, redisstore.ErrEvicting) {
		t.Fatalf("degraded event %+v, want a start for an error wrapping ErrEvicting", start)
	}
	admitted := 0
	for range 10 {
		a, err := p.Allow(t.Context(), lockout.Subject{Username: "alice"})
		if err == nil {
			admitted++
			a.Failure(t.Context())
		}
	}
	if admitted != 3 {
		t.Errorf("%d guesses at alice admitted while the store may evict keys, want the limit, 3", admitted)
	}
	configure("noeviction")
	if end := next("later"); end.Start {
		t.Fatalf("degraded event %+v, want its end", end)
	}
	if _, err := p.Allow(t.Context(), lockout.Subject{Username: "alice"}); !errors.Is(err, lockout.ErrLocked) {
		t.Errorf("alice after the store's return: %v, want her lock, written back", err)
	}
	if n, err := client.Exists(t.Context(), "lockout:l:username:{u=alice}").Result(); err != nil || n != 1 {
		t.Errorf("alice's lock marker in Redis: %d, %v; want it written back", n, err)
	}
}
