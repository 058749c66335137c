package redis

import (
	"crypto/sha1"
	"encoding/hex"
)

// opScript is the one Lua script the store runs, by EVALSHA. One call
// applies a group of operations, in order: operation i on key KEYS[i], of the
// kind named by byte i of ARGV[1]. Arguments follow in ARGV[2] on, taken in
// order by the operations that have any:
//
//	i delta ttl  add delta > 0, creating a missing key holding delta with a
//	             TTL of ttl milliseconds (-1: no expiry)
//	j delta ttl  i, not reporting the TTL of a key that existed (the caller
//	             set backend.Op.SkipTTL)
//	r delta      add delta < 0 to an existing key, keeping its TTL; a
//	             result of zero or less deletes the key (reported missing);
//	             a missing key stays missing
//	c delta t    r, applied only to a key that expires before t (Unix
//	             milliseconds), as PEXPIRETIME says; any other key is left
//	             as it is and read (backend.Op.IfExpiresBefore; only with +)
//	e ttl        set the TTL of an existing key to ttl milliseconds
//	             (-1: persist it)
//	g            read a key
//	a            g, for the reads that end a call and whose keys the
//	             call does not write (the store marks them so)
//	d            delete the key
//
// The upper-case kinds I, J, R and E are i, j, r and e with the arguments
// of the latest i, j, r or e before them, and take none: a decision's
// increments share theirs, and every argument costs the server a Lua
// string. The delta is converted to a number once, where it is read:
// Lua's tonumber parses the string each time (a decision's script ran
// about 3% faster on the server for it, measured with usec_per_call).
//
// It returns two values per operation: the value and the PTTL of the key
// after it, with a PTTL of -2 for a missing key and -3 for a TTL not
// reported (j); for d, 1 or 0 (whether the key existed) and -2. When none
// of the keys of the a reads exists, it returns nothing for them: the
// reply ends with the operation before the first a (and the script's
// time, with +).
//
// A '+' after the kinds (byte #KEYS+1 of ARGV[1]) asks for expiry times
// (backend.ExpiryGuard; Redis 7.0 or later): each operation then returns a
// third value, the key's PEXPIRETIME when it has an expiry (its TTL
// otherwise: -1, -2 or -3), and its PTTL is not read but reported as -4,
// for the store to compute from the expiry time and the script's time,
// which follows the operations' values: TIME, in Unix milliseconds rounded
// up, at the script's end, so that a TTL so computed is never longer than
// the key's. A TTL the script set is reported as set. A decision then
// costs a PEXPIRETIME per key in place of a PTTL, and one TIME. Values are
// integers, or strings holding integers where Lua cannot hold them exactly:
// Lua numbers are doubles, so a value beyond 2^53 is read back with GET.
//
// The script makes as few Redis calls as it can, since each one costs far
// more than the Lua around it. An increment is INCRBY first: a result equal
// to its delta means the key was missing (no key holds zero: a decrement
// that reaches zero deletes it), and only then PEXPIRE sets its TTL; a key
// that existed costs a PTTL, unless j. The a reads are one EXISTS over
// them all, first, and only when one of their keys exists a GET and a
// PTTL each, like any other read: on a decision that is admitted (no lock
// marker exists), three increments and one EXISTS. (One EXISTS per 1,000
// reads: Lua cannot unpack more than about 8,000 values into one call's
// arguments, and the reads of one hash tag share a call however many they
// are.) The store marks the reads so (the script refuses a call with an
// a before another kind), and does not move reads to a call's end: the
// engine puts the reads of its decisions last. (The script used to find
// such reads itself, building a table of a call's reads and one of the
// keys it writes: an admitted decision's call cost the server 13.7 us,
// 11.5 us since, by usec_per_call on a 2-core VM, redis-benchmark sending
// the decision's arguments on 100,000 subjects.) A decrement is PTTL and INCRBY
// (a DEL when it reaches zero), an expiry GET and PEXPIRE (or PERSIST), a
// delete one DEL. The TTL a script sets is the TTL it reports, since Redis
// freezes a script's clock.
//
// Every key of one call is in one Redis Cluster hash slot (the store groups
// operations so), which is what Redis requires of a script.
//
// Delete is a script operation too, so that a node whose script cache is
// empty refuses every operation of a batch alike (NOSCRIPT) and the retry
// replays them all, in batch order: a plain DEL would run while the
// operations before it on the same key did not.
const opScript = `local kinds, byte, out, p, d, dn, ttl, skip, dr, ttle, bf, cond = ARGV[1], string.byte, {}, 2
local guard = byte(kinds, #KEYS + 1) == 43
local last = #KEYS
local first = string.find(kinds, 'a', 1, true)
if first and first <= last then
  local other = string.find(kinds, '[^a]', first)
  if other and other <= last then
    return redis.error_reply('ERR lockout: a read marked a before another operation')
  end
  local absent = true
  for j = first, last, 1000 do
    if redis.call('EXISTS', unpack(KEYS, j, math.min(j + 999, last))) > 0 then
      absent = false
      break
    end
  end
  if absent then last = first - 1 end
end
for i = 1, last do
  local k, op, v, t, x = KEYS[i], byte(kinds, i)
  if op == 105 or op == 106 then
    d, ttl, p = ARGV[p], ARGV[p+1], p + 2
    dn = tonumber(d)
  end
  if op == 105 or op == 73 then
    skip, op = false, 73
  elseif op == 106 or op == 74 then
    skip, op = true, 73
  elseif op == 114 then
    dr, p, op, cond = ARGV[p], p + 1, 82, false
  elseif op == 82 then
    cond = false
  elseif op == 99 then
    dr, bf, p, op, cond = ARGV[p], tonumber(ARGV[p+1]), p + 2, 82, true
  elseif op == 101 then
    ttle, p, op = ARGV[p], p + 1, 69
  end
  if op == 73 then
    v = redis.call('INCRBY', k, d)
    local new
    if v >= 9007199254740992 or v <= -9007199254740992 then
      v = redis.call('GET', k)
      new = v == d
    else
      new = v == dn
    end
    if new then
      t = tonumber(ttl)
      if t ~= -1 then redis.call('PEXPIRE', k, ttl) end
    elseif skip then
      t = -3
    elseif guard then
      t = -4
    else
      t = redis.call('PTTL', k)
    end
  elseif op == 103 or op == 97 then
    v = redis.call('GET', k)
    if not v then
      v, t = 0, -2
    elseif guard then
      t = -4
    else
      t = redis.call('PTTL', k)
    end
  elseif op == 100 then
    v, t = redis.call('DEL', k), -2
  elseif op == 82 then
    if guard then
      x = redis.call('PEXPIRETIME', k)
      t = x
      if x >= 0 then t = -4 end
    else
      t = redis.call('PTTL', k)
    end
    if t == -2 then
      v = 0
    elseif cond and (x == -1 or x >= bf) then
      v = redis.call('GET', k)
      local n = tonumber(v)
      if n > -9007199254740992 and n < 9007199254740992 then v = n end
    else
      v = redis.call('INCRBY', k, dr)
      if v <= 0 then
        redis.call('DEL', k)
        v, t = 0, -2
      elseif v >= 9007199254740992 then
        v = redis.call('GET', k)
      end
    end
  elseif op == 69 then
    v = redis.call('GET', k)
    if not v then
      v, t = 0, -2
    elseif ttle == '-1' then
      redis.call('PERSIST', k)
      t = -1
    else
      redis.call('PEXPIRE', k, ttle)
      t = tonumber(ttle)
    end
  else
    return redis.error_reply('ERR lockout: unknown operation ' .. tostring(op))
  end
  if guard then
    if t < 0 and t ~= -4 then
      x = t
    elseif not x then
      x = redis.call('PEXPIRETIME', k) -- a decrement read it already
    end
    out[3*i-2], out[3*i-1], out[3*i] = v, t, x
  else
    out[2*i-1], out[2*i] = v, t
  end
end
if guard then
  local tm = redis.call('TIME')
  out[3*last+1] = tonumber(tm[1]) * 1000 + math.ceil(tonumber(tm[2]) / 1000)
end
return out
`

// The operation kinds opScript takes, one byte each in ARGV[1], and the
// kinds that reuse the arguments of the latest operation of theirs.
const (
	scriptIncr         = 'i'
	scriptIncrSame     = 'I'
	scriptIncrSkip     = 'j'
	scriptIncrSkipSame = 'J'
	scriptReduce       = 'r'
	scriptReduceSame   = 'R'
	scriptReduceIf     = 'c'
	scriptGuard        = '+' // after the kinds: report expiry times
	scriptExpire       = 'e'
	scriptExpireSame   = 'E'
	scriptGet          = 'g'
	scriptGetApart     = 'a'
	scriptDelete       = 'd'
)

// opSHA is the SHA-1 digest of opScript, the name EVALSHA calls it by.
var opSHA = func() string {
	sum := sha1.Sum([]byte(opScript))
	return hex.EncodeToString(sum[:])
}()

// maxGroup is the most operations one script call applies when a batch is
// split, so that no call blocks the server for long; the operations of one
// hash tag are never split, though.
const maxGroup = 128

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// crc16Table is the table of the CRC-16/XMODEM checksum (polynomial 0x1021)
// that Redis Cluster hashes keys with.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// keySlot returns the Redis Cluster hash slot of key: the CRC16 of its hash
// tag (the bytes between the first '{' and the first '}' after it, when
// there are any) or else of the whole key, modulo 16384.
func keySlot(key string) int {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					break
				}
			}
			break
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return int(crc) % clusterSlots
}
