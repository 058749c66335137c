package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/backend/memcache"
	"github.com/go-lockout/lockout/backend/memory"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/counting"
	"github.com/go-lockout/lockout/internal/statuswriter"
	"github.com/go-lockout/lockout/lockouthttp"
)

// limit is every rule's limit, and the check-then-count flow's.
const limit = 5

// The names of the systems, as -backends takes them.
const (
	sysBaseline   = "baseline"
	sysMemory     = "memory"
	sysBolt       = "bolt"
	sysRedis      = "redis"
	sysCluster    = "cluster"
	sysMemcached  = "memcached"
	sysCheckCount = "check-then-count"
)

// allSystems lists the systems -backends can name, in table order.
var allSystems = []string{sysMemory, sysBolt, sysRedis, sysCluster, sysMemcached, sysCheckCount}

// labels are the systems' names in the outputs.
var labels = map[string]string{
	sysBaseline:   "none (baseline)",
	sysMemory:     "memory",
	sysBolt:       "bolt",
	sysRedis:      "redis",
	sysCluster:    "redis cluster",
	sysMemcached:  "memcached",
	sysCheckCount: "check-then-count (redis)",
}

// exactAttack reports whether system must admit exactly limit
// verifications in the attack: the library on a store that declares atomic
// tag groups. Memcached must admit at most limit.
func exactAttack(system string) bool {
	switch system {
	case sysMemory, sysBolt, sysRedis, sysCluster:
		return true
	}
	return false
}

// backendTimeout bounds each backend call, and the Redis and memcached
// clients' reads and writes: generous, since the benchmark saturates the
// machine on purpose.
const backendTimeout = 10 * time.Second

// servers are the addresses of the servers the backends use.
type servers struct {
	Redis     string   // standalone Redis, for redis and check-then-count
	Cluster   []string // the cluster's masters
	Memcached string
	TempDir   string // for bolt files
}

// instance is one system set up for one cell: the handler to serve, and
// what to read its counters from.
type instance struct {
	handler http.Handler
	// calls returns the backend round trips so far; nil for the baseline.
	calls func() int64
	// lockouts, refusals and backendErrors count the policy's hook calls.
	lockouts, refusals, backendErrors atomic.Int64
	// firstBackendError is the first error BackendError was told about.
	firstBackendError atomic.Pointer[string]
	close             func() error
}

// sentCounter is a go-redis hook that counts the data commands a client
// sends, pipelined or not, and the exchanges that carry them: single
// commands and pipelines, each one round trip (a Cluster's pipeline goes to
// its nodes in parallel). Connection setup and housekeeping (HELLO, CLIENT
// SETINFO when a connection is dialled, ...) is left out, as in
// dataCommands.
type sentCounter struct{ n, exchanges atomic.Int64 }

func (h *sentCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *sentCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if !isHousekeeping(cmd.Name()) {
			h.n.Add(1)
			h.exchanges.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *sentCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		var n int64
		for _, c := range cmds {
			if !isHousekeeping(c.Name()) {
				n++
			}
		}
		if n > 0 {
			h.n.Add(n)
			h.exchanges.Add(1)
		}
		return next(ctx, cmds)
	}
}

// env holds what the systems share for a whole run.
type env struct {
	srv      servers
	app      *loginApp
	resolver *lockouthttp.IPResolver
	clients  int

	redisClient   *goredis.Client
	clusterClient *goredis.ClusterClient
	redisStore    backend.Backend
	clusterStore  backend.Backend
	memcacheStore backend.Backend

	// statClients read INFO commandstats, per system; sent count the
	// commands the system's client sends.
	statClients map[string][]*goredis.Client
	sent        map[string]*sentCounter

	// servers lists the local server processes whose CPU time counts,
	// as "name pid".
	serverPIDs []int
	serverDesc []string
}

// newEnv connects to the servers the systems need.
func newEnv(ctx context.Context, srv servers, app *loginApp, systems []string, clients int) (*env, error) {
	res, err := lockouthttp.NewIPResolver(lockouthttp.HeaderXForwardedFor, netip.MustParsePrefix("127.0.0.0/8"))
	if err != nil {
		return nil, err
	}
	e := &env{srv: srv, app: app, resolver: res, clients: clients, statClients: map[string][]*goredis.Client{}, sent: map[string]*sentCounter{}}
	pool := max(clients, 64)
	need := func(name string) bool {
		for _, s := range systems {
			if s == name {
				return true
			}
		}
		return false
	}
	stats := func(addr string) *goredis.Client {
		return goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 1, DialTimeout: 2 * time.Second})
	}
	if need(sysRedis) || need(sysCheckCount) {
		e.redisClient = goredis.NewClient(&goredis.Options{
			Addr:                  srv.Redis,
			DialTimeout:           backendTimeout,
			ReadTimeout:           backendTimeout,
			WriteTimeout:          backendTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              pool,
		})
		sc := &sentCounter{}
		e.redisClient.AddHook(sc)
		e.sent[sysRedis], e.sent[sysCheckCount] = sc, sc
		st := stats(srv.Redis)
		e.statClients[sysRedis] = []*goredis.Client{st}
		e.statClients[sysCheckCount] = []*goredis.Client{st}
	}
	if need(sysRedis) {
		if e.redisStore, err = redisstore.New(ctx, e.redisClient, nil); err != nil {
			e.close()
			return nil, fmt.Errorf("redis store: %w", err)
		}
	}
	if need(sysCluster) {
		e.clusterClient = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                 srv.Cluster,
			DialTimeout:           backendTimeout,
			ReadTimeout:           backendTimeout,
			WriteTimeout:          backendTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              pool,
		})
		e.sent[sysCluster] = &sentCounter{}
		e.clusterClient.AddHook(e.sent[sysCluster])
		if e.clusterStore, err = redisstore.New(ctx, e.clusterClient, nil); err != nil {
			e.close()
			return nil, fmt.Errorf("redis cluster store: %w", err)
		}
		for _, a := range srv.Cluster {
			e.statClients[sysCluster] = append(e.statClients[sysCluster], stats(a))
		}
	}
	if need(sysMemcached) {
		if e.memcacheStore, err = memcache.NewServers([]string{srv.Memcached}, &memcache.Options{Timeout: backendTimeout}); err != nil {
			e.close()
			return nil, fmt.Errorf("memcached store: %w", err)
		}
	}
	e.findServers(ctx)
	return e, nil
}

// findServers looks up the process ids of the servers, to count their CPU
// time: those of servers that run on this machine (testserver started
// them; not the ones an environment variable may name elsewhere).
func (e *env) findServers(ctx context.Context) {
	add := func(pid int, addr, want string) {
		if name := processName(pid); strings.Contains(name, want) {
			e.serverPIDs = append(e.serverPIDs, pid)
			e.serverDesc = append(e.serverDesc, fmt.Sprintf("%s (%s)", name, addr))
		}
	}
	seen := map[*goredis.Client]bool{}
	for _, system := range []string{sysRedis, sysCheckCount, sysCluster} {
		for _, c := range e.statClients[system] {
			if seen[c] {
				continue
			}
			seen[c] = true
			info, err := c.Info(ctx, "server").Result()
			if err != nil {
				continue
			}
			for line := range strings.Lines(info) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
					if pid, err := strconv.Atoi(v); err == nil {
						add(pid, c.Options().Addr, "redis")
					}
				}
			}
		}
	}
	if e.srv.Memcached != "" {
		if pid, err := memcachedPID(ctx, e.srv.Memcached); err == nil {
			add(pid, e.srv.Memcached, "memcached")
		}
	}
}

// memcachedPID asks the memcached at addr for its process id.
func memcachedPID(ctx context.Context, addr string) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "stats\r\n"); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "STAT pid "); ok {
			return strconv.Atoi(v)
		}
		if line == "END" || strings.Contains(line, "ERROR") {
			break
		}
	}
	return 0, fmt.Errorf("memcached %s: no pid in stats (%v)", addr, sc.Err())
}

// cpu returns the CPU time used so far by this process and the servers, or
// -1 when it cannot be measured.
func (e *env) cpu() time.Duration {
	total, err := selfCPU()
	if err != nil {
		return -1
	}
	for _, pid := range e.serverPIDs {
		d, err := processCPU(pid)
		if err != nil {
			return -1
		}
		total += d
	}
	return total
}

func (e *env) close() {
	for _, s := range []backend.Backend{e.redisStore, e.clusterStore, e.memcacheStore} {
		if s != nil {
			_ = s.Close()
		}
	}
	if e.redisClient != nil {
		_ = e.redisClient.Close()
	}
	if e.clusterClient != nil {
		_ = e.clusterClient.Close()
	}
	seen := map[*goredis.Client]bool{}
	for _, cs := range e.statClients {
		for _, c := range cs {
			if !seen[c] {
				seen[c] = true
				_ = c.Close()
			}
		}
	}
}

// open sets system up for the cell named id: a fresh store for memory
// and bolt, fresh key prefixes on the shared servers.
func (e *env) open(system, id string) (*instance, error) {
	inst := &instance{close: func() error { return nil }}
	switch system {
	case sysBaseline:
		inst.handler = e.app
		return inst, nil
	case sysCheckCount:
		d := &checkThenCount{client: e.redisClient, resolver: e.resolver, prefix: "ctc" + id + ":", next: e.app}
		inst.handler, inst.calls = d, d.roundTrips.Load
		return inst, nil
	}
	var store backend.Backend
	switch system {
	case sysMemory:
		s, err := memory.New(nil)
		if err != nil {
			return nil, fmt.Errorf("memory store: %w", err)
		}
		store, inst.close = s, s.Close
	case sysBolt:
		path := filepath.Join(e.srv.TempDir, "lockbench-"+id+".db")
		s, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			return nil, fmt.Errorf("bolt store: %w", err)
		}
		store = s
		inst.close = func() error { return errors.Join(s.Close(), os.Remove(path)) }
	case sysRedis:
		store = e.redisStore
	case sysCluster:
		store = e.clusterStore
	case sysMemcached:
		store = e.memcacheStore
	default:
		return nil, fmt.Errorf("unknown system %q", system)
	}
	counted, counter := counting.Wrap(store)
	inst.calls = counter.Calls
	p, err := lockout.New(counted, lockout.Config{
		Rules:  []lockout.Rule{lockout.ByUsername(limit), lockout.ByIP(limit), lockout.ByUsernameAndIP(limit)},
		Prefix: "lb" + id,
		// Far longer than the default half second: the load saturates
		// the CPUs, and an attempt refused for a timeout may still have
		// taken a slot, which would make the attack's count less than the
		// limit. Fail closed, so that a timeout cannot admit a guess
		// either, nor send the measurement to the fallback; backend errors
		// are counted and reported.
		Timeout: backendTimeout,
		Outage:  lockout.FailClosed,
		Logger:  slog.New(slog.DiscardHandler),
		Hooks: lockout.Hooks{
			Lockout: func(context.Context, lockout.LockoutEvent) { inst.lockouts.Add(1) },
			Refusal: func(context.Context, *lockout.RefusedError) { inst.refusals.Add(1) },
			BackendError: func(_ context.Context, err error) {
				if inst.backendErrors.Add(1) == 1 {
					msg := err.Error()
					inst.firstBackendError.Store(&msg)
				}
			},
		},
	})
	if err != nil {
		_ = inst.close()
		return nil, err
	}
	mw := lockouthttp.NewMiddleware(p, lockouthttp.Config{
		ClientIP: e.resolver.ClientIP,
		Username: lockouthttp.FormField("username"),
	})
	inst.handler = mw.Wrap(e.app)
	return inst, nil
}

// redisSent returns the number of commands the system's go-redis client
// has sent, and in how many exchanges (round trips), or -1s when the
// system does not use Redis.
func (e *env) redisSent(system string) (cmds, exchanges int64) {
	if sc, ok := e.sent[system]; ok {
		return sc.n.Load(), sc.exchanges.Load()
	}
	return -1, -1
}

// redisCommands returns the number of data commands the system's Redis
// servers have run, from INFO commandstats, or -1 when the system does not
// use Redis. This includes the commands Lua scripts run (redis.call), and
// leaves out connection and cluster housekeeping (HELLO, CLIENT, CLUSTER,
// PING, INFO, SCRIPT, COMMAND, CONFIG).
func (e *env) redisCommands(ctx context.Context, system string) (int64, error) {
	cs, ok := e.statClients[system]
	if !ok {
		return -1, nil
	}
	var total int64
	for _, c := range cs {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return 0, fmt.Errorf("INFO commandstats on %s: %w", c.Options().Addr, err)
		}
		n, err := dataCommands(info)
		if err != nil {
			return 0, fmt.Errorf("INFO commandstats on %s: %w", c.Options().Addr, err)
		}
		total += n
	}
	return total, nil
}

// housekeeping are the commands (and command families, with '|') that
// dataCommands leaves out.
var housekeeping = []string{"info", "hello", "ping", "client", "cluster", "script", "command", "config", "flushall", "select"}

// isHousekeeping reports whether the command (or "family|subcommand")
// name is housekeeping, in any case.
func isHousekeeping(name string) bool {
	family, _, _ := strings.Cut(strings.ToLower(name), "|")
	return slices.Contains(housekeeping, family)
}

// dataCommands sums the calls of INFO commandstats lines such as
// "cmdstat_evalsha:calls=12,usec=...", leaving out housekeeping.
func dataCommands(info string) (int64, error) {
	var total int64
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, stats, ok := strings.Cut(rest, ":")
		if !ok {
			return 0, fmt.Errorf("malformed line %q", line)
		}
		if isHousekeeping(name) {
			continue
		}
		calls, _, _ := strings.Cut(stats, ",")
		v, ok := strings.CutPrefix(calls, "calls=")
		if !ok {
			return 0, fmt.Errorf("malformed line %q", line)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed line %q: %w", line, err)
		}
		total += n
	}
	return total, nil
}

// checkThenCount mimics django-defender's order on Redis with plain
// commands: GET the username's and the IP's block keys (two round trips,
// as defender sends them one after the other); if neither is set, verify
// the password; then on success DEL the four keys in one pipeline, and on
// failure INCR and EXPIRE each counter in a pipeline of its own and SET the
// block key when the counter reaches the limit. It blocks at the limit-th
// failure (defender blocks when a counter passes its FAILURE_LIMIT, so
// this is FAILURE_LIMIT = limit-1), so that a client guessing one at a time
// gets exactly limit verifications, as with the library: anything above it
// under concurrency is the race between the check and the count.
type checkThenCount struct {
	client     *goredis.Client
	resolver   *lockouthttp.IPResolver
	prefix     string
	next       http.Handler
	roundTrips atomic.Int64
}

const (
	ctcWindow  = 15 * time.Minute // how long failures are counted (ATTEMPT_COOLOFF_TIME)
	ctcCooloff = time.Minute      // how long a block lasts (COOLOFF_TIME)
)

func (d *checkThenCount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip, err := d.resolver.ClientIP(r)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	user := strings.ToLower(r.PostFormValue("username"))
	ipKey, userKey := d.prefix+"failed:ip:"+ip.String(), d.prefix+"failed:username:"+user
	ipBlock, userBlock := d.prefix+"blocked:ip:"+ip.String(), d.prefix+"blocked:username:"+user
	ctx := r.Context()

	for _, k := range []string{userBlock, ipBlock} {
		d.roundTrips.Add(1)
		err := d.client.Get(ctx, k).Err()
		switch {
		case err == nil:
			http.Error(w, "Account locked: too many login attempts.", http.StatusTooManyRequests)
			return
		case !errors.Is(err, goredis.Nil):
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}

	sw := statuswriter.New(w)
	d.next.ServeHTTP(sw, r)
	if st := sw.Status(); st != 0 && st < 400 {
		d.roundTrips.Add(1)
		pipe := d.client.Pipeline()
		pipe.Del(ctx, ipKey)
		pipe.Del(ctx, ipBlock)
		pipe.Del(ctx, userKey)
		pipe.Del(ctx, userBlock)
		_, _ = pipe.Exec(ctx)
		return
	}
	for _, k := range [][2]string{{ipKey, ipBlock}, {userKey, userBlock}} {
		d.roundTrips.Add(1)
		pipe := d.client.Pipeline()
		incr := pipe.Incr(ctx, k[0])
		pipe.Expire(ctx, k[0], ctcWindow)
		if _, err := pipe.Exec(ctx); err != nil {
			continue
		}
		if incr.Val() >= limit {
			d.roundTrips.Add(1)
			_ = d.client.Set(ctx, k[1], "blocked", ctcCooloff).Err()
		}
	}
}
