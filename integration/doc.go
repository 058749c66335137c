// Package integration runs the lockout conformance suite, store and policy
// levels, against Redis and memcached servers in Docker containers started
// with testcontainers-go (github.com/testcontainers/testcontainers-go).
//
// It is a module of its own, with a replace directive pointing at the
// library in the parent directory, so that importing the library never pulls
// testcontainers-go and the Docker clients into an application's build.
// The package has tests only; run them from this directory:
//
//	cd integration && go test -race ./...
//
// # Docker
//
// The tests need a healthy Docker engine (the Docker CLI alone is not
// enough). Before starting a container they look for one the way
// testcontainers-go does (DOCKER_HOST, the Docker context,
// ~/.testcontainers.properties, the default and rootless sockets) and ask it
// for its info, within a few seconds. Without an engine they skip, saying
// why; they never fail and never wait for one. That holds in CI too
// (CI=true): the CI machines have the Docker CLI but no engine, and the
// library's own tests already run the same suite against real redis-server
// and memcached processes there, so a missing engine is a skip rather than
// the failure an unreachable server is elsewhere in the project. With an
// engine, a container that does not start, or a store that fails the suite,
// fails the test.
package integration
