package testserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

var memcachedKind = &kind{
	bin:    "memcached",
	envVar: "LOCKOUT_TEST_MEMCACHED",
	args: func(_ string, port int, extra []string) []string {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0"}
		if os.Geteuid() == 0 {
			// memcached refuses to run as root without -u.
			args = append(args, "-u", "root")
		}
		if len(extra) == 0 {
			// A full server refuses writes instead of evicting, as the
			// memcache store requires (memcache.ErrEvicting).
			return append(args, "-M")
		}
		return append(args, extra...)
	},
	ready: memcachedReady,
}

// Memcached returns a memcached for t, started on a free loopback port with
// args appended to its command line (e.g. "-M", "-m", "2"; with none, -M),
// or the next server listed in LOCKOUT_TEST_MEMCACHED when no args are
// given.
func Memcached(t TB, args ...string) *Server {
	t.Helper()
	return get(t, memcachedKind, args)
}

// FlushMemcached runs flush_all on each address, failing the test on error.
func FlushMemcached(t TB, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	for _, a := range addrs {
		lines, err := memcachedDo(ctx, a, "flush_all", "OK")
		if err != nil {
			t.Fatalf("testserver: flush_all on %s: %v", a, err)
		}
		if len(lines) != 1 || lines[0] != "OK" {
			t.Fatalf("testserver: flush_all on %s answered %q", a, lines)
		}
	}
}

// memcachedReady checks that addr answers "version"; when pid is not 0, that
// it is served by process pid.
func memcachedReady(ctx context.Context, addr string, pid int) error {
	if pid == 0 {
		lines, err := memcachedDo(ctx, addr, "version", "VERSION ")
		if err != nil {
			return err
		}
		if len(lines) != 1 {
			return fmt.Errorf("memcached: version answered %q", lines)
		}
		return nil
	}
	lines, err := memcachedDo(ctx, addr, "stats", "END")
	if err != nil {
		return err
	}
	want := "STAT pid " + strconv.Itoa(pid)
	for _, l := range lines {
		if l == want {
			return nil
		}
	}
	return fmt.Errorf("memcached: %s is not served by process %d", addr, pid)
}

// memcachedDo sends a text command and reads reply lines until one starts
// with last (or is an error line).
func memcachedDo(ctx context.Context, addr, cmd, last string) ([]string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop, err := bindConn(ctx, c)
	if err != nil {
		return nil, err
	}
	defer stop()
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if strings.HasPrefix(line, last) {
			return lines, nil
		}
		if line == "ERROR" || strings.HasPrefix(line, "CLIENT_ERROR") || strings.HasPrefix(line, "SERVER_ERROR") {
			return lines, fmt.Errorf("memcached: %s: %s", cmd, line)
		}
	}
}

// bindConn makes ctx's deadline and cancellation interrupt c's I/O; call the
// returned stop when done with c.
func bindConn(ctx context.Context, c net.Conn) (stop func() bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("set deadline: %w", err)
		}
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) }), nil
}
