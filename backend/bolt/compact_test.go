package bolt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.db"), filepath.Join(dir, "dst.db")
	s, err := Open(src, 0o600, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	// A burst of keys, then most of them deleted: the file keeps its size.
	addKeys(t, s, "burst", 5000, time.Hour)
	var ops []backend.Op
	for i := range 4990 {
		ops = append(ops, backend.DeleteOp("burst/"+itoa(i)))
	}
	do(t, s, ops...)
	addKeys(t, s, "expiring", 100, 50*time.Millisecond)
	addKeys(t, s, "forever", 10, backend.NoExpiry)
	do(t, s, backend.IncrOp("forever/0", 41, time.Hour))

	// Not while the store has the file open.
	if err := Compact(context.Background(), src, dst); !errors.Is(err, ErrFileLocked) {
		t.Errorf("Compact of an open file: err = %v, want ErrFileLocked", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Compact left %s behind", dst)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)

	// A cancelled context stops it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Compact(ctx, src, dst); !errors.Is(err, context.Canceled) {
		t.Errorf("Compact with a cancelled context: err = %v", err)
	}

	if err := Compact(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	if err := Compact(context.Background(), src, dst); err == nil {
		t.Error("Compact over an existing file: no error")
	}
	before, _ := os.Stat(src)
	after, _ := os.Stat(dst)
	t.Logf("compacted %d bytes into %d", before.Size(), after.Size())
	if after.Size() >= before.Size()/2 {
		t.Errorf("compacted file has %d bytes, source %d", after.Size(), before.Size())
	}

	s, err = Open(dst, 0o600, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, x := s.counts(t); e != 20 || x != 10 {
		t.Errorf("compacted store: %d entries, %d index entries; want 20, 10", e, x)
	}
	r := do(t, s, backend.ExistsOp("forever/0"), backend.ExistsOp("burst/4995"), backend.ExistsOp("expiring/3"), backend.ExistsOp("burst/3"))
	if r[0].Value != 42 || r[0].TTL != backend.NoExpiry {
		t.Errorf("forever/0: %+v, want 42 without expiry", r[0])
	}
	if r[1].Value != 1 || r[1].TTL <= 59*time.Minute || r[1].TTL > time.Hour {
		t.Errorf("burst/4995: %+v, want 1 with its TTL", r[1])
	}
	if r[2].Found || r[3].Found {
		t.Errorf("expired or deleted keys in the compacted store: %+v, %+v", r[2], r[3])
	}
	// The index was rebuilt: the sweeper finds the expiring keys.
	addKeys(t, s, "later", 5, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if n, err := s.Sweep(context.Background()); err != nil || n != 5 {
		t.Errorf("Sweep in the compacted store: %d, %v; want 5", n, err)
	}
}

func itoa(i int) string { return fmt.Sprint(i) }

// TestCompactLiveFile compacts a file that keys sprayed in random order
// (an attacker's usernames, still live) filled to MaxSize: the copy must
// not be larger than the file. With bbolt's default of half-full pages for
// the copy, written in key order, 4 MiB of live keys took 5.4 MiB, in a
// file of 8 MiB: twice the MaxSize of the store to reopen it.
func TestCompactLiveFile(t *testing.T) {
	const maxSize = 1 << 20
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.db"), filepath.Join(dir, "dst.db")
	s, err := Open(src, 0o600, &Options{MaxSize: maxSize, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var keys []string
	for batch := 100; ; {
		ops := make([]backend.Op, batch)
		for i := range ops {
			ops[i] = backend.IncrOp(fmt.Sprintf("lockout:a:username:{u=%016x}", rnd.Uint64()), 1, time.Hour)
		}
		err := s.Do(context.Background(), ops, make([]backend.Result, len(ops)))
		if errors.Is(err, backend.ErrFull) && batch > 1 {
			batch = 1
			continue
		}
		if errors.Is(err, backend.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			keys = append(keys, op.Key)
		}
	}
	used := s.txSize(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Compact(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(src)
	after, _ := os.Stat(dst)
	s, err = Open(dst, 0o600, &Options{MaxSize: maxSize, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("%d live keys: %d bytes used in a file of %d; compacted, %d in a file of %d", len(keys), used, before.Size(), s.txSize(t), after.Size())
	if after.Size() > before.Size() || s.txSize(t) > used {
		t.Errorf("the compacted copy takes %d bytes in a file of %d, the source %d in a file of %d", s.txSize(t), after.Size(), used, before.Size())
	}
	if e, x := s.counts(t); e != len(keys) || x != len(keys) {
		t.Errorf("compacted store: %d entries, %d index entries; want %d of each", e, x, len(keys))
	}
	s.checkIndex(t)
	ops := make([]backend.Op, len(keys))
	for i, k := range keys {
		ops[i] = backend.ExistsOp(k)
	}
	for i, r := range do(t, s, ops...) {
		if !r.Found || r.Value != 1 || r.TTL <= 59*time.Minute || r.TTL > time.Hour {
			t.Fatalf("%s in the compacted store: %+v", keys[i], r)
		}
	}
}

// txSize returns the size of the file's pages up to the last in use.
func (s *Store) txSize(t testing.TB) int64 {
	t.Helper()
	tx, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.Size()
}
