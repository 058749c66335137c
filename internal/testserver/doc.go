// Package testserver starts real redis-server, redis-sentinel and memcached
// processes for tests: on free loopback ports (127.0.0.1 only), in
// t.TempDir(), killed on t.Cleanup. It also builds a three-master Redis
// Cluster ([RedisCluster]), and a master with a replica watched by three
// Redis Sentinels ([RedisSentinel]). It talks to the servers it starts
// through go-redis, one connection per check.
//
// # Binaries
//
// redis-server, redis-sentinel and memcached are looked up on PATH and then
// in /usr/bin, /usr/sbin and /usr/local/bin. When a binary is missing and no
// environment variable names a server, the test is skipped with a message
// saying how to install them (apt-get install redis-server redis-sentinel
// memcached; Debian ships redis-sentinel in a package of its own) — except
// when CI=true, where the test fails with the same message: in CI a test
// that cannot get its server must never pass silently.
//
// Redis runs with --bind 127.0.0.1 --protected-mode no --save ""
// --appendonly no --daemonize no and logs to a file in its temp dir; a
// sentinel runs with the same bind, protected-mode, daemonize and log
// settings, from a sentinel.conf in its temp dir that it rewrites; memcached
// runs with -l 127.0.0.1 -U 0 (and -u root when the test runs as root, since
// memcached refuses to run as root otherwise). A server that does not come up
// within 10 s, or exits early, fails the test with the tail of its log. A
// failure to bind a port picked as free (another process took it) is retried
// on a new port.
//
// # Environment variables
//
// Tests can be pointed at existing servers instead:
//
//	LOCKOUT_TEST_REDIS=host:port[,host:port...]        standalone Redis
//	LOCKOUT_TEST_REDIS_CLUSTER=host:port,host:port,... any nodes of one Redis Cluster
//	LOCKOUT_TEST_MEMCACHED=host:port[,host:port...]    memcached
//
// With a list, successive calls within one test hand out successive entries
// (a test that wants two memcached servers calls Memcached twice). When the
// list is exhausted, or when extra server arguments were asked for (an
// existing server cannot honour them), a local server is started if its
// binary is found; otherwise the test is skipped (failed when CI=true).
// No variable names a Sentinel set: RedisSentinel always starts its own.
// A server given by an environment variable is not [Server.Controllable]:
// Stop and Start skip the test (fail it when CI=true). Such servers are
// shared, and conformance harnesses flush them (FlushRedis, FlushMemcached):
// run `go test -p 1` so that packages do not flush each other's state.
//
// # Processes
//
// Children run in their own process group with Pdeathsig SIGKILL (Linux), so
// they do not outlive the test binary even when it is killed; cleanup kills
// the process group and waits. Start and Stop must be called from the test's
// own goroutine (they may call t.Fatal or t.Skip).
package testserver
