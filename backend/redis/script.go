package redis

import (
	"crypto/sha1"
	"encoding/hex"
)

// opScript is the one Lua script every operation runs, by EVALSHA. One call
// applies a group of operations, in order: operation i on key KEYS[i], named
// by ARGV[3i-2] with its arguments ARGV[3i-1] and ARGV[3i]:
//
//	i delta ttl  add delta > 0, creating a missing key holding 0 first with a
//	             TTL of ttl milliseconds (-1: no expiry)
//	r delta      add delta < 0 to an existing key, flooring it at zero and
//	             keeping its TTL; a missing key stays missing
//	g            read an existing key
//	e ttl        set the TTL of an existing key to ttl milliseconds
//	             (-1: persist it)
//	d            delete the key
//
// It returns two integers per operation: the value and the PTTL of the key
// after it, with a PTTL of -2 for a missing key; for d, 1 or 0 (whether the
// key existed) and -2. Lua numbers are doubles: a value beyond 2^53 is read
// back with GET, as a string, to stay exact. A key that i creates has the
// TTL it was given (Redis freezes a script's clock), so PTTL is skipped.
//
// Every key of one call is in the same Redis Cluster hash slot (the store
// groups operations so), which is what Redis requires of a script.
//
// Delete is a script operation too, so that a node whose script cache is
// empty refuses every operation of a batch alike (NOSCRIPT) and the retry
// replays them all, in batch order: a plain DEL would run while the
// operations before it on the same key did not.
const opScript = `local out = {}
for i = 1, #KEYS do
  local k, op, a, b = KEYS[i], ARGV[3*i-2], ARGV[3*i-1], ARGV[3*i]
  local v, t
  if op == 'i' then
    local created
    if b == '-1' then
      created = redis.call('SET', k, '0', 'NX')
    else
      created = redis.call('SET', k, '0', 'NX', 'PX', b)
    end
    v = redis.call('INCRBY', k, a)
    if v >= 9007199254740992 or v <= -9007199254740992 then
      v = redis.call('GET', k)
    end
    if created then
      t = tonumber(b)
    else
      t = redis.call('PTTL', k)
    end
  elseif op == 'd' then
    v, t = redis.call('DEL', k), -2
  else
    v = redis.call('GET', k)
    if v then
      if op == 'r' then
        if redis.call('INCRBY', k, a) < 0 then
          redis.call('SET', k, '0', 'KEEPTTL')
        end
        v = redis.call('GET', k)
      elseif op == 'e' then
        if a == '-1' then
          redis.call('PERSIST', k)
        else
          redis.call('PEXPIRE', k, a)
        end
      elseif op ~= 'g' then
        return redis.error_reply('ERR lockout: unknown operation ' .. tostring(op))
      end
      t = redis.call('PTTL', k)
    else
      v, t = 0, -2
    end
  end
  out[2*i-1], out[2*i] = v, t
end
return out
`

// The operation names opScript takes.
const (
	scriptIncr   = "i"
	scriptReduce = "r"
	scriptGet    = "g"
	scriptExpire = "e"
	scriptDelete = "d"
)

// opSHA is the SHA-1 digest of opScript, the name EVALSHA calls it by.
var opSHA = func() string {
	sum := sha1.Sum([]byte(opScript))
	return hex.EncodeToString(sum[:])
}()

// maxGroup is the most operations one script call applies; a longer batch
// is split, so that no call blocks the server for long.
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
