package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/reccodec"
)

// Journal defaults: see Options.
const (
	DefaultJournalRetention   = 24 * time.Hour
	DefaultJournalMax         = 100_000
	DefaultJournalRecordBytes = 2048
)

// JournalScan is the most stream entries one Records call reads (in
// chunks, one XREVRANGE each) before it returns what it found with a
// cursor to continue.
const JournalScan = 10_000

// journalChunk bounds the entries one XREVRANGE asks for.
const journalChunk = 1000

var _ backend.Journal = (*Store)(nil)

// journalKey returns the stream key of the journal named name:
//
//	<Options.Prefix>{<name>}:journal
//
// The journal's name is the key's hash tag, so that a Cluster hashes it by
// the name, and every command of the journal is about this one key. The
// lockout engine's keys begin with its prefix, which never holds '{'
// ("lockout:a:rule:{u=alice}"), so no engine key begins with '{' and none
// equals a journal key; a journal name holds no '{' nor '}', so each name
// has its own key.
func (s *Store) journalKey(name string) string {
	return s.prefix + "{" + name + "}:journal"
}

// giveWay is the Lua function with which a journal gives way to the
// counters. When the server's memory (INFO memory's used_memory) is past
// 7/8 of its maxmemory, giveway(key, adding, each) trims the stream key,
// oldest first, by the adding entries about to be added and by as many
// as take the memory past 7/8 (their size: MEMORY USAGE over XLEN, or
// each bytes when MEMORY is refused): the journal never grows past 7/8,
// and counters that go past it take its room, and only as much as they
// take. An attacker who decides how many attempts there are would
// otherwise fill the server with their records, and every decision would
// go to the fallback for as long as the records are kept
// (JournalRetention). It returns false when the memory is still past
// maxmemory after that (other keys filled the server): the caller then
// adds nothing (a write after XTRIM would pass the server's own memory
// check). INFO and MEMORY are called with redis.pcall: a user whose ACL
// refuses INFO journals without the guard, as without maxmemory.
const giveWay = `local function memory()
	local info = redis.pcall('INFO', 'memory')
	if type(info) ~= 'string' then
		return nil
	end
	local max = tonumber(string.match(info, '\nmaxmemory:(%d+)'))
	local used = tonumber(string.match(info, '\nused_memory:(%d+)'))
	if max == nil or max == 0 or used == nil then
		return nil
	end
	return used, max
end
local function giveway(key, adding, each)
	local used, max = memory()
	if used == nil or used <= max / 8 * 7 then
		return true
	end
	local len = redis.call('XLEN', key)
	if len > 0 then
		local usage = redis.pcall('MEMORY', 'USAGE', key, 'SAMPLES', '5')
		if type(usage) == 'number' and usage > 0 then
			each = usage / len
		end
		local keep = len - adding - math.ceil((used - max / 8 * 7) / each)
		if keep < 0 then
			keep = 0
		end
		redis.call('XTRIM', key, 'MAXLEN', '=', keep)
		used = memory()
	end
	return used == nil or used + adding * each <= max
end
`

// trimScript trims a journal's stream to the entries of the last ARGV[1]
// milliseconds by the server's clock (TIME), exactly (MINID =), and
// returns the oldest millisecond it kept. With ARGV[2] = "1" it also sets
// the stream to expire ARGV[1] milliseconds from now (an idle journal
// disappears once its newest record is past the retention), and gives way
// to the counters (giveWay) after Append's XADDs (taking an entry for
// 2,900 bytes, a record cut to 2 KiB, when the server refuses MEMORY
// USAGE). It touches KEYS[1]
// only, so it runs on a Cluster. Scripts replicate by effects (Redis 5 and
// later), so TIME is allowed before a write.
const trimScript = giveWay + `local t = redis.call('TIME')
local min = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
if min > 0 then
	redis.call('XTRIM', KEYS[1], 'MINID', '=', string.format('%.0f', min))
end
if ARGV[2] == '1' then
	giveway(KEYS[1], 0, 2900)
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return min`

// appendScript gives way to the counters (giveWay; with nothing added,
// an error beginning "OOM", when the server stays past maxmemory),
// appends each of
// ARGV[3], ARGV[4], ... to the stream KEYS[1] as an entry of one field,
// "e" (an encoded record), trims the stream to its newest ARGV[1] entries
// (exactly), and then does what trimScript does with ARGV[2] milliseconds
// of retention. One call per batch of records: the server parses one
// command, not one per record. XADD with an ID of '*' is allowed in a
// script: scripts replicate by effects, with the IDs XADD gave.
const appendScript = giveWay + `local bytes = 0
for i = 3, #ARGV do
	bytes = bytes + #ARGV[i] + 100
end
if not giveway(KEYS[1], #ARGV - 2, bytes / math.max(#ARGV - 2, 1)) then
	return redis.error_reply('OOM the server is past maxmemory: the journal gives way to the counters')
end
for i = 3, #ARGV do
	redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', '=', ARGV[1])
local t = redis.call('TIME')
local min = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
if min > 0 then
	redis.call('XTRIM', KEYS[1], 'MINID', '=', string.format('%.0f', min))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

var appendLua = goredis.NewScript(appendScript)

// noRetryCmd is a command go-redis must not send twice (NoRetry).
type noRetryCmd struct{ *goredis.Cmd }

// NoRetry reports that go-redis must not retry the command.
func (noRetryCmd) NoRetry() bool { return true }

// runNoRetry runs script by EVALSHA, and by EVAL when the server does not
// have it (NOSCRIPT: it did not run), never sending either twice.
func (s *Store) runNoRetry(ctx context.Context, script *goredis.Script, src string, keys []string, args ...any) error {
	call := func(verb, body string) error {
		cmdArgs := make([]any, 0, 3+len(keys)+len(args))
		cmdArgs = append(cmdArgs, verb, body, len(keys))
		for _, k := range keys {
			cmdArgs = append(cmdArgs, k)
		}
		cmdArgs = append(cmdArgs, args...)
		cmd := noRetryCmd{goredis.NewCmd(ctx, cmdArgs...)}
		_ = s.client.Process(ctx, cmd)
		return cmd.Err()
	}
	err := call("evalsha", script.Hash())
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		err = call("eval", src)
	}
	return err
}

// fieldRecord is the one field of an entry that AppendBatch wrote: the
// record, encoded by package reccodec.
const fieldRecord = "e" // no field of Append's entries has this name

// xaddCmd is an XADD that go-redis must not send twice (NoRetry): the
// first one may have been applied, and a second would journal the record
// twice.
type xaddCmd struct{ *goredis.StringCmd }

// NoRetry reports that go-redis must not retry the command.
func (xaddCmd) NoRetry() bool { return true }

// Stream field names of a record. The core fields are always written, in
// this order, even when empty: Redis then stores the field names once per
// stream node, not once per entry (an entry with the same fields as the
// node's first one keeps only its values). A custom field name is written
// as "f:" and the name, after the core fields, sorted; no core field name
// begins with "f:".
const (
	fieldTime      = "t"  // Time.UnixNano(), decimal; "" for the zero Time
	fieldOutcome   = "o"  // Outcome
	fieldReason    = "r"  // Reason
	fieldRule      = "ru" // Rule
	fieldKey       = "k"  // Key
	fieldUsername  = "u"  // Username
	fieldIP        = "ip" // IP
	fieldUserAgent = "ua" // UserAgent
	fieldFallback  = "fb" // "1" when Fallback, else ""
	fieldDuration  = "d"  // Duration in nanoseconds, decimal; "" for 0
	fieldOperator  = "op" // Operator
	fieldVia       = "v"  // Via
	fieldCustom    = "f:" // prefix of a custom field's name
)

// coreFields is the number of core fields.
const coreFields = 12

// appendRecordArgs appends the field-value arguments of rec to args, its
// string values cut (backend.Record.Bounded) to at most maxBytes bytes in all when
// maxBytes > 0.
func appendRecordArgs(args []any, rec *backend.Record, maxBytes int) []any {
	if maxBytes > 0 {
		if cut, ok := rec.Bounded(maxBytes); ok {
			rec = &cut
		}
	}
	var t, d, fb string
	if !rec.Time.IsZero() {
		t = strconv.FormatInt(rec.Time.UnixNano(), 10)
	}
	if rec.Duration != 0 {
		d = strconv.FormatInt(int64(rec.Duration), 10)
	}
	if rec.Fallback {
		fb = "1"
	}
	vals := [...]string{
		rec.Outcome, rec.Reason, rec.Rule, rec.Key, rec.Username, rec.IP, rec.UserAgent, rec.Operator, rec.Via,
	}
	var names []string
	if len(rec.Fields) > 0 {
		names = slices.Sorted(maps.Keys(rec.Fields))
	}
	custom := make([]string, len(names))
	for i, n := range names {
		custom[i] = rec.Fields[n]
	}
	args = append(args,
		fieldTime, t,
		fieldOutcome, vals[0], fieldReason, vals[1], fieldRule, vals[2], fieldKey, vals[3],
		fieldUsername, vals[4], fieldIP, vals[5], fieldUserAgent, vals[6],
		fieldFallback, fb, fieldDuration, d,
		fieldOperator, vals[7], fieldVia, vals[8])
	for i, n := range names {
		args = append(args, fieldCustom+n, custom[i])
	}
	return args
}

// decodeRecord returns the record that the stream entry id with values
// holds. Fields it does not know are ignored (a later version may add
// some); a malformed value is an error.
func decodeRecord(id string, values map[string]any) (backend.Record, error) {
	rec := backend.Record{ID: id}
	for name, v := range values {
		val, ok := v.(string)
		if !ok {
			return backend.Record{}, fmt.Errorf("entry %s: field %q: value of type %T", id, name, v)
		}
		switch name {
		case fieldTime:
			if val == "" {
				continue
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return backend.Record{}, fmt.Errorf("entry %s: bad time %q", id, val)
			}
			rec.Time = time.Unix(0, n)
		case fieldOutcome:
			rec.Outcome = val
		case fieldReason:
			rec.Reason = val
		case fieldRule:
			rec.Rule = val
		case fieldKey:
			rec.Key = val
		case fieldUsername:
			rec.Username = val
		case fieldIP:
			rec.IP = val
		case fieldUserAgent:
			rec.UserAgent = val
		case fieldFallback:
			switch val {
			case "":
			case "1":
				rec.Fallback = true
			default:
				return backend.Record{}, fmt.Errorf("entry %s: bad fallback flag %q", id, val)
			}
		case fieldDuration:
			if val == "" {
				continue
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return backend.Record{}, fmt.Errorf("entry %s: bad duration %q", id, val)
			}
			rec.Duration = time.Duration(n)
		case fieldOperator:
			rec.Operator = val
		case fieldVia:
			rec.Via = val
		default:
			if f, ok := strings.CutPrefix(name, fieldCustom); ok {
				if rec.Fields == nil {
					rec.Fields = make(map[string]string, len(values)-coreFields)
				}
				rec.Fields[f] = val
			}
		}
	}
	return rec, nil
}

// streamID is a parsed stream entry ID, ms-seq.
type streamID struct{ ms, seq uint64 }

// parseStreamID parses a complete stream entry ID ("1700000000000-3").
func parseStreamID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok || !digits(a) || !digits(b) {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return streamID{}, false
	}
	return streamID{ms, seq}, true
}

// digits reports whether s is 1 to 20 ASCII digits.
func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// appendable checks what Append and AppendBatch check before they send.
func (s *Store) appendable(ctx context.Context, name string) error {
	if s.closed.Load() {
		return errClosed
	}
	if !backend.ValidJournalName(name) {
		return fmt.Errorf("lockout/redis: append: %w: journal name %q", backend.ErrInvalid, name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lockout/redis: append: %w", err)
	}
	return nil
}

// AppendBatch is Append for records the lockout engine has encoded
// already (reccodec.Appender). It stores each as the one field of a
// stream entry, all in one call of a script that also trims the stream to
// Options.JournalMax entries and Options.JournalRetention: one command,
// to the one node that holds the journal. The script is not retried by
// go-redis once sent (a lost reply would otherwise journal the records
// twice). A record longer than Options.JournalRecordBytes is cut.
func (s *Store) AppendBatch(ctx context.Context, name string, b *reccodec.Batch) error {
	if err := s.appendable(ctx, name); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	args := make([]any, 0, 2+b.Len())
	args = append(args, s.journalMax, s.journalRetentionMs)
	for enc := range b.All() {
		enc, err := reccodec.Bound(enc, s.journalRecordBytes)
		if err != nil {
			return fmt.Errorf("lockout/redis: append to journal %q: %w", name, err)
		}
		args = append(args, enc)
	}
	key := s.journalKey(name)
	err := s.bounded(ctx, func(ctx context.Context) error {
		return s.runNoRetry(ctx, appendLua, appendScript, []string{key}, args...)
	})
	if err != nil {
		if goredis.IsOOMError(err) {
			return fmt.Errorf("lockout/redis: append to journal %q: %w: %w", name, backend.ErrFull, err)
		}
		return fmt.Errorf("lockout/redis: append to journal %q: %w", name, withCtxErr(ctx, err))
	}
	return nil
}

// Append adds recs to the journal named name. It implements
// [backend.Journal]: one XADD per record (each trimming the stream to
// Options.JournalMax entries, exactly) and one call of a small script that
// trims the records older than Options.JournalRetention by the server's
// clock and sets the stream to expire after it, all in one pipeline: one
// round trip, to the one node that holds the journal. The IDs Redis gives
// the records are the stream entry IDs ("1700000000000-0"); Append ignores
// the IDs of recs. XADD is never retried by go-redis (a lost reply would
// otherwise journal a record twice).
//
// String values longer, together, than Options.JournalRecordBytes are cut
// (see Options.JournalRecordBytes). The Time is kept as nanoseconds since
// 1970 (UnixNano): a Time outside the years 1678 to 2262 is not kept
// faithfully.
func (s *Store) Append(ctx context.Context, name string, recs []backend.Record) error {
	if err := s.appendable(ctx, name); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	key := s.journalKey(name)
	cmds := make([]xaddCmd, len(recs))
	for i := range recs {
		args := make([]any, 0, 7+2*(coreFields+len(recs[i].Fields)))
		args = append(args, "xadd", key, "maxlen", "=", s.journalMax, "*")
		args = appendRecordArgs(args, &recs[i], s.journalRecordBytes)
		cmds[i] = xaddCmd{goredis.NewStringCmd(ctx, args...)}
	}
	err := s.bounded(ctx, func(ctx context.Context) error {
		pipe := s.client.Pipeline()
		for i := range cmds {
			_ = pipe.Process(ctx, cmds[i])
		}
		_ = pipe.Eval(ctx, trimScript, []string{key}, s.journalRetentionMs, "1")
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		if goredis.IsOOMError(err) {
			return fmt.Errorf("lockout/redis: append to journal %q: %w: %w", name, backend.ErrFull, err)
		}
		return fmt.Errorf("lockout/redis: append to journal %q: %w", name, withCtxErr(ctx, err))
	}
	return nil
}

// Records returns up to q.PageLimit() records of the journal named name
// that match q, newest first, and a cursor to continue after them. It
// implements [backend.Journal].
//
// The first round trip trims the journal (the script Append calls, which
// also tells the oldest millisecond the retention keeps, by the server's
// clock) and reads the newest entries (XREVRANGE, from the cursor when
// q.Before is set); more entries are read in chunks of up to 1000
// (XREVRANGE with an exclusive start at the last entry read), one round
// trip each, until the page is full, the journal ends, or JournalScan
// entries were read: then the cursor continues after the last entry read.
// An entry older than the retention is never returned, even if the trim
// has not removed it. The filters are applied by the store, on the client
// (backend.Query.Match): a query whose matches are rare reads many entries.
//
// A cursor is a stream entry ID: the ID of the last record returned, or of
// the last entry read when the scan stopped early. A malformed cursor is
// an error wrapping backend.ErrInvalid.
func (s *Store) Records(ctx context.Context, name string, q backend.Query) ([]backend.Record, string, error) {
	if s.closed.Load() {
		return nil, "", errClosed
	}
	if !backend.ValidJournalName(name) {
		return nil, "", fmt.Errorf("lockout/redis: records: %w: journal name %q", backend.ErrInvalid, name)
	}
	limit, err := q.PageLimit()
	if err != nil {
		return nil, "", fmt.Errorf("lockout/redis: records: %w", err)
	}
	start := "+"
	if q.Before != "" {
		id, ok := parseStreamID(q.Before)
		if !ok {
			return nil, "", fmt.Errorf("lockout/redis: records: %w: cursor %q is not a stream entry ID", backend.ErrInvalid, q.Before)
		}
		if id == (streamID{}) {
			return nil, "", nil // nothing precedes 0-0
		}
		start = "(" + q.Before
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("lockout/redis: records: %w", err)
	}
	key := s.journalKey(name)
	var (
		recs      []backend.Record
		minMs     int64 // the oldest millisecond the retention keeps
		scanned   int
		lastRead  string
		chunk     = min(limit+1, JournalScan)
		firstTrip = true
		raw       reccodec.Raw
	)
	for {
		var msgs []goredis.XMessage
		err := s.bounded(ctx, func(ctx context.Context) error {
			if !firstTrip {
				var err error
				msgs, err = s.client.XRevRangeN(ctx, key, start, "-", int64(chunk)).Result()
				return err
			}
			pipe := s.client.Pipeline()
			trim := pipe.Eval(ctx, trimScript, []string{key}, s.journalRetentionMs, "0")
			read := pipe.XRevRangeN(ctx, key, start, "-", int64(chunk))
			_, _ = pipe.Exec(ctx)
			var err error
			if minMs, err = trim.Int64(); err != nil {
				return err
			}
			msgs, err = read.Result()
			return err
		})
		if err != nil {
			return nil, "", fmt.Errorf("lockout/redis: records of journal %q: %w", name, withCtxErr(ctx, err))
		}
		firstTrip = false
		for _, m := range msgs {
			id, ok := parseStreamID(m.ID)
			if !ok {
				return nil, "", fmt.Errorf("lockout/redis: records of journal %q: server sent entry ID %q", name, m.ID)
			}
			if minMs > 0 && id.ms < uint64(minMs) {
				return recs, "", nil // this entry and all older ones are past the retention
			}
			scanned++
			lastRead = m.ID
			if v, ok := m.Values[fieldRecord]; ok { // written by AppendBatch
				enc, _ := v.(string)
				if err := raw.Decode([]byte(enc)); err != nil {
					return nil, "", fmt.Errorf("lockout/redis: records of journal %q: entry %s: %w", name, m.ID, err)
				}
				if !raw.Matches(&q) {
					continue
				}
				if len(recs) == limit {
					return recs, recs[limit-1].ID, nil // this one shows there is more
				}
				recs = append(recs, raw.Record(m.ID))
				continue
			}
			if q.Username != "" && m.Values[fieldUsername] != q.Username ||
				q.IP != "" && m.Values[fieldIP] != q.IP ||
				q.Outcome != "" && m.Values[fieldOutcome] != q.Outcome {
				continue // fast path of q.Match, which follows the decoding
			}
			rec, err := decodeRecord(m.ID, m.Values)
			if err != nil {
				return nil, "", fmt.Errorf("lockout/redis: records of journal %q: %w", name, err)
			}
			if !q.Match(&rec) {
				continue
			}
			if len(recs) == limit {
				return recs, recs[limit-1].ID, nil // rec shows there is more
			}
			recs = append(recs, rec)
		}
		if len(msgs) < chunk {
			return recs, "", nil // the journal ends here
		}
		if scanned >= JournalScan {
			if len(recs) == limit {
				return recs, recs[limit-1].ID, nil
			}
			return recs, lastRead, nil
		}
		start = "(" + lastRead
		chunk = min(max(2*chunk, 100), journalChunk, JournalScan-scanned)
	}
}

// journalOptions checks the journal options of o and sets their defaults.
func journalOptions(o *Options) error {
	switch {
	case o.JournalRetention < 0:
		return fmt.Errorf("negative JournalRetention %v", o.JournalRetention)
	case o.JournalRetention == 0:
		o.JournalRetention = DefaultJournalRetention
	}
	switch {
	case o.JournalMax < 0:
		return fmt.Errorf("negative JournalMax %d", o.JournalMax)
	case o.JournalMax == 0:
		o.JournalMax = DefaultJournalMax
	}
	switch {
	case o.JournalRecordBytes == 0:
		o.JournalRecordBytes = DefaultJournalRecordBytes
	case o.JournalRecordBytes > 0 && o.JournalRecordBytes < backend.MinRecordBytes:
		return fmt.Errorf("JournalRecordBytes %d: want at least %d, or negative for no bound", o.JournalRecordBytes, backend.MinRecordBytes)
	}
	return nil
}

// retentionMs returns d in whole milliseconds, rounded up so that a record
// is never removed early.
func retentionMs(d time.Duration) int64 {
	return ceilMs(d)
}
