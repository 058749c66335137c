package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// errConnUsed is what the dialer of withRedis answers when go-redis asks
// for a second connection: each check runs on the one it was given.
var errConnUsed = errors.New("testserver: the check's only connection is gone")

// onceDialer hands out conn once.
type onceDialer struct {
	mu   sync.Mutex
	conn net.Conn
}

func (d *onceDialer) dial(context.Context, string, string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.conn
	if c == nil {
		return nil, errConnUsed
	}
	d.conn = nil
	return c, nil
}

// clientOptions are the go-redis options of a check on conn: RESP2, no
// CLIENT SETINFO and no retries, so that go-redis sends exactly the
// commands the check runs, on conn only. A failed dial is never handed to
// go-redis (which would log it), and ctx's deadline is the socket's.
func clientOptions(addr string, conn net.Conn) *goredis.Options {
	d := &onceDialer{conn: conn}
	return &goredis.Options{
		Addr:                  addr,
		Dialer:                d.dial,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		PoolSize:              1,
		ContextTimeoutEnabled: true,
	}
}

// dialCheck dials addr for a check. ctx's cancellation (or deadline)
// closes the connection, which ends a wait for a reply at once; call stop
// when done.
func dialCheck(ctx context.Context, addr string) (conn net.Conn, stop func() bool, err error) {
	var d net.Dialer
	conn, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	return conn, context.AfterFunc(ctx, func() { _ = conn.Close() }), nil
}

// withRedis runs f with a go-redis client on one new connection to addr,
// closed when f returns.
func withRedis(ctx context.Context, addr string, f func(c *goredis.Client) error) error {
	conn, stop, err := dialCheck(ctx, addr)
	if err != nil {
		return err
	}
	defer stop()
	c := goredis.NewClient(clientOptions(addr, conn))
	defer c.Close()
	return withCtxErr(ctx, f(c))
}

// withSentinel runs f with a go-redis Sentinel client on one new
// connection to the sentinel at addr, closed when f returns.
func withSentinel(ctx context.Context, addr string, f func(c *goredis.SentinelClient) error) error {
	conn, stop, err := dialCheck(ctx, addr)
	if err != nil {
		return err
	}
	defer stop()
	c := goredis.NewSentinelClient(clientOptions(addr, conn))
	defer c.Close()
	return withCtxErr(ctx, f(c))
}

// withCtxErr adds ctx's error to err when ctx ended: the closed
// connection's error, or the socket's timeout, alone would not say why.
// The socket's deadline is ctx's, and may fire a moment before ctx's
// timer: a deadline that has passed counts as ended.
func withCtxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// redisInfo returns the INFO section of the server at addr.
func redisInfo(ctx context.Context, addr, section string) (string, error) {
	var info string
	err := withRedis(ctx, addr, func(c *goredis.Client) error {
		var err error
		info, err = c.Info(ctx, section).Result()
		return err
	})
	return info, err
}

// infoField returns field's value in an INFO-style "key:value" text.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), field+":"); ok {
			return v
		}
	}
	return ""
}
