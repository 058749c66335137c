package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// respError is an error reply from Redis.
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// respConn is a minimal RESP2 client, enough for readiness checks and
// cluster setup.
type respConn struct {
	c    net.Conn
	r    *bufio.Reader
	stop func() bool
}

// dialRESP connects to addr; the connection's deadline is ctx's.
func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop, err := bindConn(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c), stop: stop}, nil
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

// Close closes the connection.
func (c *respConn) Close() error {
	c.stop()
	return c.c.Close()
}

// do sends one command and reads its reply: a string (simple or bulk),
// int64, []any, nil, or a respError.
func (c *respConn) do(args ...string) (any, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return nil, err
	}
	return c.read()
}

// read reads one reply.
func (c *respConn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("redis: empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, respError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("redis: bad bulk length %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("redis: bad array length %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return arr, nil
	}
	return nil, fmt.Errorf("redis: unexpected reply %q", line)
}

// redisDo runs one command on a new connection to addr.
func redisDo(ctx context.Context, addr string, args ...string) (any, error) {
	c, err := dialRESP(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.do(args...)
}

// redisString runs one command whose reply is a string.
func redisString(ctx context.Context, addr string, args ...string) (string, error) {
	v, err := redisDo(ctx, addr, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("redis: %s: reply %T, want a string", args[0], v)
	}
	return s, nil
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
