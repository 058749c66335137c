package bolt

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzEntryEncoding checks the stored form of keys and entries: a key's
// stored form and entry give the key back (originalKey), the entry
// decodes to what was encoded, a hashed slot refuses another key, and
// decodeEntry never panics on any value (a corrupt file).
func FuzzEntryEncoding(f *testing.F) {
	f.Add("lockout:a:username:{u=alice}", int64(1700000000000000000), int64(3), []byte{entryVersion})
	f.Add(strings.Repeat("k", maxRawKey+1), int64(0), int64(-1), []byte{})
	f.Add("", int64(-5), int64(1<<62), []byte("garbage"))
	f.Fuzz(func(t *testing.T, key string, exp, val int64, junk []byte) {
		sk := storedKey(nil, key)
		if len(key) <= maxRawKey {
			if sk[0] != tagRaw || string(sk[1:]) != key {
				t.Fatalf("stored form of a %d-byte key: %q", len(key), sk)
			}
		} else if sk[0] != tagHashed || len(sk) != 1+32 {
			t.Fatalf("stored form of a %d-byte key: %d bytes, tag %d", len(key), len(sk), sk[0])
		}
		v := encodeEntry(sk, key, entry{exp: exp, val: val})
		e, err := decodeEntry(sk, v, key)
		if err != nil || e.exp != exp || e.val != val {
			t.Fatalf("decode(encode(%d, %d)) = %+v, %v", exp, val, e, err)
		}
		if got := originalKey(sk, v); got != key {
			t.Fatalf("originalKey = %q, want %q", got, key)
		}
		if sk[0] == tagHashed {
			if _, err := decodeEntry(sk, v, key+"x"); !errors.Is(err, errCorrupt) {
				t.Fatalf("a hashed slot read for another key: %v, want errCorrupt", err)
			}
		}
		// Any bytes: an error or an entry, never a panic.
		if e, err := decodeEntry(sk, junk, key); err == nil && len(junk) < entryHeader {
			t.Fatalf("decoded %d bytes of junk: %+v", len(junk), e)
		}
	})
}

// FuzzParseID checks the journal's cursor parser: it accepts exactly the
// IDs formatID makes, and gives back their number.
func FuzzParseID(f *testing.F) {
	f.Add(formatID(0))
	f.Add(formatID(1<<64 - 1))
	f.Add("00000000000000ff")
	f.Add("00000000000000FF")
	f.Add("-000000000000001")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		seq, err := parseID(id)
		if err != nil {
			if !strings.Contains(err.Error(), "cursor") {
				t.Fatalf("parseID(%q): %v", id, err)
			}
			return
		}
		if formatID(seq) != id {
			t.Fatalf("parseID(%q) = %d, which formats as %q", id, seq, formatID(seq))
		}
		if want, _ := strconv.ParseUint(id, 16, 64); want != seq {
			t.Fatalf("parseID(%q) = %d, want %d", id, seq, want)
		}
	})
}
