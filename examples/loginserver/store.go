package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	"github.com/go-lockout/lockout/backend/memcache"
	"github.com/go-lockout/lockout/backend/memory"
	redisstore "github.com/go-lockout/lockout/backend/redis"
)

// openedStore is the store the -store flag names, and what to close with it.
type openedStore struct {
	backend.Backend
	// About describes the store for the banner.
	About  string
	closed []func() error // after the store, in order
}

// Close closes the store, then what it was built on.
func (s *openedStore) Close() error {
	err := s.Backend.Close()
	for _, f := range s.closed {
		err = errors.Join(err, f())
	}
	return err
}

// storeKinds is the help text for the -store flag's values.
const storeKinds = "bolt, memory, redis://host:port[/db] or memcache://host:port[,host:port...]"

// openStore opens the store spec names (see storeKinds). The bolt store
// keeps its file in dataDir, or in a new temporary directory that Close
// removes.
func openStore(ctx context.Context, spec, dataDir string) (*openedStore, error) {
	switch {
	case spec == "bolt":
		return openBolt(dataDir)

	case spec == "memory":
		s, err := memory.New(nil)
		if err != nil {
			return nil, err
		}
		return &openedStore{Backend: s, About: "memory (lost at exit)"}, nil

	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		opts, err := goredis.ParseURL(spec)
		if err != nil {
			return nil, fmt.Errorf("-store: %w", err)
		}
		// The settings backend/redis recommends: bounded calls, and the
		// policy's deadlines applied to the socket.
		opts.DialTimeout = time.Second
		opts.ReadTimeout = time.Second
		opts.WriteTimeout = time.Second
		opts.ContextTimeoutEnabled = true
		client := goredis.NewClient(opts)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := redisstore.New(ctx, client, nil)
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("redis %s: %w", opts.Addr, err)
		}
		return &openedStore{Backend: s, About: fmt.Sprintf("redis %s, database %d", opts.Addr, opts.DB), closed: []func() error{client.Close}}, nil

	case strings.HasPrefix(spec, "memcache://"):
		servers := strings.Split(strings.TrimPrefix(spec, "memcache://"), ",")
		for _, srv := range servers {
			if _, _, err := net.SplitHostPort(srv); err != nil {
				return nil, fmt.Errorf("-store %s: want %s: %w", spec, storeKinds, err)
			}
		}
		s, err := memcache.NewServers(servers, nil)
		if err != nil {
			return nil, err
		}
		return &openedStore{Backend: s, About: "memcached " + strings.Join(servers, ", ") + " (cannot list locks)"}, nil
	}
	return nil, fmt.Errorf("-store %q: want %s", spec, storeKinds)
}

// journalFor returns the journal of the attempts for store: the store
// itself when it keeps one (backend.Journal: memory, and the stores that
// implement it), or else an in-process memory store that keeps only the
// journal, a bounded ring trimmed after 24 h, lost at exit; and its
// description for the banner.
func journalFor(store *openedStore) (*lockout.JournalConfig, string, error) {
	if _, ok := store.Backend.(backend.Journal); ok {
		return &lockout.JournalConfig{}, "in the store", nil
	}
	m, err := memory.New(nil)
	if err != nil {
		return nil, "", err
	}
	store.closed = append(store.closed, m.Close)
	return &lockout.JournalConfig{Store: m}, "in memory (the store keeps none), lost at exit", nil
}

func openBolt(dataDir string) (*openedStore, error) {
	var closed []func() error
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "lockout-loginserver-")
		if err != nil {
			return nil, err
		}
		dataDir = dir
		closed = append(closed, func() error { return os.RemoveAll(dir) })
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, "lockout.db")
	s, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		for _, f := range closed {
			_ = f()
		}
		return nil, err
	}
	about := "bolt file " + path
	if len(closed) > 0 {
		about += " (removed at exit; -data DIR keeps it)"
	}
	return &openedStore{Backend: s, About: about, closed: closed}, nil
}
