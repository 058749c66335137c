package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactTxKeys is how many keys Compact copies per write transaction.
const compactTxKeys = 10_000

// Compact copies the live keys of the store file at srcPath (made by
// [Open]) into a new file at dstPath, which must not exist, leaving expired
// keys and free pages behind. A bbolt file never shrinks: the space of
// deleted and expired keys is reused for new ones but never given back to
// the file system, so a file that once held a burst of keys keeps its size.
// Compact is how to reclaim it.
//
// Compact works offline: srcPath must not be open (it fails after
// DefaultTimeout with an error wrapping ErrFileLocked if a Store holds it). A
// typical use, before Open at start-up:
//
//	switch err := bolt.Compact(ctx, path, path+".compact"); {
//	case err == nil:
//		if err := os.Rename(path+".compact", path); err != nil {
//			return err
//		}
//	case !errors.Is(err, fs.ErrNotExist): // a missing file: nothing to do
//		return err
//	}
//
// On error, dstPath is removed and srcPath is untouched. Compact copies only
// the bucket Open uses (its counters, and its journals' records); for a store made by [New] over a DB of the
// caller's, use bbolt.Compact on that DB, after [Store.Sweep].
func Compact(ctx context.Context, srcPath, dstPath string) (err error) {
	if _, err := os.Stat(dstPath); err == nil {
		return fmt.Errorf("lockout/bolt: compact: %s already exists", dstPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lockout/bolt: compact: %w", err)
	}
	src, err := bbolt.Open(srcPath, 0, &bbolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return lockedErr(srcPath, DefaultTimeout, err)
		}
		return fmt.Errorf("lockout/bolt: compact: open %s: %w", srcPath, err)
	}
	defer src.Close()
	mode := fs.FileMode(0o600)
	if fi, err := os.Stat(srcPath); err == nil {
		mode = fi.Mode().Perm()
	}
	dst, err := bbolt.Open(dstPath, mode, &bbolt.Options{Timeout: DefaultTimeout, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("lockout/bolt: compact: open %s: %w", dstPath, err)
	}
	defer func() {
		if cerr := dst.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("lockout/bolt: compact: %w", cerr)
		}
		if err != nil {
			os.Remove(dstPath)
		}
	}()
	err = src.View(func(stx *bbolt.Tx) error {
		top := stx.Bucket([]byte(DefaultBucket))
		if top == nil || string(top.Get(formatKey)) != formatVersion {
			return fmt.Errorf("%s holds no store made by this package", srcPath)
		}
		entries := top.Bucket(entriesBucket)
		if entries == nil {
			return fmt.Errorf("%s lacks its entries bucket", srcPath)
		}
		expiry := top.Bucket(expiryBucket)
		if expiry == nil {
			return fmt.Errorf("%s lacks its expiry bucket", srcPath)
		}
		now := time.Now().UnixNano()
		// Both buckets are copied in key order, into pages filled whole
		// (FillPercent 1): bbolt's default of half-full pages, meant for
		// random inserts, left a compacted copy of a file of live keys
		// larger than the file.
		c := entries.Cursor()
		k, v := c.First()
		for first := true; first || k != nil; first = false {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := dst.Update(func(dtx *bbolt.Tx) error {
				dtop, err := dtx.CreateBucketIfNotExists([]byte(DefaultBucket))
				if err != nil {
					return err
				}
				if err := dtop.Put(formatKey, []byte(formatVersion)); err != nil {
					return err
				}
				dentries, err := dtop.CreateBucketIfNotExists(entriesBucket)
				if err != nil {
					return err
				}
				dentries.FillPercent = 1
				for n := 0; k != nil && n < compactTxKeys; k, v = c.Next() {
					e, err := decodeEntry(k, v, "")
					if err != nil {
						return err
					}
					if !e.live(now) {
						continue
					}
					n++
					// k and v live in src's mmap, valid until its
					// transaction ends, which outlives this one.
					if err := dentries.Put(k, v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		// The expiry index, from the source's (in expiry order), for
		// the entries copied: live, with that expiry.
		c = expiry.Cursor()
		k, _ = c.First()
		for first := true; first || k != nil; first = false {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := dst.Update(func(dtx *bbolt.Tx) error {
				dexpiry, err := dtx.Bucket([]byte(DefaultBucket)).CreateBucketIfNotExists(expiryBucket)
				if err != nil {
					return err
				}
				dexpiry.FillPercent = 1
				for n := 0; k != nil && n < compactTxKeys; k, _ = c.Next() {
					if len(k) <= 8 {
						continue
					}
					exp, sk := int64(binary.BigEndian.Uint64(k)), k[8:]
					v := entries.Get(sk)
					if v == nil {
						continue
					}
					if e, err := decodeEntry(sk, v, ""); err != nil || e.exp != exp || !e.live(now) {
						continue
					}
					n++
					if err := dexpiry.Put(k, nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if jb := top.Bucket(journalBucket); jb != nil {
			return compactJournals(ctx, jb, dst)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lockout/bolt: compact %s: %w", srcPath, err)
	}
	return nil
}

// compactJournals copies every journal record of jb into dst, keeping each
// journal's sequence so that IDs go on growing. It copies records past
// their retention too (Compact does not know it): the store's sweeper
// drops them.
func compactJournals(ctx context.Context, jb *bbolt.Bucket, dst *bbolt.DB) error {
	for _, name := range journalNames(jb) {
		src := jb.Bucket(name)
		c := src.Cursor()
		k, v := c.First()
		for first := true; first || k != nil; first = false {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := dst.Update(func(dtx *bbolt.Tx) error {
				djb, err := dtx.Bucket([]byte(DefaultBucket)).CreateBucketIfNotExists(journalBucket)
				if err != nil {
					return err
				}
				b, err := djb.CreateBucketIfNotExists(name)
				if err != nil {
					return err
				}
				b.FillPercent = 1
				if err := b.SetSequence(src.Sequence()); err != nil {
					return err
				}
				for n := 0; k != nil && n < compactTxKeys; k, v = c.Next() {
					n++
					if err := b.Put(k, v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
