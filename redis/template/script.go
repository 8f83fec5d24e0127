package template

import (
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// applyScript applies a change of one pair atomically, if the pair's
// record still holds what the change was computed from: the conditions
// are fields of KEYS[1] (the record) and the values they must have ("":
// the field is absent). Then it carries out the operations, each naming
// its keys by their index in KEYS. It returns 1, or 0 when a condition
// failed (nothing was changed).
//
// It declares no flags but writes, so that Redis refuses it whole (before
// any write) when it is out of memory.
var applyScript = goredis.NewScript(`#!lua
local nc = tonumber(ARGV[1])
local i = 2
for _ = 1, nc do
  local got = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i+1] == '' then
    if got then return 0 end
  elseif got ~= ARGV[i+1] then
    return 0
  end
  i = i + 2
end
local function shared(k, ms)
  -- a key several pairs share lives as long as the longest of them
  if ms == 0 then redis.call('PERSIST', k) return end
  local t = redis.call('PTTL', k)
  if t == -2 or (t >= 0 and t < ms) then redis.call('PEXPIRE', k, ms) end
end
while i <= #ARGV do
  local op, k = ARGV[i], KEYS[tonumber(ARGV[i+1])]
  if op == 'H' then redis.call('HSET', k, ARGV[i+2], ARGV[i+3]) i = i + 4
  elseif op == 'HI' then redis.call('HINCRBY', k, ARGV[i+2], ARGV[i+3]) i = i + 4
  elseif op == 'Z+' then redis.call('ZADD', k, ARGV[i+2], ARGV[i+3]) i = i + 4
  elseif op == 'Z-' then redis.call('ZREM', k, ARGV[i+2]) i = i + 3
  elseif op == 'S+' then
    local ms, new = tonumber(ARGV[i+3]), redis.call('EXISTS', k) == 0
    redis.call('SADD', k, ARGV[i+2])
    if new and ms > 0 then redis.call('PEXPIRE', k, ms) else shared(k, ms) end
    i = i + 4
  elseif op == 'S-' then redis.call('SREM', k, ARGV[i+2]) i = i + 3
  elseif op == 'XS' then
    if redis.call('EXISTS', k) == 1 then shared(k, tonumber(ARGV[i+2])) end
    i = i + 3
  elseif op == 'X' then redis.call('PEXPIRE', k, ARGV[i+2]) i = i + 3
  elseif op == 'P' then redis.call('PERSIST', k) i = i + 2
  elseif op == 'D' then redis.call('UNLINK', k) i = i + 2
  elseif op == 'C' then redis.call('SET', k, ARGV[i+2], 'PX', ARGV[i+3]) i = i + 4
  elseif op == 'I' then redis.call('INCRBY', k, ARGV[i+2]) i = i + 3
  elseif op == 'U' then
    -- uncount a pair: k is the hash of sizes, ARGV[i+2] the total's index
    local n = redis.call('HGET', k, ARGV[i+3])
    if n then
      redis.call('DECRBY', KEYS[tonumber(ARGV[i+2])], n)
      redis.call('HDEL', k, ARGV[i+3])
    end
    i = i + 4
  else
    return redis.error_reply('hishel: unknown operation ' .. op)
  end
end
return 1
`)

// getScript reads every pair under a cache key: KEYS[1] is its set,
// ARGV[1] the prefix, ARGV[2] the most body bytes to read ahead. It
// returns, for each member, its ID and the values of recordFields; when
// the key holds exactly one complete pair, also the first chunks of its
// request and response bodies, up to ARGV[2] bytes in all (so that a hit
// on a small body costs one round trip).
var getScript = goredis.NewScript(`#!lua flags=no-writes
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. 'r:' .. id, 'r', 't', 'v', 'n', 's', 'wq', 'ws', 'du')
  local e = {id, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]}
  if #ids == 1 and f[4] and f[5] == '1' then
    local limit, got = tonumber(ARGV[2]), 0
    for j, kind in ipairs({'q', 's'}) do
      local chunks = {}
      for seq = 0, (tonumber(f[5 + j]) or 0) - 1 do
        if got >= limit then break end
        local c = redis.call('GET', ARGV[1] .. 'c:' .. id .. ':' .. f[4] .. ':' .. kind .. ':' .. seq)
        if not c then break end
        got = got + #c
        chunks[#chunks + 1] = c
      end
      e[#e + 1] = chunks
    end
  end
  out[#out + 1] = e
end
return out
`)

// change is one atomic change of a pair, built up and then sent as one
// applyScript call.
type change struct {
	keys  []string
	index map[string]int
	conds []any
	ops   []any
}

// newChange starts a change of the pair whose record is rec.
func newChange(rec string) *change {
	return &change{keys: []string{rec}, index: map[string]int{rec: 1}}
}

func (c *change) key(k string) string {
	i, ok := c.index[k]
	if !ok {
		c.keys = append(c.keys, k)
		i = len(c.keys)
		c.index[k] = i
	}
	return strconv.Itoa(i)
}

// when adds a condition: the record's field must hold value ("": absent).
func (c *change) when(field, value string) *change {
	c.conds = append(c.conds, field, value)
	return c
}

func (c *change) op(args ...any) *change { c.ops = append(c.ops, args...); return c }

func (c *change) hset(k, field string, v any) *change { return c.op("H", c.key(k), field, v) }
func (c *change) hincr(k, field string, n int64) *change {
	return c.op("HI", c.key(k), field, n)
}
func (c *change) zadd(k string, score int64, m string) *change {
	return c.op("Z+", c.key(k), score, m)
}
func (c *change) zrem(k, m string) *change { return c.op("Z-", c.key(k), m) }

// sadd adds m to the shared set k, which then lives at least life (zero:
// for ever).
func (c *change) sadd(k, m string, life time.Duration) *change {
	return c.op("S+", c.key(k), m, lifeMS(life))
}
func (c *change) srem(k, m string) *change { return c.op("S-", c.key(k), m) }

// extendShared makes the shared key k live at least life, if it exists.
func (c *change) extendShared(k string, life time.Duration) *change {
	return c.op("XS", c.key(k), lifeMS(life))
}

// expire gives k a TTL of life (at least a second), or none for life 0.
func (c *change) expire(k string, life time.Duration) *change {
	if life == 0 {
		return c.op("P", c.key(k))
	}
	return c.op("X", c.key(k), lifeMS(life))
}
func (c *change) del(k string) *change { return c.op("D", c.key(k)) }
func (c *change) set(k, v string, life time.Duration) *change {
	return c.op("C", c.key(k), v, lifeMS(life))
}
func (c *change) incr(k string, n int64) *change { return c.op("I", c.key(k), n) }

// uncount subtracts the bytes counted for member m (in the hash sizes)
// from total, and forgets them.
func (c *change) uncount(sizes, total, m string) *change {
	return c.op("U", c.key(sizes), c.key(total), m)
}

func (c *change) args() []any {
	return append(append([]any{len(c.conds) / 2}, c.conds...), c.ops...)
}

// lifeMS is a TTL in milliseconds for PEXPIRE: at least one second (a
// TTL of zero or less would delete the key), 0 for none.
func lifeMS(d time.Duration) int64 {
	if d == 0 {
		return 0
	}
	return max(d.Milliseconds(), 1000)
}

// ms is a time as a sorted set score: Unix milliseconds.
func ms(ns int64) int64 { return ns / int64(time.Millisecond) }
