package testserver

import (
	"context"
	"errors"
	"fmt"
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
	// clusterTimeout bounds how long a cluster may take to become healthy,
	// at creation and after a node restarts.
	clusterTimeout = 20 * time.Second
	// clusterNodeTimeout is the nodes' cluster-node-timeout in milliseconds.
	// A master stopped for longer is marked failed; its failure is forgotten
	// 2x this long after it, once it is back (no replica takes over).
	clusterNodeTimeout = 2000
	// clusterSlots is the number of Redis Cluster hash slots.
	clusterSlots = 16384
)

// redisArgs is the command line shared by standalone and cluster nodes.
func redisArgs(dir string, port int, extra []string) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, logFileName),
	}
	return append(args, extra...)
}

// redisReady checks that addr answers; when pid is not 0, that it is pid.
func redisReady(ctx context.Context, addr string, pid int) error {
	return withRedis(ctx, addr, func(c *goredis.Client) error {
		if pid == 0 {
			pong, err := c.Ping(ctx).Result()
			if err != nil {
				return err
			}
			if pong != "PONG" {
				return fmt.Errorf("redis: PING answered %q", pong)
			}
			return nil
		}
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		if got := infoField(info, "process_id"); got != strconv.Itoa(pid) {
			return fmt.Errorf("redis: %s is served by process %q, not %d", addr, got, pid)
		}
		return nil
	})
}

var (
	redisKind = &kind{
		bin:     "redis-server",
		envVar:  "LOCKOUT_TEST_REDIS",
		logFile: true,
		args:    redisArgs,
		ready:   redisReady,
	}
	clusterKind = &kind{
		bin:     "redis-server",
		envVar:  "LOCKOUT_TEST_REDIS_CLUSTER",
		busPort: true,
		logFile: true,
		args: func(dir string, port int, extra []string) []string {
			return redisArgs(dir, port, append([]string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout),
				"--cluster-announce-ip", "127.0.0.1",
			}, extra...))
		},
		ready: redisReady,
	}
)

// Redis returns a standalone redis-server for t, started on a free loopback
// port with args appended to its command line (e.g. "--maxmemory", "1mb"),
// or the next server listed in LOCKOUT_TEST_REDIS when no args are given.
func Redis(t TB, args ...string) *Server {
	t.Helper()
	return get(t, redisKind, args)
}

// FlushRedis runs FLUSHALL on each address (the masters, for a cluster),
// failing the test on error.
func FlushRedis(t TB, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	for _, a := range addrs {
		err := withRedis(ctx, a, func(c *goredis.Client) error { return c.FlushAll(ctx).Err() })
		if err != nil {
			t.Fatalf("testserver: FLUSHALL on %s: %v", a, err)
		}
	}
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	// Addrs are the masters' addresses.
	Addrs []string
	// Nodes are the masters, in the order of Addrs.
	Nodes []*Server
}

// Controllable reports whether the test controls the nodes' processes
// (false when the cluster was given by LOCKOUT_TEST_REDIS_CLUSTER).
func (c *Cluster) Controllable() bool {
	return len(c.Nodes) > 0 && c.Nodes[0].Controllable()
}

// RequireControl skips t (fails it when CI=true) unless the test controls
// the cluster's processes.
func (c *Cluster) RequireControl(t TB) {
	t.Helper()
	if !c.Controllable() {
		skipOrFatal(t, "testserver: the cluster was given by LOCKOUT_TEST_REDIS_CLUSTER: the test cannot stop or restart its nodes")
	}
}

// RedisCluster returns a Redis Cluster for t: three masters on free loopback
// ports, no replicas, all 16384 slots assigned, every node reporting
// cluster_state:ok and agreeing on who owns which slot. When
// LOCKOUT_TEST_REDIS_CLUSTER lists nodes of an existing cluster, its masters
// are used instead. Creation takes 2-4 s: a fresh master waits 2 s before it
// reports cluster_state:ok. Nodes run with cluster-node-timeout 2000 ms.
func RedisCluster(t TB) *Cluster {
	t.Helper()
	if v := os.Getenv(clusterKind.envVar); v != "" {
		return envCluster(t, splitList(v))
	}
	begin := time.Now()
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, newLocal(t, clusterKind, nil))
	}
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.launchFresh() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("testserver: start cluster nodes: %v", err)
	}
	for _, n := range c.Nodes {
		c.Addrs = append(c.Addrs, n.Addr)
		n.afterStart = c.waitHealthy
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.create(ctx); err != nil {
		var logs strings.Builder
		for _, n := range c.Nodes {
			n.mu.Lock()
			if n.proc != nil {
				fmt.Fprintf(&logs, "\nnode %s:\n%s", n.Addr, n.proc.tail())
			}
			n.mu.Unlock()
		}
		t.Fatalf("testserver: create cluster %v: %v%s", c.Addrs, err, logs.String())
	}
	t.Logf("testserver: redis cluster %v ready in %v", c.Addrs, time.Since(begin).Round(time.Millisecond))
	return c
}

// create assigns the slots, joins the nodes and waits until the cluster is
// healthy.
func (c *Cluster) create(ctx context.Context) error {
	n := len(c.Nodes)
	for i, node := range c.Nodes {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		slots := make([]int, 0, hi-lo+1)
		for s := lo; s <= hi; s++ {
			slots = append(slots, s)
		}
		err := withRedis(ctx, node.Addr, func(rc *goredis.Client) error {
			// ADDSLOTS rather than ADDSLOTSRANGE, which needs Redis 7.0.
			if err := rc.ClusterAddSlots(ctx, slots...).Err(); err != nil {
				return fmt.Errorf("CLUSTER ADDSLOTS %d-%d: %w", lo, hi, err)
			}
			if err := rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
				return fmt.Errorf("CLUSTER SET-CONFIG-EPOCH: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", node.Addr, err)
		}
	}
	for _, node := range c.Nodes[1:] {
		host, portStr, _ := strings.Cut(node.Addr, ":")
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return fmt.Errorf("%s: bad port: %w", node.Addr, err)
		}
		err = withRedis(ctx, c.Nodes[0].Addr, func(rc *goredis.Client) error {
			return rc.ClusterMeet(ctx, host, strconv.Itoa(port)).Err()
		})
		if err != nil {
			return fmt.Errorf("%s: CLUSTER MEET %s: %w", c.Nodes[0].Addr, node.Addr, err)
		}
	}
	return c.waitHealthy(ctx)
}

// waitHealthy polls until every node reports cluster_state:ok, knows all
// nodes, and all nodes agree on the slot map with every link connected.
func (c *Cluster) waitHealthy(ctx context.Context) error {
	for {
		err := c.healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// healthy returns why the cluster is not healthy yet, or nil.
func (c *Cluster) healthy(ctx context.Context) error {
	var first string
	for _, node := range c.Nodes {
		var info, nodes string
		err := withRedis(ctx, node.Addr, func(rc *goredis.Client) error {
			var err error
			if info, err = rc.ClusterInfo(ctx).Result(); err != nil {
				return err
			}
			nodes, err = rc.ClusterNodes(ctx).Result()
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", node.Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", node.Addr, st)
		}
		if k := infoField(info, "cluster_known_nodes"); k != strconv.Itoa(len(c.Nodes)) {
			return fmt.Errorf("%s: cluster_known_nodes:%s", node.Addr, k)
		}
		view, err := slotView(nodes)
		if err != nil {
			return fmt.Errorf("%s: %w", node.Addr, err)
		}
		if first == "" {
			first = view
		} else if view != first {
			return fmt.Errorf("%s sees slots\n%s\nbut %s sees\n%s", node.Addr, view, c.Nodes[0].Addr, first)
		}
	}
	return nil
}

// slotView reduces CLUSTER NODES output to "id addr slots" lines, sorted,
// failing when a node is not settled (failing, handshaking, disconnected).
func slotView(nodes string) (string, error) {
	var lines []string
	for line := range strings.Lines(nodes) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "fail", "fail?", "handshake", "noaddr", "nofailover":
				return "", fmt.Errorf("node %s has flag %s", f[1], flag)
			}
		}
		if f[7] != "connected" {
			return "", fmt.Errorf("node %s link is %s", f[1], f[7])
		}
		addr, _, _ := strings.Cut(f[1], "@")
		lines = append(lines, f[0]+" "+addr+" "+strings.Join(f[8:], " "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

// envCluster wraps the cluster one of seeds belongs to: its masters.
func envCluster(t TB, seeds []string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	var errs []error
	for _, seed := range seeds {
		var nodes string
		err := withRedis(ctx, seed, func(rc *goredis.Client) error {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if st := infoField(info, "cluster_state"); st != "ok" {
				return fmt.Errorf("cluster_state:%s", st)
			}
			nodes, err = rc.ClusterNodes(ctx).Result()
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", seed, err))
			continue
		}
		c := &Cluster{}
		for line := range strings.Lines(nodes) {
			f := strings.Fields(line)
			if len(f) < 9 || !slices.Contains(strings.Split(f[2], ","), "master") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			c.Addrs = append(c.Addrs, addr)
			c.Nodes = append(c.Nodes, &Server{Addr: addr, t: t, kind: clusterKind})
		}
		if len(c.Addrs) == 0 {
			errs = append(errs, fmt.Errorf("%s: no master with slots in CLUSTER NODES:\n%s", seed, nodes))
			continue
		}
		return c
	}
	t.Fatalf("testserver: cluster from %s=%s does not answer: %v", clusterKind.envVar, strings.Join(seeds, ","), errors.Join(errs...))
	return nil
}
