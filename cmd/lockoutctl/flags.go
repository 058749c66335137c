package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
)

// app holds the flags and the streams of one run.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	inited         bool // the flags' defaults are set

	// common
	store      string
	prefix     string
	json       bool
	operator   string
	rules      string
	ipv4Prefix int
	ipv6Prefix int
	timeout    time.Duration
	boltWait   time.Duration
	verbose    bool

	// subject (and the journal's filters)
	username, ip, userAgent string
	fields                  fieldsFlag

	// commands
	key     string // unlock
	yes     bool   // reset-all
	outcome string // attempts
	limit   int
	before  string
}

func defaultOperator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// commonFlags defines the flags every command takes. Defining them on two
// flag sets is safe: the second Parse starts from what the first set.
func (a *app) commonFlags(fs *flag.FlagSet) {
	if !a.inited {
		a.inited = true
		a.operator = defaultOperator()
		a.store = os.Getenv("LOCKOUT_STORE")
		a.prefix = envOr("LOCKOUT_PREFIX", lockout.DefaultPrefix)
		a.rules = os.Getenv("LOCKOUT_RULES")
		a.ipv4Prefix, a.ipv6Prefix = lockout.DefaultIPv4Prefix, lockout.DefaultIPv6Prefix
		a.timeout = time.Minute
		a.boltWait = time.Second
	}
	fs.StringVar(&a.store, "store", a.store, "the store: redis://, rediss://, redis+sentinel://, redis+cluster://, memcache://, bolt:///path or a path; $LOCKOUT_STORE when not given")
	fs.StringVar(&a.prefix, "prefix", a.prefix, "the policy's key prefix, lockout.Config.Prefix; $LOCKOUT_PREFIX when not given")
	fs.BoolVar(&a.json, "json", a.json, "write JSON instead of a table")
	fs.StringVar(&a.operator, "operator", a.operator, "who acts, for the log and the journal of unlocks and resets; $USER when not given")
	fs.StringVar(&a.rules, "rules", a.rules, "the policy's `rules`, [name=]field+field[:limit],... with fields username, ip, useragent or a custom field's name; when not given ($LOCKOUT_RULES), learnt from the keys where the store lists them, else \"username,username+ip,ip\"")
	fs.IntVar(&a.ipv4Prefix, "ipv4-prefix", a.ipv4Prefix, "the IPv4 prefix length the -rules rules key addresses by")
	fs.IntVar(&a.ipv6Prefix, "ipv6-prefix", a.ipv6Prefix, "the IPv6 prefix length the -rules rules key addresses by")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "bounds the whole command")
	fs.DurationVar(&a.boltWait, "bolt-wait", a.boltWait, "how long to wait for a bbolt file that another process holds")
	fs.BoolVar(&a.verbose, "v", a.verbose, "log the engine's messages (operator actions) to stderr")
}

// subjectFlags defines the flags that give a subject.
func (a *app) subjectFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.username, "username", "", "the subject's username (canonicalised as the engine does)")
	fs.StringVar(&a.ip, "ip", "", "the subject's IP address (an IPv6 address stands for its prefix)")
	fs.StringVar(&a.userAgent, "user-agent", "", "the subject's user agent")
	fs.Var(&a.fields, "field", "a custom field of the subject, `name=value` (repeatable)")
}

// commandFlags defines a command's own flags.
func (a *app) commandFlags(name string, fs *flag.FlagSet) {
	switch name {
	case "unlock":
		fs.StringVar(&a.key, "key", "", "unlock this one lock key, as locks lists it, instead of a subject")
	case "reset-all":
		fs.BoolVar(&a.yes, "yes", false, "do not ask for confirmation")
	case "attempts":
		fs.StringVar(&a.username, "username", "", "only the records of this username")
		fs.StringVar(&a.ip, "ip", "", "only the records of this IP address")
		fs.StringVar(&a.outcome, "outcome", "", "only one kind of record: success, failure, refused, lockout, unlock or reset")
		fs.IntVar(&a.limit, "limit", 50, "at most this many records (up to 1000)")
		fs.StringVar(&a.before, "before", "", "continue after an earlier page: the cursor it printed")
	}
}

// fieldsFlag collects -field name=value.
type fieldsFlag map[string]string

func (f *fieldsFlag) String() string {
	if f == nil || *f == nil {
		return ""
	}
	var parts []string
	for k, v := range *f {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (f *fieldsFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	if *f == nil {
		*f = fieldsFlag{}
	}
	// A subject has one value per field: a second would silently replace
	// the first (an unlock of one tenant where two were meant).
	if old, ok := (*f)[name]; ok && old != value {
		return fmt.Errorf("-field %s: given twice (%q and %q): a subject has one value per field; run the command once for each", name, old, value)
	}
	(*f)[name] = value
	return nil
}

// subject returns the subject the flags give, or a usage error when they
// give none.
func (a *app) subject() (lockout.Subject, error) {
	s := lockout.Subject{Username: a.username, IP: a.ip, UserAgent: a.userAgent}
	if len(a.fields) > 0 {
		s.Fields = map[string]string(a.fields)
	}
	if s.Username == "" && s.IP == "" && s.UserAgent == "" && len(s.Fields) == 0 {
		return s, usageErr("give a subject: -username, -ip, -user-agent or -field name=value")
	}
	if s.IP != "" {
		if _, err := lockout.ParseIP(s.IP); err != nil {
			return s, usageErr("-ip: %v", err)
		}
	}
	return s, nil
}
