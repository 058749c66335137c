package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"
	"go.etcd.io/bbolt"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/backend/memcache"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
)

// result is what one run of the tool gave.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs the tool in-process, with stdin as its input.
func ctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	r := result{code, out.String(), errb.String()}
	t.Logf("lockoutctl %s\n-> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (r result) want(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d (stderr: %s)", r.code, code, r.stderr)
	}
	for _, s := range contains {
		if !strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

// fixture is a real store: its -store URL, and how a service opens it.
type fixture struct {
	name string
	url  string
	// open opens the store as a service does. A bolt file is held while
	// it is open: the test closes the service before running the tool.
	open func(t *testing.T) backend.Backend
}

func redisFixture(t *testing.T) fixture {
	srv := testserver.Redis(t)
	testserver.FlushRedis(t, srv.Addr)
	return fixture{"redis", "redis://" + srv.Addr, func(t *testing.T) backend.Backend {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		s, err := redisstore.New(t.Context(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return s
	}}
}

func memcachedFixture(t *testing.T) fixture {
	srv := testserver.Memcached(t)
	testserver.FlushMemcached(t, srv.Addr)
	return fixture{"memcached", "memcache://" + srv.Addr, func(t *testing.T) backend.Backend {
		s, err := memcache.NewServers([]string{srv.Addr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
}

func boltFixture(t *testing.T) fixture {
	path := filepath.Join(t.TempDir(), "lockout.db")
	open := func(t *testing.T) backend.Backend {
		s, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open(t).Close() // the tool never creates a file
	return fixture{"bolt", "bolt://" + path, open}
}

// service is a login service's policy on a store: a username rule with
// limit 6, a username+IP rule with limit 3 (so that three failures from
// each of two addresses lock both), an IP rule with limit 100, no lock cache
// (an unlock shows at once), and the journal where the store keeps one.
type service struct {
	*lockout.Policy
	store backend.Backend
}

func newService(t *testing.T, f fixture, prefix string) *service {
	t.Helper()
	store := f.open(t)
	cfg := lockout.Config{
		Prefix:       prefix,
		Rules:        []lockout.Rule{lockout.ByUsername(6), lockout.ByUsernameAndIP(3), lockout.ByIP(100)},
		LockCacheTTL: lockout.NoLockCache,
		Outage:       lockout.FailClosed,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if _, ok := store.(backend.Journal); ok {
		cfg.Journal = &lockout.JournalConfig{}
	}
	p, err := lockout.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &service{p, store}
	t.Cleanup(func() { s.Close() })
	return s
}

func (s *service) Close() {
	s.Policy.Close()
	s.store.Close()
}

// lock fails username's password from ip three times: its username+IP
// key is locked, and its username key after two addresses.
func (s *service) lock(t *testing.T, username, ip string) {
	t.Helper()
	ctx := t.Context()
	for range 3 {
		a, err := s.Allow(ctx, lockout.Subject{Username: username, IP: ip})
		if err != nil {
			t.Fatalf("Allow %s from %s: %v", username, ip, err)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Allow(ctx, lockout.Subject{Username: username, IP: ip}); !errors.Is(err, lockout.ErrLocked) {
		t.Fatalf("after 3 failures: Allow %s from %s: %v, want locked", username, ip, err)
	}
	if _, ok := s.store.(backend.Journal); ok {
		if err := s.SyncJournal(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// admitted reports whether username's next login from ip goes ahead, and
// reports it as a success.
func (s *service) admitted(t *testing.T, username, ip string) bool {
	t.Helper()
	a, err := s.Allow(t.Context(), lockout.Subject{Username: username, IP: ip})
	if errors.Is(err, lockout.ErrLocked) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Success(t.Context()); err != nil {
		t.Fatal(err)
	}
	return true
}

// statusJSON is the JSON of status.
type statusJSON struct {
	Rules []struct {
		Rule     string `json:"rule"`
		Key      string `json:"key"`
		Attempts *int64 `json:"attempts"`
		Limit    *int   `json:"limit"`
		Locked   bool   `json:"locked"`
		Lockouts *int64 `json:"lockouts"`
		StoreKey string `json:"store_key"`
	} `json:"rules"`
	Notes []string `json:"notes"`
}

type locksJSON struct {
	Locks []struct {
		Rule     string            `json:"rule"`
		Subject  map[string]string `json:"subject"`
		Key      string            `json:"key"`
		StoreKey string            `json:"store_key"`
	} `json:"locks"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("JSON %q: %v", s, err)
	}
	return v
}

// TestUnlockAdmits locks alice under the username rule and the
// username+IP rule, from two addresses, shows her status and the locks as
// tables and JSON, unlocks her by username alone, and checks her next
// correct login goes ahead from both addresses, and that the journal shows
// the unlock with the operator.
func TestUnlockAdmits(t *testing.T) {
	for _, mk := range []func(*testing.T) fixture{redisFixture, boltFixture} {
		f := mk(t)
		t.Run(f.name, func(t *testing.T) {
			svc := newService(t, f, "app")
			svc.lock(t, "alice", "192.0.2.1")
			svc.lock(t, "Alice", "2001:db8::1") // the same canonical user; an IPv6 /64: her username is locked now
			svc.lock(t, "bob", "192.0.2.1")
			svc.Close() // a bolt file is held while open
			common := []string{"-store", f.url, "-prefix", "app", "-operator", "tester"}

			r := ctl(t, "", append([]string{"status"}, append(common, "-username", "alice")...)...)
			r.want(t, 0, "RULE", "username+ip", "u=alice,ip=192.0.2.1", "u=alice,ip=2001:db8::/64", "left")
			if strings.Contains(r.stdout, "bob") {
				t.Error("status of alice shows bob")
			}
			st := decode[statusJSON](t, ctl(t, "", append([]string{"status", "-json", "-rules", "username:6,username+ip:3"}, append(common, "-username", "alice")...)...).stdout)
			byKey := map[string]bool{}
			for _, row := range st.Rules {
				if !row.Locked {
					t.Errorf("%s %s: not locked", row.Rule, row.Key)
				}
				if want := map[string]int{"username": 6, "username+ip": 3}[row.Rule]; row.Limit == nil || *row.Limit != want {
					t.Errorf("%s: limit %v, want %d from -rules", row.Rule, row.Limit, want)
				}
				byKey[row.Rule+" "+row.Key] = true
			}
			for _, k := range []string{"username u=alice", "username+ip u=alice,ip=192.0.2.1", "username+ip u=alice,ip=2001:db8::/64"} {
				if !byKey[k] {
					t.Errorf("status -json lacks %s: %+v", k, st.Rules)
				}
			}

			r = ctl(t, "", append([]string{"locks"}, common...)...)
			r.want(t, 0, "SUBJECT", "u=alice,ip=192.0.2.1", "u=bob,ip=192.0.2.1", "u=alice", "app:l:username:{u=alice}")
			locks := decode[locksJSON](t, ctl(t, "", append([]string{"locks", "-json"}, common...)...).stdout)
			if len(locks.Locks) != 4 { // alice; alice and bob from .1, alice from the /64
				t.Errorf("locks -json: %d locks, want 4: %+v", len(locks.Locks), locks.Locks)
			}

			ctl(t, "", append([]string{"unlock"}, append(common, "-username", "alice")...)...).want(t, 0, "lifted every lock")

			svc = newService(t, f, "app")
			for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
				if !svc.admitted(t, "alice", ip) {
					t.Errorf("after unlock -username alice: alice from %s refused", ip)
				}
			}
			if svc.admitted(t, "bob", "192.0.2.1") {
				t.Error("unlock of alice unlocked bob")
			}
			if _, ok := svc.store.(backend.Journal); !ok {
				t.Fatalf("%T keeps no journal", svc.store) // Redis and bbolt do
			}
			{
				svc.SyncJournal(t.Context())
				svc.Close()
				r := ctl(t, "", append([]string{"attempts", "-outcome", "unlock"}, common...)...)
				r.want(t, 0, "unlock", "by tester via cli")
				r = ctl(t, "", append([]string{"attempts", "-json", "-username", "ALICE", "-limit", "2"}, common...)...)
				var page struct {
					Records []recordRow `json:"records"`
					Next    string      `json:"next"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
					t.Fatal(err)
				}
				if len(page.Records) != 2 || page.Next == "" {
					t.Fatalf("attempts -limit 2: %d records, next %q", len(page.Records), page.Next)
				}
				for _, rec := range page.Records {
					if rec.Username != "alice" {
						t.Errorf("attempts -username ALICE: record of %q", rec.Username)
					}
				}
				ctl(t, "", append([]string{"attempts", "-before", page.Next, "-username", "alice"}, common...)...).want(t, 0, "failure")
			}
		})
	}
}

// TestMemcachedPartial: memcached cannot list keys, so unlocking alice by
// username alone lifts her username lock but not her username+IP lock: the
// tool says so with exit code 3 and asks for -ip; with -ip she is admitted.
func TestMemcachedPartial(t *testing.T) {
	f := memcachedFixture(t)
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	svc.lock(t, "alice", "192.0.2.2")
	common := []string{"-store", f.url, "-prefix", "app", "-operator", "tester"}

	r := ctl(t, "", append([]string{"unlock"}, append(common, "-username", "alice")...)...)
	r.want(t, exitPartial, "partial", "memcached cannot list keys", "rule username+ip: add -ip ADDR")
	if svc.admitted(t, "alice", "192.0.2.1") {
		t.Fatal("the username+ip lock was lifted on memcached by username alone?")
	}
	ctl(t, "", append([]string{"status"}, append(common, "-username", "alice")...)...).want(t, 0, "note: rule username+ip: not shown", "add -ip ADDR")
	ctl(t, "", append([]string{"status"}, append(common, "-username", "alice", "-ip", "192.0.2.1")...)...).want(t, 0, "u=alice,ip=192.0.2.1", "left")
	ctl(t, "", append([]string{"unlock"}, append(common, "-username", "alice", "-ip", "192.0.2.1")...)...).want(t, 0, "lifted")
	if !svc.admitted(t, "alice", "192.0.2.1") {
		t.Fatal("after unlock -username alice -ip: refused")
	}

	for _, cmd := range []struct {
		args []string
		msg  string
	}{
		{[]string{"locks"}, "memcached cannot list keys"},
		{[]string{"reset-all", "-yes"}, "memcached cannot list keys"},
		{[]string{"attempts"}, "memcached keeps no journal"},
	} {
		ctl(t, "", append(cmd.args, common...)...).want(t, exitPartial, cmd.msg)
	}
}

// TestResetAll: reset-all on prefix p removes p's keys and leaves those of
// p:x and q alone; it asks first unless -yes.
func TestResetAll(t *testing.T) {
	for _, mk := range []func(*testing.T) fixture{redisFixture, boltFixture} {
		f := mk(t)
		t.Run(f.name, func(t *testing.T) {
			for _, prefix := range []string{"p", "p:x", "q", "p:l"} {
				svc := newService(t, f, prefix)
				svc.lock(t, "alice", "192.0.2.1")
				svc.lock(t, "alice", "192.0.2.2")
				svc.Close()
			}
			count := func(prefix string) int {
				t.Helper()
				r := ctl(t, "", "locks", "-json", "-store", f.url, "-prefix", prefix)
				if r.code != 0 {
					t.Fatalf("locks: exit %d", r.code)
				}
				return len(decode[locksJSON](t, r.stdout).Locks)
			}
			for _, p := range []string{"p", "p:x", "q", "p:l"} {
				if n := count(p); n != 3 {
					t.Fatalf("prefix %s: %d locks, want 3", p, n)
				}
			}
			args := []string{"reset-all", "-store", f.url, "-prefix", "p"}
			ctl(t, "no\n", args...).want(t, exitError, "not confirmed", "Type yes")
			ctl(t, "", args...).want(t, exitError, "not confirmed")
			if n := count("p"); n != 3 {
				t.Fatalf("unconfirmed reset-all removed locks: %d left", n)
			}
			ctl(t, "yes\n", args...).want(t, 0, "removed")
			ctl(t, "", append(args, "-yes", "-json")...).want(t, 0, `"keys": 0`)
			want := map[string]int{"p": 0, "p:x": 3, "q": 3, "p:l": 3}
			for p, n := range want {
				if got := count(p); got != n {
					t.Errorf("after reset-all -prefix p: prefix %s has %d locks, want %d", p, got, n)
				}
			}
			// Counters and history of the other prefixes are there too.
			ctl(t, "", "status", "-store", f.url, "-prefix", "p:x", "-username", "alice").want(t, 0, "u=alice")
			svc := newService(t, f, "p:x")
			if svc.admitted(t, "alice", "192.0.2.1") {
				t.Error("reset-all of p unlocked alice under p:x")
			}
			svc.Close()
			svc = newService(t, f, "p")
			if !svc.admitted(t, "alice", "192.0.2.1") {
				t.Error("after reset-all of p: alice refused under p")
			}
		})
	}
}

// TestBoltHeld: while a service holds the bbolt file, the tool says so
// plainly, with exit code 4.
func TestBoltHeld(t *testing.T) {
	f := boltFixture(t)
	svc := newService(t, f, "app")
	path := strings.TrimPrefix(f.url, "bolt://")
	for _, store := range []string{f.url, path} {
		for _, cmd := range [][]string{{"status", "-username", "alice"}, {"locks"}, {"unlock", "-username", "alice"}} {
			start := time.Now()
			r := ctl(t, "", append(cmd, "-store", store, "-bolt-wait", "100ms")...)
			r.want(t, exitBusy, "held by a running service", "stop the service")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("gave up after %v, -bolt-wait 100ms", d)
			}
		}
	}
	svc.Close()
	ctl(t, "", "locks", "-store", path).want(t, 0, "no locks")
	ctl(t, "", "locks", "-store", path+".missing").want(t, exitError, "does not exist")
}

// TestRedisTopologies unlocks alice through a Sentinel URL and a Cluster
// seed list.
func TestRedisTopologies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel set and a Cluster")
	}
	t.Run("sentinel", func(t *testing.T) {
		s := testserver.RedisSentinel(t)
		url := "redis+sentinel://" + strings.Join(s.SentinelAddrs, ",") + "/" + s.MasterName
		f := fixture{"sentinel", url, func(t *testing.T) backend.Backend {
			c := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs, ContextTimeoutEnabled: true})
			t.Cleanup(func() { c.Close() })
			st, err := redisstore.New(t.Context(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}}
		unlockThrough(t, f)
	})
	t.Run("cluster", func(t *testing.T) {
		c := testserver.RedisCluster(t)
		url := "redis+cluster://" + strings.Join(c.Addrs, ",")
		f := fixture{"cluster", url, func(t *testing.T) backend.Backend {
			cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs, ContextTimeoutEnabled: true})
			t.Cleanup(func() { cc.Close() })
			st, err := redisstore.New(t.Context(), cc, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}}
		unlockThrough(t, f)
	})
}

func unlockThrough(t *testing.T, f fixture) {
	t.Helper()
	prefix := "topo" + time.Now().Format("150405.000000")
	svc := newService(t, f, prefix)
	svc.lock(t, "alice", "192.0.2.7")
	svc.lock(t, "alice", "192.0.2.8")
	ctl(t, "", "locks", "-store", f.url, "-prefix", prefix).want(t, 0, "u=alice,ip=192.0.2.7")
	ctl(t, "", "unlock", "-store", f.url, "-prefix", prefix, "-username", "alice").want(t, 0, "lifted")
	if !svc.admitted(t, "alice", "192.0.2.7") {
		t.Fatal("after unlock: refused")
	}
}

// TestUnlockKeyAndReset: unlock -key lifts one lock; reset forgets the
// history too.
func TestUnlockKeyAndReset(t *testing.T) {
	f := redisFixture(t)
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	svc.lock(t, "alice", "192.0.2.2")
	common := []string{"-store", f.url, "-prefix", "app"}
	ctl(t, "", append([]string{"unlock", "-key", "app:l:username:{u=alice}"}, common...)...).want(t, 0, "unlocked app:l:username:{u=alice}")
	if svc.admitted(t, "alice", "192.0.2.1") {
		t.Fatal("the username+ip lock was lifted by unlocking the username key")
	}
	ctl(t, "", append([]string{"unlock", "-key", "app:a:username:{u=alice}"}, common...)...).want(t, exitUsage, "not a lock key")
	ctl(t, "", append([]string{"unlock", "-key", "x", "-username", "alice"}, common...)...).want(t, exitUsage, "not both")
	st := decode[statusJSON](t, ctl(t, "", append([]string{"status", "-json", "-username", "alice", "-ip", "192.0.2.1"}, common...)...).stdout)
	lockouts := 0
	for _, r := range st.Rules {
		if r.Lockouts != nil {
			lockouts += int(*r.Lockouts)
		}
	}
	if lockouts != 2 {
		t.Fatalf("lockouts before reset: %d, want 2 (username, username+ip)", lockouts)
	}
	ctl(t, "", append([]string{"reset", "-username", "alice"}, common...)...).want(t, 0, "forgot everything")
	st = decode[statusJSON](t, ctl(t, "", append([]string{"status", "-json", "-username", "alice", "-ip", "192.0.2.1"}, common...)...).stdout)
	for _, r := range st.Rules {
		if r.Locked || (r.Lockouts != nil && *r.Lockouts != 0) || (r.Attempts != nil && *r.Attempts != 0 && r.Rule != "ip") {
			t.Errorf("after reset: %+v", r)
		}
	}
}

// TestUsage checks the usage errors: exit code 2, and a message.
func TestUsage(t *testing.T) {
	f := redisFixture(t)
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no command", nil, exitUsage, "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"help", []string{"help"}, exitOK, "reset-all"},
		{"no subject", []string{"status", "-store", f.url}, exitUsage, "give a subject"},
		{"no store", []string{"status", "-username", "a", "-store", ""}, exitUsage, "no store"},
		{"bad scheme", []string{"locks", "-store", "mongodb://x:1"}, exitUsage, "unknown scheme"},
		{"bad ip", []string{"status", "-store", f.url, "-ip", "nope"}, exitUsage, "-ip"},
		{"bad field", []string{"status", "-store", f.url, "-field", "novalue"}, exitUsage, "name=value"},
		{"field given twice", []string{"unlock", "-store", f.url, "-prefix", "app", "-rules", "tenant", "-field", "tenant=a", "-field", "tenant=b"}, exitUsage, "-field tenant: given twice"},
		{"stray argument", []string{"status", "-store", f.url, "alice"}, exitUsage, "unexpected argument"},
		{"empty operator", []string{"unlock", "-store", f.url, "-prefix", "app", "-username", "nobody", "-operator", ""}, exitUsage, "-operator"},
		{"empty operator, -key", []string{"unlock", "-store", f.url, "-prefix", "app", "-key", "app:l:username:{u=nobody}", "-operator", ""}, exitUsage, "-operator"},
		{"blank operator", []string{"reset", "-store", f.url, "-prefix", "app", "-username", "nobody", "-operator", " "}, exitUsage, "-operator"},
		{"limit 0", []string{"attempts", "-store", f.url, "-limit", "0"}, exitUsage, "-limit 0: want 1 to"},
		{"limit over the maximum", []string{"attempts", "-store", f.url, "-limit", "1001"}, exitUsage, "-limit 1001: want 1 to"},
		{"bad outcome", []string{"attempts", "-store", f.url, "-outcome", "win"}, exitUsage, "-outcome"},
		{"rules disagree with keys", []string{"status", "-store", f.url, "-prefix", "app", "-username", "a", "-rules", "username+ip=username"}, exitUsage, "keyed by"},
		{"bad rules", []string{"status", "-store", f.url, "-username", "a", "-rules", "username:x"}, exitUsage, "limit"},
		{"sentinel without master", []string{"locks", "-store", "redis+sentinel://127.0.0.1:1"}, exitUsage, "name the master"},
		{"two servers in redis://", []string{"locks", "-store", "redis://127.0.0.1:1,127.0.0.1:2"}, exitUsage, "one server"},
		{"unreachable", []string{"locks", "-store", "redis://127.0.0.1:1", "-timeout", "2s"}, exitError, "127.0.0.1:1"},
		{"unlock reaches no rule", []string{"unlock", "-store", f.url, "-prefix", "app", "-user-agent", "curl"}, exitUsage, "no rule"},
		{"reset reaches no rule", []string{"reset", "-store", f.url, "-prefix", "app", "-field", "tenant=acme"}, exitUsage, "no rule"},
		{"flags before the command", []string{"-store", f.url, "-prefix", "app", "status", "-username", "alice"}, exitOK, "u=alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl(t, "", tc.args...).want(t, tc.code, tc.msg)
		})
	}
}

func TestRuleOfKey(t *testing.T) {
	for _, tc := range []struct {
		prefix, key string
		name        string
		fields      []lockout.Field
		v4, v6      int
	}{
		{"p", "p:l:username:{u=alice}", "username", []lockout.Field{lockout.Username}, 0, 0},
		{"p", "p:a:username+ip:{u=alice,ip=192.0.2.0/24}", "username+ip", []lockout.Field{lockout.Username, lockout.IP}, 24, 0},
		{"p", "p:h:net:{ip=2001:db8::/56}", "net", []lockout.Field{lockout.IP}, 0, 56},
		{"p", "p:l:t:{f.tenant=acme,ua=curl}", "t", []lockout.Field{"tenant", lockout.UserAgent}, 0, 0},
		{"app:v1", "app:v1:l:ip:{ip=192.0.2.1}", "ip", []lockout.Field{lockout.IP}, 32, 0},
		// Other prefixes that begin with p's, and other data: not p's.
		{"p", "p:x:l:username:{u=alice}", "", nil, 0, 0},
		{"p", "p:l:l:username:{u=alice}", "", nil, 0, 0},
		{"p", "p:a:a:ip:{ip=192.0.2.1}", "", nil, 0, 0},
		{"p", "q:l:username:{u=alice}", "", nil, 0, 0},
		{"p", "p:session:abc", "", nil, 0, 0},
		{"p", "p:l:username:{u=alice", "", nil, 0, 0},
		{"p", "p:l:username:{x=alice}", "", nil, 0, 0},
		{"p", "p:l:ip:{ip=nope}", "", nil, 0, 0},
	} {
		name, kr, ok := ruleOfKey(tc.prefix, tc.key)
		if ok != (tc.name != "") || name != tc.name || !equalFields(kr.fields, tc.fields) || kr.ipv4 != tc.v4 || kr.ipv6 != tc.v6 {
			t.Errorf("ruleOfKey(%q, %q) = %q, %+v, %v; want %q, %v, /%d, /%d", tc.prefix, tc.key, name, kr, ok, tc.name, tc.fields, tc.v4, tc.v6)
		}
	}
}

func equalFields(a, b []lockout.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want string // name:fields:limit, ...
		err  bool
	}{
		{"username,username+ip,ip", "username:[username]:0 username+ip:[username ip]:0 ip:[ip]:0", false},
		{"u:5, ua+ip:10", "username:[username]:5 useragent+ip:[useragent ip]:10", false},
		{"login=username+tenant:3", "login:[username tenant]:3", false},
		{"username:0", "", true},
		{"username+", "", true},
	} {
		rules, err := parseRules(tc.spec, 32, 64)
		if (err != nil) != tc.err {
			t.Errorf("parseRules(%q): %v", tc.spec, err)
			continue
		}
		var got []string
		for _, r := range rules {
			got = append(got, r.Name+":"+fmtFields(r.Fields)+":"+strconv.Itoa(r.Limit))
		}
		if g := strings.Join(got, " "); !tc.err && g != tc.want {
			t.Errorf("parseRules(%q) = %s, want %s", tc.spec, g, tc.want)
		}
	}
}

func fmtFields(fs []lockout.Field) string {
	var s []string
	for _, f := range fs {
		s = append(s, string(f))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://u:secret@h:1/2":                      "redis://u:xxxxx@h:1/2",
		"redis+sentinel://:pw@a:1,b:2/master":         "redis+sentinel://:xxxxx@a:1,b:2/master",
		"redis://h:1":                                 "redis://h:1",
		"rediss+cluster://user@a:1,b:2?x=1":           "rediss+cluster://user@a:1,b:2",
		"redis+sentinel://a:1/m?sentinel_password=pw": "redis+sentinel://a:1/m",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHolds: a key's hashed value matches the hash of the value asked
// for; a value that merely looks like a hash (an attacker's user agent
// "~" and 23 characters) matches only itself.
func TestHolds(t *testing.T) {
	long := strings.Repeat("Mozilla/5.0 ", 10)
	h := hashed(long)
	ua := func(v string, isHash bool) lockout.KeyInfo {
		return lockout.KeyInfo{Rule: "ua", Subject: []lockout.SubjectField{{Tag: "ua", Value: v, Hashed: isHash}}}
	}
	for _, tc := range []struct {
		name string
		info lockout.KeyInfo
		ua   string
		want bool
	}{
		{"plain value", ua("curl/8", false), "curl/8", true},
		{"other plain value", ua("curl/8", false), "curl/7", false},
		{"hash of the long value", ua(h, true), long, true},
		{"hash of another value", ua(h, true), long + "x", false},
		{"look-alike of the hash", ua(h, false), long, false},
		{"look-alike asked for as itself", ua(h, false), h, true},
		{"hash asked for as its text", ua(h, true), h, false},
	} {
		if got := holds(tc.info, lockout.Subject{UserAgent: tc.ua}, "", netip.Addr{}); got != tc.want {
			t.Errorf("%s: holds = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMemcachedMayEvict: a service may run on a memcached that may evict
// (without -M) when it sets memcache.Options.AllowEviction; the tool, which
// decides no attempt, still shows and lifts its locks there, as it does
// on a Redis server that may evict.
func TestMemcachedMayEvict(t *testing.T) {
	srv := testserver.Memcached(t, "-m", "64") // no -M: evictions on
	f := fixture{"memcached-evicting", "memcache://" + srv.Addr, func(t *testing.T) backend.Backend {
		s, err := memcache.NewServers([]string{srv.Addr}, &memcache.Options{AllowEviction: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	common := []string{"-store", f.url, "-prefix", "app"}
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"status", []string{"status", "-username", "alice", "-ip", "192.0.2.1"}, "left"},
		{"unlock", []string{"unlock", "-username", "alice", "-ip", "192.0.2.1"}, "lifted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl(t, "", append(tc.args, common...)...).want(t, exitOK, tc.msg)
		})
	}
	if !svc.admitted(t, "alice", "192.0.2.1") {
		t.Error("after unlock: alice refused")
	}
}

// TestUnlockReportsLifted: an unlock says how many locks it lifted, and
// plainly when it lifted none (a mistyped username, a lock that expired
// or was lifted already), instead of "lifted every lock". The cases run
// in order, on one store.
func TestUnlockReportsLifted(t *testing.T) {
	f := redisFixture(t)
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	svc.lock(t, "alice", "192.0.2.2") // her username key is locked too: 3 locks
	const key = "app:l:username+ip:{u=alice,ip=192.0.2.1}"
	for _, tc := range []struct {
		name string
		args []string
		// lifted is the JSON's locks_lifted, with -json; text is in the
		// output without.
		json   bool
		lifted int
		text   string
	}{
		{name: "typo", args: []string{"unlock", "-username", "alcie"}, text: "no lock held username alcie: nothing to lift"},
		{name: "typo json", args: []string{"unlock", "-username", "alcie"}, json: true, lifted: 0},
		{name: "one key", args: []string{"unlock", "-key", key}, text: "unlocked " + key},
		{name: "the same key json", args: []string{"unlock", "-key", key}, json: true, lifted: 0},
		{name: "the same key", args: []string{"unlock", "-key", key}, text: "was not locked"},
		{name: "every lock json", args: []string{"unlock", "-username", "ALICE"}, json: true, lifted: 2},
		{name: "again", args: []string{"unlock", "-username", "alice"}, text: "no lock held username alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "-store", f.url, "-prefix", "app")
			if !tc.json {
				ctl(t, "", args...).want(t, exitOK, tc.text)
				return
			}
			r := ctl(t, "", append(args, "-json")...)
			r.want(t, exitOK)
			got := decode[struct {
				Lifted *int `json:"locks_lifted"`
			}](t, r.stdout)
			if got.Lifted == nil || *got.Lifted != tc.lifted {
				t.Errorf("locks_lifted %v, want %d", got.Lifted, tc.lifted)
			}
		})
	}
	if !svc.admitted(t, "alice", "192.0.2.2") {
		t.Error("after the unlocks: alice refused")
	}
}

// TestJournalKept: the tool keeps the service's journal as the service
// configured it. A service may keep its records longer than the store's
// default 24 h (redis Options.JournalRetention); reading or appending to
// the journal with the tool, whose store trims as it reads and appends,
// must not remove them.
func TestJournalKept(t *testing.T) {
	srv := testserver.Redis(t)
	testserver.FlushRedis(t, srv.Addr)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	f := fixture{"redis, 72 h journal", "redis://" + srv.Addr, func(t *testing.T) backend.Backend {
		s, err := redisstore.New(t.Context(), c, &redisstore.Options{JournalRetention: 72 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
	// A record of 30 h ago in the journal of prefix app: a copy of one
	// that a service on prefix src writes now, under an old stream ID.
	src := newService(t, f, "src")
	src.lock(t, "old", "192.0.2.9")
	entries, err := c.XRange(ctx, "{src}:journal", "-", "+").Result()
	if err != nil || len(entries) == 0 {
		t.Fatalf("the journal of src: %v, %v", entries, err)
	}
	old := time.Now().Add(-30 * time.Hour).UnixMilli()
	if err := c.XAdd(ctx, &goredis.XAddArgs{Stream: "{app}:journal", ID: strconv.FormatInt(old, 10) + "-0", Values: entries[0].Values}).Err(); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, f, "app")
	svc.lock(t, "alice", "192.0.2.1")
	count := func() int {
		t.Helper()
		recs, _, err := svc.Attempts(ctx, lockout.AttemptQuery{Username: "old", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	if n := count(); n != 1 {
		t.Fatalf("the service finds %d records of 30 h ago, want 1", n)
	}
	common := []string{"-store", f.url, "-prefix", "app"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"attempts", []string{"attempts"}},
		{"attempts of the user", []string{"attempts", "-username", "old"}},
		{"unlock", []string{"unlock", "-username", "alice"}}, // journals the unlock
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl(t, "", append(tc.args, common...)...).want(t, exitOK)
			if n := count(); n != 1 {
				t.Errorf("after lockoutctl %s: the service finds %d records of 30 h ago, want 1", tc.name, n)
			}
		})
	}
	r := ctl(t, "", append([]string{"attempts", "-username", "old"}, common...)...)
	r.want(t, exitOK, "old")
}

// TestAttemptsTable: the attempts table shows the values a client chose
// so that none can drive the terminal, forge a row or push the other
// columns off the screen (a review, with a service whose Canonicalize
// lowercases, which lets control characters through): escapes are quoted,
// a newline stays in its row, a long username is cut. -json keeps them
// whole.
func TestAttemptsTable(t *testing.T) {
	f := boltFixture(t)
	store := f.open(t)
	p, err := lockout.New(store, lockout.Config{
		Rules:        []lockout.Rule{lockout.ByUsername(6)},
		Canonicalize: func(u string) (string, error) { return strings.ToLower(u), nil },
		Journal:      &lockout.JournalConfig{},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	usernames := []string{
		"mallory\x1b[2J\x1b]0;pwned\x07",
		"eve\n2026-01-01 00:00:00  unlock   admin",
		strings.Repeat("a", 1000),
	}
	ctx := t.Context()
	for _, u := range usernames {
		a, err := p.Allow(ctx, lockout.Subject{Username: u, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SyncJournal(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	store.Close()

	r := ctl(t, "", "attempts", "-store", f.url)
	r.want(t, 0, `"mallory\x1b[2j\x1b]0;pwned\a"`, `"eve\n2026-01-01`) // lowercased
	if strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Error("a control character reached the output")
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 1+len(usernames) {
		t.Errorf("%d lines, want a header and %d rows", len(lines), len(usernames))
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 200 {
			t.Errorf("a line of %d characters: %.60q...", n, l)
		}
	}
	r = ctl(t, "", "attempts", "-json", "-store", f.url)
	r.want(t, 0, strings.Repeat("a", 1000))
}

// TestStoreURLPasswordHidden: a store URL whose userinfo does not parse
// is an error that does not repeat the password (a review: url.Parse's
// error quoted it).
func TestStoreURLPasswordHidden(t *testing.T) {
	for _, url := range []string{
		"redis://user:S3cr%t!pass@127.0.0.1:1/0",
		"redis+sentinel://:S3cr%t!pass@127.0.0.1:1,127.0.0.1:2/master",
		"memcache://u:S3cr%t@127.0.0.1:1",
		"memcache://u:S3cret@127.0.0.1:1/x",
	} {
		r := ctl(t, "", "status", "-store", url, "-username", "alice")
		r.want(t, exitUsage, "xxxxx")
		if strings.Contains(r.stdout+r.stderr, "S3cr") {
			t.Errorf("%s: the password is in the output", url)
		}
	}
}

// TestDeviceLocks: the tool reads the known devices' rule off its keys
// ({u=...,d=...}), so that locks lists a device's lock, an unlock of the
// username lifts it, and reset-all removes its keys (a review: the tool
// skipped those keys, and a stolen laptop's lock could not be lifted).
func TestDeviceLocks(t *testing.T) {
	f := boltFixture(t)
	device := base64.RawURLEncoding.EncodeToString(make([]byte, 16))
	lockDevice := func(t *testing.T) {
		t.Helper()
		store := f.open(t)
		defer store.Close()
		p, err := lockout.New(store, lockout.Config{
			Rules:   []lockout.Rule{lockout.ByUsername(3)},
			Devices: &lockout.DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte("k"), lockout.MinSecretLen)}},
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.LockDevice(t.Context(), "alice", device, lockout.Forever); err != nil {
			t.Fatal(err)
		}
	}
	lockDevice(t)
	ctl(t, "", "locks", "-store", f.url).want(t, 0, "device", "d="+device)
	ctl(t, "", "unlock", "-store", f.url, "-username", "alice").want(t, 0, "device")
	if r := ctl(t, "", "locks", "-store", f.url); strings.Contains(r.stdout, "d="+device) {
		t.Error("the device is still locked after the unlock of its username")
	}
	lockDevice(t)
	ctl(t, "", "reset-all", "-yes", "-store", f.url).want(t, 0, "removed")
	store := f.open(t)
	defer store.Close()
	for key, err := range store.(backend.Lister).Keys(t.Context(), "lockout:") {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("key %s left after reset-all", key)
	}
}

// TestResetAllAsksFirst: reset-all asks before it opens the store, so that
// a bbolt file stays free for its service while the operator thinks, and a
// signal (the context's end) ends the wait with nothing removed (a review:
// the file stayed locked at the prompt, and SIGINT did nothing).
func TestResetAllAsksFirst(t *testing.T) {
	f := boltFixture(t)
	svc := newService(t, f, "lockout")
	svc.lock(t, "alice", "192.0.2.1")
	svc.Close()

	stdin, w := io.Pipe() // an operator who has not answered yet
	defer w.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"reset-all", "-store", f.url}, stdin, &out, &errb) }()
	// The question is on screen and the file free: the service opens it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "Type yes") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s, err := bolt.Open(strings.TrimPrefix(f.url, "bolt://"), 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("the service cannot open its file while reset-all asks: %v", err)
	}
	s.Close()
	cancel() // SIGINT
	select {
	case c := <-code:
		if c == 0 {
			t.Errorf("reset-all cut short: exit 0")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reset-all did not end with its context")
	}
	svc = newService(t, f, "lockout")
	if svc.admitted(t, "alice", "192.0.2.1") {
		t.Error("alice's lock is gone: reset-all removed keys without an answer")
	}
}

// syncBuffer is a bytes.Buffer that one goroutine writes while another
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestBoltBucketMissing: the tool neither creates a bucket nor initialises
// an empty file: a file whose service keeps its store in a bucket of its
// own (bolt.New) named without ?bucket= is an error naming the file's
// buckets, and the file is left as it was (a review: the tool showed an
// empty store, said "no lock held", and wrote a bucket into the file).
func TestBoltBucketMissing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bolt.New(db, "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db.Close()
	ctl(t, "", "locks", "-store", "bolt://"+path).want(t, exitError, `holds no bucket "lockout"`, `"app"`)
	ctl(t, "", "locks", "-store", "bolt://"+path+"?bucket=app").want(t, 0, "no locks")
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("lockout")) != nil {
			t.Error("the tool created a bucket lockout in the service's file")
		}
		return nil
	})
	db.Close()

	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctl(t, "", "locks", "-store", "bolt://"+empty).want(t, exitError, "is empty")
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file after the tool: %v, %v", fi, err)
	}
}

// TestHashedJournalNoKey: on a journal that keeps keyed hashes
// (JournalConfig.HashKey), a run without LOCKOUT_JOURNAL_HASH_KEY says so,
// refuses to filter by username (which would show nothing), and journals
// its unlock without the username in the clear (a review: an empty table,
// and the unlock's record naming alice in a hashed journal).
func TestHashedJournalNoKey(t *testing.T) {
	f := boltFixture(t)
	key := bytes.Repeat([]byte{7}, 32)
	store := f.open(t)
	p, err := lockout.New(store, lockout.Config{
		Rules:   []lockout.Rule{lockout.ByUsername(3)},
		Journal: &lockout.JournalConfig{HashKey: key},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a, err := p.Allow(t.Context(), lockout.Subject{Username: "alice", IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(t.Context())
	}
	p.SyncJournal(t.Context())
	p.Close()
	store.Close()

	t.Setenv("LOCKOUT_JOURNAL_HASH_KEY", "")
	ctl(t, "", "attempts", "-store", f.url, "-username", "alice").want(t, exitUsage, "LOCKOUT_JOURNAL_HASH_KEY")
	ctl(t, "", "unlock", "-store", f.url, "-username", "alice").want(t, 0, "keyed hashes")
	r := ctl(t, "", "attempts", "-json", "-store", f.url)
	r.want(t, 0, `"unlock"`)
	if strings.Contains(r.stdout, `"alice"`) {
		t.Error("the journal holds alice in the clear")
	}
	t.Setenv("LOCKOUT_JOURNAL_HASH_KEY", hex.EncodeToString(key))
	ctl(t, "", "attempts", "-store", f.url, "-username", "alice").want(t, 0, "failure")
}

// TestResetAllRefusesFirst: what reset-all can refuse without asking, it
// refuses before the question: a store that cannot list its keys, no
// store, a file that does not exist (a review: the operator typed yes,
// then was told).
func TestResetAllRefusesFirst(t *testing.T) {
	t.Setenv("LOCKOUT_STORE", "")
	for _, tc := range []struct {
		name  string
		store string
		code  int
	}{
		{"memcached", "memcache://127.0.0.1:1", exitPartial},
		{"no store", "", exitUsage},
		{"no file", filepath.Join(t.TempDir(), "typo.db"), exitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, "yes\n", "reset-all", "-store", tc.store)
			if r.code != tc.code || strings.Contains(r.stderr, "Type yes") {
				t.Errorf("exit %d, want %d, and no question; stderr: %s", r.code, tc.code, r.stderr)
			}
		})
	}
}

// TestPlainJournalHexUsername: a plain journal whose usernames are 32 hex
// digits (an API client's id) is not taken for a journal of keyed hashes
// (a review): the tool filters by them, and warns of nothing.
func TestPlainJournalHexUsername(t *testing.T) {
	f := boltFixture(t)
	svc := newService(t, f, "lockout")
	hexUser := "fbdf63fea81e2b28e89e4a526d0b1070"
	svc.lock(t, hexUser, "192.0.2.1")
	svc.Close()
	t.Setenv("LOCKOUT_JOURNAL_HASH_KEY", "")
	r := ctl(t, "", "attempts", "-store", f.url, "-username", hexUser)
	r.want(t, 0, "failure")
	if strings.Contains(r.stderr, "keyed hashes") {
		t.Error("a plain journal taken for one of keyed hashes")
	}
}
