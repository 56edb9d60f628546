"""Lua scripts of the Redis budget backend.

Counters are hashes {spent, reserved, limit}; amounts are decimal strings updated with
HINCRBY (exact int64 on the server). Lua numbers are doubles, exact only to 2^53 units
(about 9,007 USD), so comparisons use decimal-string arithmetic (`add`, `cmp`) instead.
Lease times come from the Redis server clock (TIME), shared by every replica.
"""

from __future__ import annotations

_BIGINT = """
local function strip(a)
  local s = string.gsub(a, '^0+', '')
  if s == '' then return '0' end
  return s
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local da = 0
    local db = 0
    if i > 0 then da = string.byte(a, i) - 48 end
    if j > 0 then db = string.byte(b, j) - 48 end
    local s = da + db + carry
    out[#out + 1] = string.char(48 + s % 10)
    carry = math.floor(s / 10)
    i = i - 1
    j = j - 1
  end
  return strip(string.reverse(table.concat(out)))
end
local function cmp(a, b)
  a = strip(a)
  b = strip(b)
  if #a ~= #b then
    if #a < #b then return -1 else return 1 end
  end
  if a == b then return 0 end
  if a < b then return -1 else return 1 end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function unreserve(ck, amount)
  redis.call('HINCRBY', ck, 'reserved', '-' .. amount)
  local r = redis.call('HGET', ck, 'reserved')
  if r and string.sub(r, 1, 1) == '-' then redis.call('HSET', ck, 'reserved', '0') end
end
"""

# A counter is "seeded" once its period's spend was taken from the ledger (SEED). With
# require_seed, RESERVE and SETTLE refuse an unseeded counter ({'seed', i}) before changing
# anything, so a Redis that lost its data (a restart without persistence) is re-seeded from
# the ledger before it counts again, instead of counting from zero.
_UNSEEDED = """
local function unseeded(first)
  for i = first, #KEYS do
    if redis.call('HEXISTS', KEYS[i], 'seeded') == 0 then return i - first + 1 end
  end
  return nil
end
"""

# KEYS: reservation hash, leases zset, settled marker, counter 1..n
# ARGV: reservation id, amount, lease_ms, tenant id, require_seed ('1'/'0'),
#       then per counter: limit, mode, ttl
RESERVE = (
    _BIGINT
    + _UNSEEDED
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'dup', redis.call('HGET', KEYS[1], 'expires')}
end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'used'} end
if ARGV[5] == '1' then
  local i = unseeded(4)
  if i then return {'seed', tostring(i)} end
end
local amount = ARGV[2]
local n = #KEYS - 3
for i = 1, n do
  local ck = KEYS[3 + i]
  local limit = ARGV[5 + 3 * (i - 1) + 1]
  local mode = ARGV[5 + 3 * (i - 1) + 2]
  if mode == 'hard' then
    local spent = redis.call('HGET', ck, 'spent') or '0'
    local reserved = redis.call('HGET', ck, 'reserved') or '0'
    if cmp(add(add(spent, reserved), amount), limit) > 0 then
      return {'deny', tostring(i), spent, reserved}
    end
  end
end
local names = {}
for i = 1, n do
  local ck = KEYS[3 + i]
  local ttl = tonumber(ARGV[5 + 3 * (i - 1) + 3])
  redis.call('HINCRBY', ck, 'reserved', amount)
  redis.call('HSET', ck, 'limit', ARGV[5 + 3 * (i - 1) + 1])
  if ttl > 0 then redis.call('EXPIRE', ck, ttl) end
  names[#names + 1] = ck
end
local expires = now_ms() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'amount', amount, 'counters', table.concat(names, '\\n'),
           'tenant', ARGV[4], 'expires', tostring(expires))
redis.call('ZADD', KEYS[2], expires, ARGV[1])
return {'ok', tostring(expires)}
"""
)

# KEYS: reservation hash, leases zset, settled marker, counter 1..n
# ARGV: reservation id, actual amount, marker ttl seconds, require_seed ('1'/'0')
SETTLE = (
    _BIGINT
    + _UNSEEDED
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then return {'already'} end
if ARGV[4] == '1' then
  local i = unseeded(4)
  if i then return {'seed', tostring(i)} end
end
local amount = redis.call('HGET', KEYS[1], 'amount')
local out = {'ok'}
for i = 4, #KEYS do
  local ck = KEYS[i]
  local before = redis.call('HGET', ck, 'spent') or '0'
  if amount then unreserve(ck, amount) end
  redis.call('HINCRBY', ck, 'spent', ARGV[2])
  out[#out + 1] = before
  out[#out + 1] = redis.call('HGET', ck, 'spent')
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
return out
"""
)

# KEYS: reservation hash, leases zset
# ARGV: reservation id
RELEASE = (
    _BIGINT
    + """
local amount = redis.call('HGET', KEYS[1], 'amount')
if not amount then return 0 end
local counters = redis.call('HGET', KEYS[1], 'counters')
for ck in string.gmatch(counters, '[^\\n]+') do unreserve(ck, amount) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
)

# KEYS: reservation hash, leases zset ; ARGV: reservation id, lease_ms
EXTEND = (
    _BIGINT
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local expires = now_ms() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'expires', tostring(expires))
redis.call('ZADD', KEYS[2], 'XX', expires, ARGV[1])
return 1
"""
)

# KEYS: leases zset ; ARGV: reservation key prefix, max count
REAP = (
    _BIGINT
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(ids) do
  local rk = ARGV[1] .. id
  local amount = redis.call('HGET', rk, 'amount')
  if amount then
    local counters = redis.call('HGET', rk, 'counters')
    for ck in string.gmatch(counters, '[^\\n]+') do unreserve(ck, amount) end
    redis.call('DEL', rk)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return n
"""
)

# KEYS: counter ; ARGV: spent, ttl seconds (0: none)
# Sets a period's spend from the ledger unless the counter already has one. A counter that
# has a spend but no mark (written before seeding existed) keeps its spend and is marked.
SEED = """
if redis.call('HEXISTS', KEYS[1], 'seeded') == 1 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'spent') == 1 then
  redis.call('HSET', KEYS[1], 'seeded', '1')
  return 0
end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'seeded', '1')
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 1
"""
