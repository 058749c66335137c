package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestSentinel runs the store over go-redis failover clients on a master,
// a replica and three sentinels: the conformance suite, and a failover
// drill. Each has a Sentinel set of its own, and they run in parallel with
// each other and with TestConformance and TestCluster.
func TestSentinel(t *testing.T) {
	t.Parallel()

	t.Run("Conformance", func(t *testing.T) {
		t.Parallel()
		sen := testserver.RedisSentinel(t)
		client := goredis.NewUniversalClient(&goredis.UniversalOptions{
			MasterName: sen.MasterName,
			Addrs:      sen.SentinelAddrs,
		})
		t.Cleanup(func() { client.Close() })
		if _, ok := client.(*goredis.Client); !ok {
			t.Fatalf("NewUniversalClient with MasterName returned a %T, want the *redis.Client of a failover client", client)
		}
		// A failover during the suite (the sentinels took a stall of the
		// loaded machine for a dead master) would explain its failures.
		t.Cleanup(func() {
			if addr := sentinelMaster(t, sen); addr != sen.Master.Addr {
				t.Errorf("the sentinels failed over to %s during the suite: what the master had not replicated was lost", addr)
			}
		})
		conformance.Run(t, harness(func(t testing.TB) backend.Backend {
			testserver.FlushRedis(t, sentinelMaster(t, sen))
			return newStore(t, client, journalOptions())
		}))
	})

	t.Run("Failover", func(t *testing.T) {
		t.Parallel()
		failoverDrill(t, testserver.RedisSentinel(t))
	})
}

// sentinelMaster returns the address of sen's master now, failing t when
// the sentinels do not agree on one within 5 s.
func sentinelMaster(t testing.TB, sen *testserver.Sentinel) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := sen.MasterAddr(ctx)
	if err != nil {
		t.Fatalf("the sentinels name no master: %v", err)
	}
	return addr
}

// failoverDrill kills the master under a policy with the default degraded
// mode (Outage Fallback, ProbeInterval 1 s, Timeout 500 ms) and makes
// decisions for fresh subjects all along: each ends within its deadline,
// those made while no master answers go to the fallback, and once the
// sentinels have promoted the replica decisions go to the store again and
// work there. What was replicated before the kill (a lock, counts) is
// still there after it; what the fallback counted is written back.
func failoverDrill(t *testing.T, sen *testserver.Sentinel) {
	const (
		deadline = lockout.DefaultTimeout
		// drillTimeout bounds the whole failover: a down-after, the vote,
		// the promotion, and one retry of a stalled failover (which comes
		// 2x failover-timeout after the first try).
		drillTimeout = testserver.SentinelDownAfter + 2*testserver.SentinelFailoverTimeout + 15*time.Second
		// backBound bounds how long after the promotion the policy is back
		// on the store: go-redis follows the switch, and the next probe
		// (ProbeInterval later at most) finds the store answering.
		backBound = 2*lockout.DefaultProbeInterval + lateSlack
	)
	client := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName:            sen.MasterName,
		SentinelAddrs:         sen.SentinelAddrs,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { client.Close() })
	store := newStore(t, client, nil)

	var mu sync.Mutex
	var events []string
	start := time.Now()
	p, err := lockout.New(store, lockout.Config{
		Rules:  attackRules(), // by username, limit 5; by IP, limit 20
		Logger: slog.New(slog.DiscardHandler),
		Hooks: lockout.Hooks{Degraded: func(_ context.Context, e lockout.DegradedEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%v: start %v (%v) lasted %v",
				time.Since(start).Round(time.Millisecond), e.Start, e.Err, e.Duration.Round(time.Millisecond)))
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := t.Context()

	// fail makes one decision for s and reports a failed login, on the
	// store, as long as the master is up.
	fail := func(s lockout.Subject) {
		t.Helper()
		a, err := p.Allow(ctx, s)
		if err != nil {
			t.Fatalf("Allow(%v) before the failover: %v", s, err)
		}
		if a.Fallback() {
			t.Fatalf("Allow(%v) before the failover was decided by the fallback", s)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatalf("Failure(%v) before the failover: %v", s, err)
		}
	}
	mallory := lockout.Subject{Username: "mallory", IP: "192.0.2.1"}
	for range 5 {
		fail(mallory)
	}
	bob := lockout.Subject{Username: "bob", IP: "192.0.2.2"}
	fail(bob)
	fail(bob)
	// The replica has all of it before the master dies; what a failover
	// loses is only what had not reached it.
	master := newClient(t, sen.Master.Addr, func(o *goredis.Options) { o.MaxRetries = -1 })
	if n, err := master.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want the replica to acknowledge", n, err)
	}

	killed := time.Now()
	sen.Master.Stop()

	var (
		decisions, onFallback int
		slowest               time.Duration
		firstFallback         *lockout.Subject
		promoted, back        time.Duration
	)
	for i := 0; ; i++ {
		s := lockout.Subject{Username: fmt.Sprintf("user%d", i), IP: fmt.Sprintf("10.%d.%d.1", i/250, i%250)}
		begin := time.Now()
		a, err := p.Allow(ctx, s)
		took := time.Since(begin)
		if err != nil {
			t.Fatalf("decision %d (%v after the kill): Allow: %v", i, time.Since(killed).Round(time.Millisecond), err)
		}
		fallback := a.Fallback()
		begin = time.Now()
		err = a.Failure(ctx)
		took = max(took, time.Since(begin))
		if err != nil {
			t.Fatalf("decision %d (%v after the kill): Failure: %v", i, time.Since(killed).Round(time.Millisecond), err)
		}
		if took > deadline+lateSlack {
			t.Errorf("decision %d (%v after the kill, fallback %v) took %v, deadline %v",
				i, time.Since(killed).Round(time.Millisecond), fallback, took, deadline)
		}
		slowest = max(slowest, took)
		decisions++
		if fallback {
			onFallback++
			if firstFallback == nil {
				firstFallback = &s
			}
		}
		if promoted == 0 {
			actx, cancel := context.WithTimeout(ctx, time.Second)
			if addr, err := sen.MasterAddr(actx); err == nil && addr == sen.Replica.Addr {
				promoted = time.Since(killed)
			}
			cancel()
		}
		if promoted != 0 && !fallback {
			back = time.Since(killed)
			break
		}
		if since := time.Since(killed); since > drillTimeout {
			mu.Lock()
			t.Logf("degraded mode: %q", events)
			mu.Unlock()
			t.Fatalf("%v after the kill: replica promoted after %v (0: not yet), decisions on the store again: no", since, promoted)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	t.Logf("master killed; replica promoted after %v; decisions on the store again after %v; "+
		"%d decisions, %d by the fallback, slowest %v; degraded mode: %q",
		promoted.Round(time.Millisecond), back.Round(time.Millisecond), decisions, onFallback, slowest, events)
	mu.Unlock()
	if onFallback == 0 {
		t.Errorf("no decision went to the fallback while no master answered")
	}
	if back-promoted > backBound {
		t.Errorf("decisions went back to the store %v after the promotion, want within %v", back-promoted, backBound)
	}

	status := func(s lockout.Subject) []lockout.RuleStatus {
		t.Helper()
		st, err := p.Status(ctx, s)
		if err != nil {
			t.Fatalf("Status(%v) after the failover: %v", s, err)
		}
		return st
	}
	// Replicated before the kill: still there.
	if st := status(mallory); !st[0].Locked {
		t.Errorf("mallory's lock, replicated before the kill, is gone after the failover: %+v", st[0])
	}
	var refused *lockout.RefusedError
	if _, err := p.Allow(ctx, mallory); !errors.As(err, &refused) || refused.Reason != lockout.ReasonLocked || refused.Fallback {
		t.Errorf("Allow(mallory) after the failover = %v; want refused by the store's lock", err)
	}
	if st := status(bob); st[0].Attempts != 2 {
		t.Errorf("bob's count after the failover = %d, want the 2 failures replicated before the kill", st[0].Attempts)
	}
	// Counted by the fallback during the failover: written back.
	if st := status(*firstFallback); st[0].Attempts != 1 {
		t.Errorf("%v's count after the failover = %d, want the failure the fallback counted", *firstFallback, st[0].Attempts)
	}
	// The promoted master counts and locks (the store loads its script
	// there on the first NOSCRIPT).
	trudy := lockout.Subject{Username: "trudy", IP: "192.0.2.3"}
	for range 5 {
		fail(trudy)
	}
	if _, err := p.Allow(ctx, trudy); !errors.As(err, &refused) || refused.Reason != lockout.ReasonLocked || refused.Fallback {
		t.Errorf("Allow(trudy) after 5 failures on the promoted master = %v; want refused by the store's lock", err)
	}
	if st := status(trudy); !st[0].Locked || st[0].Lockouts != 1 {
		t.Errorf("trudy after 5 failures on the promoted master: %+v; want locked once", st[0])
	}
}
