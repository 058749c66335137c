package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// recTB records Skip and Fatal calls instead of acting on the real test, so
// that those paths can be tested. Run functions using it with runRec.
type recTB struct {
	testing.TB
	mu      sync.Mutex
	skipped bool
	failed  bool
	msg     string
}

func (r *recTB) Helper() {}

func (r *recTB) end(skip bool, msg string) {
	r.mu.Lock()
	r.skipped, r.failed, r.msg = skip, !skip, msg
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recTB) Skip(args ...any)                 { r.end(true, fmt.Sprint(args...)) }
func (r *recTB) Skipf(format string, args ...any) { r.end(true, fmt.Sprintf(format, args...)) }
func (r *recTB) SkipNow()                         { r.end(true, "") }
func (r *recTB) Fatal(args ...any)                { r.end(false, fmt.Sprint(args...)) }
func (r *recTB) Fatalf(format string, args ...any) {
	r.end(false, fmt.Sprintf(format, args...))
}
func (r *recTB) FailNow()                          { r.end(false, "") }
func (r *recTB) Error(args ...any)                 { r.end(false, fmt.Sprint(args...)) }
func (r *recTB) Errorf(format string, args ...any) { r.end(false, fmt.Sprintf(format, args...)) }

// runRec runs f with a recording TB on its own goroutine and waits for it.
func runRec(t *testing.T, f func(tb testing.TB)) *recTB {
	t.Helper()
	r := &recTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r
}

// clearEnv makes the test independent of the caller's environment.
func clearEnv(t *testing.T) {
	for _, v := range []string{"LOCKOUT_TEST_REDIS", "LOCKOUT_TEST_REDIS_CLUSTER", "LOCKOUT_TEST_MEMCACHED"} {
		t.Setenv(v, "")
	}
}

// Every testing.TB is a TB: tests keep passing t.
var _ TB = testing.TB(nil)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRedis(t *testing.T) {
	clearEnv(t)
	ctx := ctxT(t)
	s := Redis(t)
	if !s.Controllable() || !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Fatalf("Redis: Addr %q Controllable %v", s.Addr, s.Controllable())
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	if got, err := c.Incr(ctx, "n").Result(); err != nil || got != 1 {
		t.Fatalf("INCR = %d, %v; want 1", got, err)
	}

	s.Stop()
	s.Stop() // a second Stop does nothing
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	s.Start()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after restart = %d, %v; want 0 (empty)", n, err)
	}

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	FlushRedis(t, s.Addr)
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after FlushRedis = %d, %v; want 0", n, err)
	}
}

func TestRedisArgs(t *testing.T) {
	clearEnv(t)
	s := Redis(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	got, err := c.ConfigGet(ctxT(t), "maxmemory").Result()
	if err != nil || got["maxmemory"] != "1048576" {
		t.Fatalf("CONFIG GET maxmemory = %v, %v; want 1048576", got, err)
	}
}

func TestRedisStartPortTaken(t *testing.T) {
	clearEnv(t)
	s := Redis(t)
	s.Stop()
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Skipf("cannot take the port to test a failing Start: %v", err)
	}
	defer l.Close()
	r := runRec(t, func(tb testing.TB) {
		s.t = tb
		s.Start()
	})
	s.t = t
	t.Logf("Start on a taken port failed with: %s", r.msg)
	if !r.failed || !strings.Contains(r.msg, "in use") {
		t.Fatalf("Start on a taken port: failed=%v msg=%q; want a failure quoting the log", r.failed, r.msg)
	}
}

func TestMemcached(t *testing.T) {
	clearEnv(t)
	s := Memcached(t)
	c := memcache.New(s.Addr)
	defer c.Close()

	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if it, err := c.Get("k"); err != nil || string(it.Value) != "v" {
		t.Fatalf("get = %v, %v; want v", it, err)
	}

	s.Stop()
	if _, err := c.Get("k"); err == nil {
		t.Fatal("get after Stop succeeded")
	}
	s.Start()
	if _, err := c.Get("k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("get after Start: %v; want a cache miss (empty)", err)
	}

	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("set: %v", err)
	}
	FlushMemcached(t, s.Addr)
	if _, err := c.Get("k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("get after FlushMemcached: %v; want a cache miss", err)
	}
	// A set right after flush_all (same second) must stay visible.
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("w")}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if it, err := c.Get("k"); err != nil || string(it.Value) != "w" {
		t.Fatalf("get after flush+set = %v, %v; want w", it, err)
	}
}

func TestMemcachedArgs(t *testing.T) {
	clearEnv(t)
	s := Memcached(t, "-m", "2")
	lines, err := memcachedDo(ctxT(t), s.Addr, "stats", "END")
	if err != nil || !slices.Contains(lines, "STAT limit_maxbytes 2097152") {
		t.Fatalf("stats = %q, %v; want limit_maxbytes 2097152", lines, err)
	}
}

func TestRedisCluster(t *testing.T) {
	clearEnv(t)
	ctx := ctxT(t)
	cl := RedisCluster(t)
	if len(cl.Addrs) != 3 || len(cl.Nodes) != 3 || !cl.Controllable() {
		t.Fatalf("RedisCluster: Addrs %v, %d nodes, Controllable %v", cl.Addrs, len(cl.Nodes), cl.Controllable())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
	defer cc.Close()

	writeAll := func() {
		t.Helper()
		for i := range 100 {
			if err := cc.Set(ctx, fmt.Sprintf("key%d", i), i, 0).Err(); err != nil {
				t.Fatalf("SET key%d: %v", i, err)
			}
		}
	}
	writeAll()
	var mu sync.Mutex
	sizes := map[string]int64{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		sizes[c.Options().Addr] = n
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("DBSIZE on masters: %v", err)
	}
	for _, a := range cl.Addrs {
		if sizes[a] == 0 {
			t.Fatalf("master %s holds no key; sizes %v", a, sizes)
		}
	}

	node := cl.Nodes[1]
	direct := redis.NewClient(&redis.Options{Addr: node.Addr, MaxRetries: -1})
	defer direct.Close()
	node.Stop()
	if err := direct.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	node.Start()
	if n, err := direct.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE of restarted node = %d, %v; want 0", n, err)
	}
	writeAll()

	FlushRedis(t, cl.Addrs...)
	for _, a := range cl.Addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		n, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil || n != 0 {
			t.Fatalf("DBSIZE of %s after FlushRedis = %d, %v; want 0", a, n, err)
		}
	}

	t.Run("env", func(t *testing.T) {
		t.Setenv("LOCKOUT_TEST_REDIS_CLUSTER", cl.Addrs[2])
		ec := RedisCluster(t)
		if ec.Controllable() || !slices.Equal(slices.Sorted(slices.Values(ec.Addrs)), slices.Sorted(slices.Values(cl.Addrs))) {
			t.Fatalf("env cluster: Addrs %v Controllable %v; want masters %v, not controllable", ec.Addrs, ec.Controllable(), cl.Addrs)
		}
	})
}

func TestEnvRedis(t *testing.T) {
	clearEnv(t)
	base := Redis(t)
	t.Setenv("LOCKOUT_TEST_REDIS", base.Addr)

	s := Redis(t)
	if s.Addr != base.Addr || s.Controllable() {
		t.Fatalf("Redis with env: Addr %q Controllable %v; want %q, false", s.Addr, s.Controllable(), base.Addr)
	}
	own := Redis(t, "--maxmemory", "1mb")
	if own.Addr == base.Addr || !own.Controllable() {
		t.Fatalf("Redis with env and args: Addr %q Controllable %v; want a server of its own", own.Addr, own.Controllable())
	}
	// The list is exhausted: a local server is started.
	if next := Redis(t); next.Addr == base.Addr || !next.Controllable() {
		t.Fatalf("second Redis with a one-entry env: Addr %q; want a server of its own", next.Addr)
	}

	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{{"", true}, {"true", false}} {
		t.Run("Stop/CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := runRec(t, func(tb testing.TB) {
				s := Redis(tb)
				s.Stop()
			})
			if r.skipped != tc.wantSkip || r.failed == tc.wantSkip {
				t.Fatalf("Stop on an env server: skipped=%v failed=%v (%s)", r.skipped, r.failed, r.msg)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		t.Setenv("LOCKOUT_TEST_REDIS", "127.0.0.1:1")
		t.Setenv("CI", "")
		if r := runRec(t, func(tb testing.TB) { Redis(tb) }); !r.failed {
			t.Fatalf("unreachable env server: skipped=%v failed=%v; want a failure", r.skipped, r.failed)
		}
	})
}

func TestEnvMemcachedList(t *testing.T) {
	clearEnv(t)
	a, b := Memcached(t), Memcached(t)
	t.Setenv("LOCKOUT_TEST_MEMCACHED", a.Addr+", "+b.Addr)

	got := []*Server{Memcached(t), Memcached(t), Memcached(t)}
	if got[0].Addr != a.Addr || got[1].Addr != b.Addr || got[0].Controllable() || got[1].Controllable() {
		t.Fatalf("Memcached with env list: %q, %q; want %q, %q, not controllable", got[0].Addr, got[1].Addr, a.Addr, b.Addr)
	}
	if got[2].Addr == a.Addr || got[2].Addr == b.Addr || !got[2].Controllable() {
		t.Fatalf("third Memcached with a two-entry env: %q; want a server of its own", got[2].Addr)
	}
	t.Run("subtest starts over", func(t *testing.T) {
		if s := Memcached(t); s.Addr != a.Addr {
			t.Fatalf("Memcached in a subtest = %q; want the first entry %q", s.Addr, a.Addr)
		}
	})
}

func TestMissingBinary(t *testing.T) {
	clearEnv(t)
	t.Setenv("PATH", "")
	old := searchDirs
	searchDirs = []string{t.TempDir()}
	t.Cleanup(func() { searchDirs = old })

	kinds := map[string]func(testing.TB){
		"Redis":         func(tb testing.TB) { Redis(tb) },
		"Memcached":     func(tb testing.TB) { Memcached(tb) },
		"RedisCluster":  func(tb testing.TB) { RedisCluster(tb) },
		"RedisSentinel": func(tb testing.TB) { RedisSentinel(tb) },
	}
	for name, f := range kinds {
		for _, tc := range []struct {
			ci       string
			wantSkip bool
		}{{"", true}, {"false", true}, {"true", false}} {
			t.Run(name+"/CI="+tc.ci, func(t *testing.T) {
				t.Setenv("CI", tc.ci)
				r := runRec(t, f)
				if r.skipped != tc.wantSkip || r.failed == tc.wantSkip {
					t.Fatalf("skipped=%v failed=%v; want skipped=%v", r.skipped, r.failed, tc.wantSkip)
				}
				if !strings.Contains(r.msg, "apt-get install redis-server redis-sentinel memcached") {
					t.Fatalf("message %q does not say how to install", r.msg)
				}
			})
		}
	}
}

func TestFreePortBus(t *testing.T) {
	for range 20 {
		p, err := freePort(true)
		if err != nil {
			t.Fatal(err)
		}
		if p+10000 > 65535 {
			t.Fatalf("freePort(true) = %d: bus port out of range", p)
		}
	}
}

// TestRedisReady checks the readiness check on its own: it accepts the
// started process only, and a server that never answers ends the check
// when its context does, deadline or cancellation.
func TestRedisReady(t *testing.T) {
	clearEnv(t)
	s := Redis(t)
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()

	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// It accepts and never answers; its connections close with it.
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	defer func() {
		mute.Close()
		<-accepted
		for _, c := range conns {
			c.Close()
		}
	}()

	cancelled := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		return ctx, cancel
	}
	deadline := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 100*time.Millisecond)
	}
	long := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	for _, tc := range []struct {
		name    string
		addr    string
		pid     int
		ctx     func() (context.Context, context.CancelFunc)
		wantErr string
	}{
		{name: "any process", addr: s.Addr, ctx: long},
		{name: "the started process", addr: s.Addr, pid: pid, ctx: long},
		{name: "another process", addr: s.Addr, pid: pid + 1, ctx: long, wantErr: "not " + fmt.Sprint(pid+1)},
		{name: "nothing listens", addr: "127.0.0.1:1", ctx: long, wantErr: "refused"},
		{name: "mute server, deadline", addr: mute.Addr().String(), pid: pid, ctx: deadline, wantErr: "deadline exceeded"},
		{name: "mute server, cancelled", addr: mute.Addr().String(), pid: pid, ctx: cancelled, wantErr: "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err := redisReady(ctx, tc.addr, tc.pid)
			took := time.Since(start)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("redisReady: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("redisReady = %v; want an error containing %q", err, tc.wantErr)
			case took > 2*time.Second:
				t.Fatalf("redisReady took %v", took)
			}
		})
	}
}

// TestMissingSentinel: redis-server is there, redis-sentinel is not (it is
// a Debian package of its own). RedisSentinel skips, or fails when
// CI=true, before it starts anything.
func TestMissingSentinel(t *testing.T) {
	clearEnv(t)
	server, ok := lookBinary("redis-server")
	if !ok {
		skipOrFatal(t, "redis-server not found")
	}
	dir := t.TempDir()
	if err := os.Symlink(server, filepath.Join(dir, "redis-server")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "")
	old := searchDirs
	searchDirs = []string{dir}
	t.Cleanup(func() { searchDirs = old })
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{{"", true}, {"true", false}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := runRec(t, func(tb testing.TB) { RedisSentinel(tb) })
			if r.skipped != tc.wantSkip || r.failed == tc.wantSkip {
				t.Fatalf("skipped=%v failed=%v; want skipped=%v (%s)", r.skipped, r.failed, tc.wantSkip, r.msg)
			}
			if !strings.Contains(r.msg, "redis-sentinel not found") || !strings.Contains(r.msg, "apt-get install") {
				t.Fatalf("message %q does not name redis-sentinel and how to install it", r.msg)
			}
		})
	}
}

// TestRedisSentinel starts the set, checks that a failover client writes
// to the master and that the replica has it, stops the master and waits
// for the sentinels to promote the replica (the write is still there),
// then restarts the old master, which the sentinels make a replica: the set
// ends with one master, the one the sentinels name, and the other server
// its replica.
//
// It runs in parallel with the other tests (mostly waiting on the
// sentinels), so it cannot clear the environment; RedisSentinel reads none
// but CI.
func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s := RedisSentinel(t)
	if len(s.SentinelAddrs) != 3 || len(s.Sentinels) != 3 || s.MasterName != SentinelMasterName {
		t.Fatalf("RedisSentinel: %d sentinels %v, master name %q", len(s.Sentinels), s.SentinelAddrs, s.MasterName)
	}
	for _, n := range append([]*Server{s.Master, s.Replica}, s.Sentinels...) {
		if !n.Controllable() || !strings.HasPrefix(n.Addr, "127.0.0.1:") {
			t.Fatalf("server %q: Controllable %v", n.Addr, n.Controllable())
		}
	}
	if got, err := s.MasterAddr(ctx); err != nil || got != s.Master.Addr {
		t.Fatalf("MasterAddr = %q, %v; want %q", got, err, s.Master.Addr)
	}

	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName,
		SentinelAddrs: s.SentinelAddrs,
	})
	defer fc.Close()
	if err := fc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	master := redis.NewClient(&redis.Options{Addr: s.Master.Addr, MaxRetries: -1})
	defer master.Close()
	if n, err := master.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want the replica to acknowledge", n, err)
	}
	replica := redis.NewClient(&redis.Options{Addr: s.Replica.Addr})
	defer replica.Close()
	if got, err := replica.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET on the replica = %q, %v; want v", got, err)
	}

	begin := time.Now()
	s.Master.Stop()
	addr := waitMaster(t, ctx, s, s.Replica.Addr)
	t.Logf("the replica %s is master %v after the master stopped", addr, time.Since(begin).Round(time.Millisecond))
	if got, err := fc.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET through the failover client after the failover = %q, %v; want v", got, err)
	}

	s.Master.Start()
	begin = time.Now()
	// The sentinels make the old master a replica of the new one. On a
	// busy machine (down-after is a second) they may then fail over once
	// more, back to it: either way, the set must settle with the master
	// the sentinels name and the other server its replica, never with two
	// masters.
	clients := map[string]*redis.Client{s.Master.Addr: master, s.Replica.Addr: replica}
	for {
		m, err := s.MasterAddr(ctx)
		var why string
		switch {
		case err != nil:
			why = err.Error()
		case clients[m] == nil:
			why = "the sentinels name " + m
		default:
			other := s.Master.Addr
			if m == s.Master.Addr {
				other = s.Replica.Addr
			}
			mi, err1 := clients[m].Info(ctx, "replication").Result()
			oi, err2 := clients[other].Info(ctx, "replication").Result()
			if err1 == nil && err2 == nil && infoField(mi, "role") == "master" &&
				infoField(oi, "role") == "slave" && infoField(oi, "master_port") == strings.TrimPrefix(m, "127.0.0.1:") {
				t.Logf("%v after the old master's restart: %s is master (the old master: %t), %s its replica",
					time.Since(begin).Round(time.Millisecond), m, m == s.Master.Addr, other)
				return
			}
			why = fmt.Sprintf("%s: %v %v\n%s\n%s: %s", m, err1, err2, mi, other, oi)
		}
		if ctx.Err() != nil {
			t.Fatalf("the set did not settle after the old master's restart: %s", why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMaster polls MasterAddr until it names want, failing t when ctx ends.
func waitMaster(t *testing.T, ctx context.Context, s *Sentinel, want string) string {
	t.Helper()
	for {
		addr, err := s.MasterAddr(ctx)
		if err == nil && addr == want {
			return addr
		}
		if ctx.Err() != nil {
			t.Fatalf("the sentinels did not promote %s: last MasterAddr %q, %v", want, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
