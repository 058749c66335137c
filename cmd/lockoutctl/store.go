package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/backend/memcache"
	redisstore "github.com/go-lockout/lockout/backend/redis"
)

// opened is the store -store names, and what to close after it.
type opened struct {
	backend.Backend
	// about describes the store for messages: "redis 127.0.0.1:6379".
	about string
	// kind is "redis", "memcached" or "bolt".
	kind   string
	closed []func() error
}

func (s *opened) Close() error {
	err := s.Backend.Close()
	for _, f := range s.closed {
		err = errors.Join(err, f())
	}
	return err
}

// The journal bounds the tool opens a store with. A store trims its
// journal to its own bounds as it reads and appends (Redis removes the
// records older than its JournalRetention on every Records and Append, and
// keeps JournalMax), so a tool with the store's defaults (24 h, 100,000)
// would erase the records of a service that keeps more. The tool keeps
// whatever the store holds, and leaves trimming to the service.
const (
	keepJournal    = 10 * 365 * 24 * time.Hour
	keepJournalMax = math.MaxInt32
)

// openStore opens the store spec names. The redis and memcache URLs take
// one query parameter of the tool's own, key_prefix (the store's
// Options.Prefix); a bolt URL takes bucket (a bucket other than
// bolt.DefaultBucket, for a service that opened its store with bolt.New).
func (a *app) openStore(ctx context.Context, spec string) (*opened, error) {
	if spec == "" {
		return nil, usageErr("no store: give -store URL or path, or set LOCKOUT_STORE")
	}
	scheme, rest, hasScheme := strings.Cut(spec, "://")
	if !hasScheme {
		return a.openBolt(spec, "")
	}
	switch scheme {
	case "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		return openRedis(ctx, scheme, rest)
	case "memcache", "memcached":
		return openMemcache(rest)
	case "bolt", "file":
		u, err := url.Parse(spec)
		if err != nil {
			return nil, usageErr("-store %q: %v", spec, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, usageErr("-store %q: a bolt URL names a local file: bolt:///path (three slashes) or bolt://localhost/path", spec)
		}
		return a.openBolt(u.Path, u.Query().Get("bucket"))
	}
	return nil, usageErr("-store %q: unknown scheme %q: want redis, rediss, redis+sentinel, redis+cluster, memcache, bolt, or a file path", spec, scheme)
}

// splitURL takes apart what follows "scheme://": userinfo, hosts (a comma
// list), path and query. net/url cannot parse a comma list of hosts with
// ports.
func splitURL(rest string) (user *url.Userinfo, hosts []string, path string, query url.Values, err error) {
	rest, rawQuery, _ := strings.Cut(rest, "?")
	if query, err = url.ParseQuery(rawQuery); err != nil {
		return nil, nil, "", nil, err
	}
	authority, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		// Let net/url decode the userinfo's escapes.
		u, err := url.Parse("x://" + authority[:at+1] + "h")
		if err != nil {
			// Not err: it quotes the userinfo, password and all.
			return nil, nil, "", nil, errors.New("the user and password are not a valid URL userinfo (escape reserved characters with %XX)")
		}
		user, authority = u.User, authority[at+1:]
	}
	for h := range strings.SplitSeq(authority, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return nil, nil, "", nil, fmt.Errorf("server %q: %w", h, err)
		}
		hosts = append(hosts, h)
	}
	return user, hosts, path, query, nil
}

func openRedis(ctx context.Context, scheme, rest string) (*opened, error) {
	spec := scheme + "://" + rest
	user, hosts, path, query, err := splitURL(rest)
	if err != nil {
		return nil, usageErr("-store %s: %v", redact(spec), err)
	}
	opts := &redisstore.Options{
		Prefix: query.Get("key_prefix"),
		// The tool makes no decisions: a server that may evict keys is
		// the service's problem (its New refuses it), not a reason to
		// refuse an unlock.
		AllowEviction:    true,
		JournalRetention: keepJournal,
		JournalMax:       keepJournalMax,
	}
	query.Del("key_prefix")
	base, variant, _ := strings.Cut(scheme, "+")
	var client goredis.UniversalClient
	var about string
	switch variant {
	case "":
		u := &url.URL{Scheme: base, User: user, Host: strings.Join(hosts, ","), Path: "/" + path, RawQuery: query.Encode()}
		if len(hosts) != 1 {
			return nil, usageErr("-store %s: one server (for a Cluster: redis+cluster://host:port,host:port; for Sentinel: redis+sentinel://)", redact(spec))
		}
		o, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, usageErr("-store %s: %v", redact(spec), err)
		}
		o.ContextTimeoutEnabled = true
		client = goredis.NewClient(o)
		about = fmt.Sprintf("redis %s, database %d", o.Addr, o.DB)
	case "sentinel":
		// redis+sentinel://[user:pass@]s1:p1,s2:p2/master[/db]: the
		// userinfo authenticates to the master and replicas;
		// sentinel_username and sentinel_password to the sentinels.
		master, db, _ := strings.Cut(path, "/")
		if master == "" {
			return nil, usageErr("-store %s: name the master: redis+sentinel://host:port,host:port/mastername[/db]", redact(spec))
		}
		q := url.Values{}
		for k, v := range query {
			if k != "sentinel_username" && k != "sentinel_password" {
				q[k] = v
			}
		}
		q.Set("master_name", master)
		if db != "" {
			q.Set("db", db)
		}
		if user != nil {
			q.Set("username", user.Username())
			pw, _ := user.Password()
			q.Set("password", pw)
		}
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		u := &url.URL{Scheme: base, Host: hosts[0], RawQuery: q.Encode()}
		if su, sp := query.Get("sentinel_username"), query.Get("sentinel_password"); su != "" || sp != "" {
			u.User = url.UserPassword(su, sp)
		}
		o, err := goredis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, usageErr("-store %s: %v", redact(spec), err)
		}
		o.ContextTimeoutEnabled = true
		client = goredis.NewFailoverClient(o)
		about = fmt.Sprintf("redis master %q of sentinels %s, database %d", master, strings.Join(hosts, ","), o.DB)
	case "cluster":
		if path != "" {
			return nil, usageErr("-store %s: a Cluster has no databases: redis+cluster://host:port,host:port", redact(spec))
		}
		for _, h := range hosts[1:] {
			query.Add("addr", h)
		}
		u := &url.URL{Scheme: base, User: user, Host: hosts[0], RawQuery: query.Encode()}
		o, err := goredis.ParseClusterURL(u.String())
		if err != nil {
			return nil, usageErr("-store %s: %v", redact(spec), err)
		}
		o.ContextTimeoutEnabled = true
		client = goredis.NewClusterClient(o)
		about = "redis cluster " + strings.Join(hosts, ",")
	default:
		return nil, usageErr("-store %s: unknown scheme %q", redact(spec), scheme)
	}
	s, err := redisstore.New(ctx, client, opts)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", about, err)
	}
	return &opened{Backend: s, about: about, kind: "redis", closed: []func() error{client.Close}}, nil
}

// redact hides a URL's password, and drops its query (which may hold
// sentinel_password).
func redact(spec string) string {
	spec, _, _ = strings.Cut(spec, "?")
	scheme, rest, _ := strings.Cut(spec, "://")
	authority, tail, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		if user, _, ok := strings.Cut(authority[:at], ":"); ok {
			authority = user + ":xxxxx" + authority[at:]
		}
	}
	if tail != "" || strings.Contains(rest, "/") {
		authority += "/" + tail
	}
	return scheme + "://" + authority
}

func openMemcache(rest string) (*opened, error) {
	_, hosts, path, query, err := splitURL(rest)
	if err != nil {
		return nil, usageErr("-store %s: %v", redact("memcache://"+rest), err)
	}
	if path != "" {
		return nil, usageErr("-store %s: want memcache://host:port[,host:port...][?key_prefix=...]", redact("memcache://"+rest))
	}
	s, err := memcache.NewServers(hosts, &memcache.Options{
		Prefix: query.Get("key_prefix"),
		// As for Redis: the tool makes no decisions, and a server that
		// may evict is the service's choice (Options.AllowEviction), not
		// a reason to refuse an unlock.
		AllowEviction: true,
	})
	if err != nil {
		return nil, err
	}
	return &opened{Backend: s, about: "memcached " + strings.Join(hosts, ","), kind: "memcached"}, nil
}

// errHeld is the message for a bbolt file another process holds.
const errHeld = "the file is held by a running service (bbolt lets one process open it at a time): " +
	"stop the service, or act through its operator page or API, and try again (-bolt-wait waits longer)"

func (a *app) openBolt(path, bucket string) (*opened, error) {
	if path == "" {
		return nil, usageErr("-store: a bolt URL needs a path: bolt:///var/lib/app/lockout.db")
	}
	// Never create a file: a mistyped path would show an empty store.
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bolt file %s does not exist", path)
		}
		return nil, err
	}
	if fi.Size() == 0 {
		// Nor initialise an empty one: bbolt would make it a new database.
		return nil, fmt.Errorf("bolt file %s is empty: no service's store", path)
	}
	wait := a.boltWait
	if wait <= 0 {
		wait = -1 // try once
	}
	held := func() error {
		return &exitErr{exitBusy, fmt.Errorf("bolt file %s: %s", path, errHeld)}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, held()
		}
		return nil, err
	}
	about := "bolt file " + path
	if bucket == "" {
		bucket = bolt.DefaultBucket
	} else if bucket != bolt.DefaultBucket {
		about = fmt.Sprintf("bolt file %s, bucket %q", path, bucket) // a service's own DB
	}
	// Never create the bucket either (bolt.New would): a file whose
	// service keeps its store in another bucket would show an empty store,
	// and get one written into it.
	var buckets []string
	if err := db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			buckets = append(buckets, strconv.Quote(string(name)))
			return nil
		})
	}); err != nil {
		db.Close()
		return nil, err
	}
	if !slices.Contains(buckets, strconv.Quote(bucket)) {
		db.Close()
		return nil, fmt.Errorf("bolt file %s holds no bucket %q (its buckets: %s): name the service's with bolt:///path?bucket=NAME", path, bucket, cmp.Or(strings.Join(buckets, ", "), "none"))
	}
	s, err := bolt.New(db, bucket, &bolt.Options{SweepInterval: -1, JournalRetention: keepJournal, JournalMax: keepJournalMax})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &opened{Backend: s, about: about, kind: "bolt", closed: []func() error{db.Close}}, nil
}
