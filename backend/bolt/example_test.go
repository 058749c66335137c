package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
)

func ExampleOpen() {
	// In production: a file on a local disk, such as
	// /var/lib/myapp/lockout.db. Here, a fresh directory.
	dir, err := os.MkdirTemp("", "lockout-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "lockout.db")

	// Optionally, at start-up, reclaim the space of a past burst of keys.
	ctx := context.Background()
	switch err := bolt.Compact(ctx, path, path+".compact"); {
	case err == nil:
		if err := os.Rename(path+".compact", path); err != nil {
			log.Fatal(err)
		}
	case errors.Is(err, fs.ErrNotExist): // the first start: nothing to compact
	default:
		log.Fatal(err)
	}

	s, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second, // wait up to 5 s for another process to let go of the file
		MaxSize: 256 << 20,       // fail closed (backend.ErrFull) beyond 256 MiB
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, bolt.ErrFileLocked): the file is in use
	}
	defer s.Close()

	r, err := backend.Do1(ctx, s, backend.IncrOp("u=alice", 1, 15*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("alice: %d failure, %v left\n", r.Value, r.TTL.Round(time.Minute))
	// Output: alice: 1 failure, 15m0s left
}

func ExampleNew() {
	// An application's own bbolt file, which also holds its data.
	dir, err := os.MkdirTemp("", "lockout-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := bbolt.Open(filepath.Join(dir, "app.db"), 0o600, &bbolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true, // as Open does: see the package's caveats
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close() // after the store: the caller keeps db

	s, err := bolt.New(db, "lockout", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	r, err := backend.Do1(ctx, s, backend.IncrOp("u=alice", 1, time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("alice: %d failure\n", r.Value)
	// Output: alice: 1 failure
}
