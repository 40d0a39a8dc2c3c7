-- Sliding-window rate limit: the arithmetic of src/ratelimit/window.rs, on Redis' clock.
--
-- KEYS[i]  one hash per limited key: field = sub-window index modulo RING, value = requests
--          admitted in it. When ARGV[1] is 1, the last key is a batch id's: it exists while that
--          batch counts as already accepted (the gateway sets it after logging the batch).
-- ARGV     ARGV[1] = 1 or 0 (is there a batch key), then for each limited key in turn: window_us,
--          granularity_us, limit. Never a time: time is Redis'.
--
-- Admits only when every key has room and the batch is not a duplicate, and then records one
-- request in each key; a refusal or a duplicate writes nothing. Returns { now_us, admitted (1|0),
-- duplicate (1|0), then for each limited key: room (1|0), remaining, reset_us }, reset_us being
-- the time until the oldest counted sub-window leaves the window.
--
-- Lua numbers are doubles: integers are exact up to 2^53 (microsecond timestamps are about 2^51),
-- but tostring() keeps only 14 digits and a / b may round up to the next integer. So fields are
-- written with %d and integer division goes through fmod, which is exact.

-- TIME before a write needs effects replication: the default since Redis 5, a no-op there.
redis.replicate_commands()

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local function div(a, b)
  return (a - math.fmod(a, b)) / b
end

-- Fields keep the index modulo RING: small integers, the most compact hash encoding. No field lives
-- longer than about two windows (stale fields go on every write, and the key expires a window after
-- its last one), far fewer than RING sub-windows, so a field's index is the latest one with its
-- remainder.
local RING = 4096
local function full_index(field, current)
  local behind = math.fmod(current, RING) - field
  if behind < 0 then
    behind = behind + RING
  end
  return current - behind
end

local limited = #KEYS
local duplicate = false
if ARGV[1] == '1' then
  limited = limited - 1
  duplicate = redis.call('EXISTS', KEYS[#KEYS]) == 1
end

local limits = {}
local admitted = not duplicate
for i = 1, limited do
  local key = KEYS[i]
  local window, granularity, limit = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local oldest = div(math.max(now - window, 0), granularity)
  local current = div(now, granularity)
  local fields = redis.call('HGETALL', key)
  local used, first, stale = 0, current, {}
  for j = 1, #fields, 2 do
    local index = full_index(tonumber(fields[j]), current)
    if index < oldest then
      stale[#stale + 1] = fields[j]
    else
      used = used + tonumber(fields[j + 1])
      first = math.min(first, index)
    end
  end
  admitted = admitted and used < limit
  limits[i] = { window = window, granularity = granularity, limit = limit, current = current, used = used,
    first = first, stale = stale }
end

local reply = { now, admitted and 1 or 0, duplicate and 1 or 0 }
for i, l in ipairs(limits) do
  local used = l.used
  if admitted then
    if #l.stale > 0 then
      redis.call('HDEL', KEYS[i], unpack(l.stale))
    end
    redis.call('HINCRBY', KEYS[i], string.format('%d', math.fmod(l.current, RING)), 1)
    -- Kept until its newest sub-window has left the window, plus one sub-window of grace.
    redis.call('PEXPIRE', KEYS[i], div(l.window + 2 * l.granularity, 1000) + 1)
    used = used + 1
  end
  reply[#reply + 1] = l.used < l.limit and 1 or 0
  reply[#reply + 1] = math.max(l.limit - used, 0)
  reply[#reply + 1] = math.max((l.first + 1) * l.granularity + l.window - now, 0)
end
return reply
