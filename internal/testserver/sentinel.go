package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const (
	// SentinelMasterName is the name the sentinels of [RedisSentinel]
	// monitor their master under (redis.FailoverOptions.MasterName).
	SentinelMasterName = "lockout"
	// SentinelDownAfter is the sentinels' down-after-milliseconds: a master
	// that answers nothing for this long is subjectively down, and a
	// failover starts once two sentinels agree.
	SentinelDownAfter = time.Second
	// SentinelFailoverTimeout is the sentinels' failover-timeout. A
	// failover that stalls (no replica promoted within it, or a split vote
	// among the sentinels) is tried again 2x this long after it began.
	SentinelFailoverTimeout = 3 * time.Second
	// sentinelQuorum is how many sentinels must agree that the master is
	// down.
	sentinelQuorum = 2
	// sentinelCount is how many sentinels watch the master.
	sentinelCount = 3
	// sentinelTimeout bounds how long the set may take to settle: the
	// replica in sync, every sentinel knowing the replica and the others.
	sentinelTimeout = 20 * time.Second
	// sentinelConf is the sentinel's config file in its dir. Sentinel
	// rewrites it (with what it learns: replicas, other sentinels, the
	// current master), so a restarted sentinel resumes from it.
	sentinelConf = "sentinel.conf"
)

var sentinelKind = &kind{
	bin:     "redis-sentinel",
	envVar:  "", // always started locally
	logFile: true,
	args: func(dir string, port int, extra []string) []string {
		args := []string{
			filepath.Join(dir, sentinelConf),
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--protected-mode", "no",
			"--daemonize", "no",
			"--dir", dir,
			"--logfile", filepath.Join(dir, logFileName),
		}
		return append(args, extra...)
	},
	ready: redisReady, // sentinels answer PING and INFO server too
}

// Sentinel is a Redis master with one replica, watched by three Redis
// Sentinels, all started by [RedisSentinel].
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under:
	// SentinelMasterName.
	MasterName string
	// SentinelAddrs are the sentinels' addresses
	// (redis.FailoverOptions.SentinelAddrs).
	SentinelAddrs []string
	// Master is the server started as the master, Replica the one started
	// as its replica. They keep these names after a failover; ask
	// [Sentinel.MasterAddr] which one is the master now.
	Master, Replica *Server
	// Sentinels are the sentinels, in the order of SentinelAddrs.
	Sentinels []*Server
}

// RedisSentinel returns a Redis master, its replica and three sentinels
// (quorum 2) for t, each process on a free loopback port in a temp dir of
// its own, with the sentinels' down-after-milliseconds at
// SentinelDownAfter and failover-timeout at SentinelFailoverTimeout, so
// that a failover takes a few seconds. It returns once the replica is in
// sync and every sentinel knows the master, the replica and the two other
// sentinels: a failover can then happen. Setting up takes 2-4 s.
//
// The sentinels run redis-sentinel, found as redis-server is (Debian ships
// it in a package of its own: apt-get install redis-sentinel); when it is
// missing the test is skipped, or fails when CI=true. The set is always
// started locally: no environment variable names an existing one.
//
// Every server is controllable. Stopping the master (Master.Stop) starts
// a failover: the sentinels promote the replica. A server restarted by
// Start comes back empty with its first command line: the master as a
// master (the sentinels then turn it into a replica of the promoted one,
// after a few seconds), the replica as a replica of the first master's
// address. A restarted sentinel resumes from the config it rewrote.
func RedisSentinel(t TB) *Sentinel {
	t.Helper()
	begin := time.Now()
	// Look every binary up first, so that a missing one skips (or fails)
	// before anything starts.
	for _, k := range []*kind{redisKind, sentinelKind} {
		if _, ok := lookBinary(k.bin); !ok {
			missing(t, k, "")
		}
	}
	// The data servers do not wait for other replicas before a full sync
	// (Redis 7 waits 5 s by default): the replica is in sync at once.
	dataArgs := []string{"--repl-diskless-sync-delay", "0"}
	s := &Sentinel{MasterName: SentinelMasterName}
	s.Master = newLocal(t, redisKind, dataArgs)
	if err := s.Master.launchFresh(); err != nil {
		t.Fatalf("testserver: start sentinel master: %v", err)
	}
	host, port, _ := strings.Cut(s.Master.Addr, ":")
	s.Replica = newLocal(t, redisKind, append(slices.Clone(dataArgs), "--replicaof", host, port))
	if err := s.Replica.launchFresh(); err != nil {
		t.Fatalf("testserver: start sentinel replica: %v", err)
	}

	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s %[4]d\n"+
		"sentinel down-after-milliseconds %[1]s %[5]d\n"+
		"sentinel failover-timeout %[1]s %[6]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		s.MasterName, host, port, sentinelQuorum,
		SentinelDownAfter.Milliseconds(), SentinelFailoverTimeout.Milliseconds())
	for range sentinelCount {
		n := newLocal(t, sentinelKind, nil)
		if err := os.WriteFile(filepath.Join(n.dir, sentinelConf), []byte(conf), 0o644); err != nil {
			t.Fatalf("testserver: write sentinel config: %v", err)
		}
		s.Sentinels = append(s.Sentinels, n)
	}
	errs := make([]error, len(s.Sentinels))
	var wg sync.WaitGroup
	for i, n := range s.Sentinels {
		wg.Go(func() { errs[i] = n.launchFresh() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("testserver: start sentinels: %v", err)
	}
	for _, n := range s.Sentinels {
		s.SentinelAddrs = append(s.SentinelAddrs, n.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	if err := s.waitSettled(ctx); err != nil {
		var logs strings.Builder
		for _, n := range append([]*Server{s.Master, s.Replica}, s.Sentinels...) {
			n.mu.Lock()
			if n.proc != nil {
				fmt.Fprintf(&logs, "\n%s %s:\n%s", n.kind.bin, n.Addr, n.proc.tail())
			}
			n.mu.Unlock()
		}
		t.Fatalf("testserver: sentinel set (master %s, replica %s, sentinels %v) not settled: %v%s",
			s.Master.Addr, s.Replica.Addr, s.SentinelAddrs, err, logs.String())
	}
	t.Logf("testserver: redis master %s, replica %s, sentinels %v ready in %v",
		s.Master.Addr, s.Replica.Addr, s.SentinelAddrs, time.Since(begin).Round(time.Millisecond))
	return s
}

// waitSettled polls until the set can fail over: see settled.
func (s *Sentinel) waitSettled(ctx context.Context) error {
	for {
		err := s.settled(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settled returns why the set cannot fail over yet, or nil: the replica's
// link to the master must be up, and every sentinel must see the master as
// a master with one replica and two other sentinels.
func (s *Sentinel) settled(ctx context.Context) error {
	info, err := redisInfo(ctx, s.Replica.Addr, "replication")
	if err != nil {
		return fmt.Errorf("replica %s: %w", s.Replica.Addr, err)
	}
	if st := infoField(info, "master_link_status"); st != "up" {
		return fmt.Errorf("replica %s: master_link_status:%s", s.Replica.Addr, st)
	}
	for _, addr := range s.SentinelAddrs {
		var m map[string]string
		err := withSentinel(ctx, addr, func(c *goredis.SentinelClient) error {
			var err error
			m, err = c.Master(ctx, s.MasterName).Result()
			return err
		})
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER %s: %w", addr, s.MasterName, err)
		}
		want := map[string]string{
			"flags":               "master",
			"num-slaves":          "1",
			"num-other-sentinels": strconv.Itoa(sentinelCount - 1),
		}
		for k, v := range want {
			if m[k] != v {
				return fmt.Errorf("sentinel %s: %s is %q, want %q", addr, k, m[k], v)
			}
		}
	}
	return nil
}

// MasterAddr returns the address of the current master: the one every
// sentinel names (SENTINEL GET-MASTER-ADDR-BY-NAME) and that reports
// role:master itself. It fails while the sentinels disagree, a sentinel
// does not answer, or the server they name is down or not yet a master:
// during a failover, for instance.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var addr string
	for _, sa := range s.SentinelAddrs {
		var hp []string
		err := withSentinel(ctx, sa, func(c *goredis.SentinelClient) error {
			var err error
			hp, err = c.GetMasterAddrByName(ctx, s.MasterName).Result()
			return err
		})
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", sa, err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("sentinel %s: master address %q", sa, hp)
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if addr != "" && a != addr {
			return "", fmt.Errorf("sentinels disagree: %s says %s, another %s", sa, a, addr)
		}
		addr = a
	}
	info, err := redisInfo(ctx, addr, "replication")
	if err != nil {
		return "", fmt.Errorf("master %s: %w", addr, err)
	}
	if role := infoField(info, "role"); role != "master" {
		return "", fmt.Errorf("the sentinels name %s, which has role:%s", addr, role)
	}
	return addr, nil
}
