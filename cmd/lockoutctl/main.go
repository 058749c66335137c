// Command lockoutctl is the operator's tool for lockout: it shows a
// subject's counters and locks, lifts locks, resets subjects or a whole
// policy, lists the locked keys and reads the journal of attempts, in the
// store a service keeps its state in (Redis, Sentinel, Cluster, memcached
// or a bbolt file).
//
// Usage:
//
//	lockoutctl [flags] command [flags]
//
// Commands:
//
//	status     the counters and locks of a subject, per rule
//	unlock     lift every lock that holds a subject (or one key: -key)
//	reset      forget everything about a subject: counters, locks, lockout history
//	reset-all  forget everything of the policy (its own prefix and rules only)
//	locks      list the locked keys
//	attempts   read the journal of attempts, newest first
//
// A subject is given by -username, -ip, -user-agent and -field name=value
// (repeatable). The store is given by -store (default $LOCKOUT_STORE):
//
//	redis://[user:pass@]host:port[/db][?go-redis options]
//	rediss://...                                        the same over TLS
//	redis+sentinel://[user:pass@]host:port,host:port/master[/db][?options]
//	rediss+sentinel://...                               the same over TLS
//	redis+cluster://[user:pass@]host:port,host:port[?options]
//	rediss+cluster://...                                the same over TLS
//	memcache://host:port[,host:port...]
//	bolt:///path/to/file.db, or a plain path            a bbolt file
//
// Rules. Keys describe themselves (prefix:kind:rule:{u=alice,ip=…}), so on
// a store that can list its keys (Redis, bbolt) the tool learns the rules
// of the prefix from the keys it holds, and -rules is needed only to show
// limits. On memcached, which cannot list, it assumes the rules -rules
// names, by default "username,username+ip,ip" (the rules of
// lockout.ByUsername, ByUsernameAndIP and ByIP).
//
// Exit codes: 0 done; 1 error (store unreachable, refused confirmation,
// ...); 2 usage; 3 partial or unsupported: the store could not do all of
// it (memcached cannot list keys, keeps no journal); 4 the bbolt file is
// held by a running service.
//
// See the README's "Command-line tool" section for every flag and
// examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitPartial = 3
	exitBusy    = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitErr is an error with its exit code.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitErr{exitUsage, fmt.Errorf(format, args...)}
}

func partialErr(err error) error { return &exitErr{exitPartial, err} }

// run runs the tool with args (without the program's name) and returns its
// exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	err := a.main(ctx, args)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(stderr, "lockoutctl:", err)
	var e *exitErr
	if errors.As(err, &e) {
		return e.code
	}
	return exitError
}

// commands maps each command to its function and its one-line summary.
var commands = []struct {
	name, summary string
	subject       bool // takes a subject
	fn            func(*app, context.Context) error
}{
	{"status", "the counters and locks of a subject, per rule", true, (*app).status},
	{"unlock", "lift every lock that holds a subject (or one key: -key)", true, (*app).unlock},
	{"reset", "forget everything about a subject: counters, locks, lockout history", true, (*app).reset},
	{"reset-all", "forget everything of the policy (its own prefix and rules only)", false, (*app).resetAll},
	{"locks", "list the locked keys", false, (*app).locks},
	{"attempts", "read the journal of attempts, newest first", false, (*app).attempts},
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `usage: lockoutctl [flags] command [flags]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "lockoutctl command -h" for a command's flags. Stores (-store):
  redis://host:port[/db]   rediss:// (TLS)
  redis+sentinel://host:port,host:port/master[/db]   rediss+sentinel://
  redis+cluster://host:port,host:port               rediss+cluster://
  memcache://host:port[,host:port...]
  bolt:///path/file.db, or a plain path
Exit codes: 0 done, 1 error, 2 usage, 3 partial or unsupported by the store,
4 the bbolt file is held by a running service.
`)
}

func (a *app) main(ctx context.Context, args []string) error {
	// Flags before the command, then the command's own (which include the
	// common ones again, so that they may come after the command too).
	top := flag.NewFlagSet("lockoutctl", flag.ContinueOnError)
	top.SetOutput(a.stderr)
	top.Usage = func() { a.usage(a.stderr); top.PrintDefaults() }
	a.commonFlags(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitErr{exitUsage, err}
	}
	if top.NArg() == 0 {
		a.usage(a.stderr)
		return usageErr("no command")
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		a.usage(a.stdout)
		return nil
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("lockoutctl "+name, flag.ContinueOnError)
		fs.SetOutput(a.stderr)
		fs.Usage = func() {
			fmt.Fprintf(a.stderr, "usage: lockoutctl %s [flags]\n\n%s.\n\nflags:\n", name, c.summary)
			fs.PrintDefaults()
		}
		a.commonFlags(fs)
		if c.subject {
			a.subjectFlags(fs)
		}
		a.commandFlags(name, fs)
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &exitErr{exitUsage, err}
		}
		if fs.NArg() > 0 {
			return usageErr("%s: unexpected argument %q (flags come before arguments; values with spaces need quotes)", name, fs.Arg(0))
		}
		return c.fn(a, ctx)
	}
	a.usage(a.stderr)
	return usageErr("unknown command %q", name)
}
