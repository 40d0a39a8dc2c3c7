-- Sliding-window rate limit: the arithmetic of src/ratelimit/window.rs, on Redis' clock.
--
-- KEYS[i]  one hash per limited key: field 'n' = requests counted, 'f' = index of the oldest
--          sub-window holding some, and one field per such sub-window (its index modulo RING) =
--          requests admitted in it. When ARGV[1] is 1, the last key is a batch id's: it exists while
--          that batch counts as already accepted (the gateway sets it after logging the batch).
-- ARGV     ARGV[1] = 1 or 0 (is there a batch key), then for each limited key in turn: window_us,
--          granularity_us, limit, cost (what this call counts in the key: 1 for a request, a
--          request's records when limits count records, 0 for nothing). Never a time: time is Redis'.
--
-- Admits only when every key has room for its cost and the batch is not a duplicate, and then
-- records the cost in each key; a refusal or a duplicate writes nothing. Returns { now_us, admitted
-- (1|0), duplicate (1|0), then for each limited key: room (1|0), remaining, reset_us }, reset_us
-- being the time until the oldest counted sub-window leaves the window or, for a key without room,
-- until enough sub-windows have left for its cost to fit.
--
-- The running count makes a call cost the same however many sub-windows a key holds: only the
-- sub-windows that left the window since the last call are read (window.rs pops them off the front
-- of its queue the same way), not every field of a busy key.
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

-- Sub-window fields are named by the index modulo RING: small integers, the most compact hash
-- encoding. No field lives longer than about two windows, far fewer than RING sub-windows.
local RING = 4096
local function field(index)
  return string.format('%d', math.fmod(index, RING))
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
  local window, granularity = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1])
  local limit, cost = tonumber(ARGV[4 * i]), tonumber(ARGV[4 * i + 1])
  local oldest = div(math.max(now - window, 0), granularity)
  local current = div(now, granularity)
  local current_field = field(current)
  local meta = redis.call('HMGET', key, 'n', 'f', current_field)
  local used, first, stale = tonumber(meta[1]) or 0, tonumber(meta[2]) or current, {}
  local in_current = tonumber(meta[3]) or 0
  if used > 0 and first < oldest then
    -- The sub-windows that have left the window: a few since the last call (the key expires a
    -- window after its last write, so never more than about two windows' worth; RING names at most,
    -- should the clock have jumped).
    local fields = {}
    for index = math.max(first, oldest - RING), oldest - 1 do
      fields[#fields + 1] = field(index)
    end
    local counts = redis.call('HMGET', key, unpack(fields))
    for j = 1, #fields do
      if counts[j] then
        used = used - tonumber(counts[j])
        stale[#stale + 1] = fields[j]
        if fields[j] == current_field then
          in_current = 0 -- the same name, left by a sub-window RING ago: the clock jumped
        end
      end
    end
    -- The oldest sub-window still holding requests (there is one while used > 0; bounded all the
    -- same, should the clock have stepped back).
    first = oldest
    while used > 0 and first < current and redis.call('HEXISTS', key, field(first)) == 0 do
      first = first + 1
    end
  end
  if used <= 0 then
    used, first = 0, current
  end
  local room = cost == 0 or used + cost <= limit
  admitted = admitted and room
  -- The sub-window whose leaving makes room: the oldest, or for a key without room, the one by which
  -- enough have left for the cost to fit (read in one HMGET, only when a refusal needs more than the
  -- oldest sub-window, which holds at least one, to leave).
  local frees = first
  if not room and used + cost - limit > 1 then
    local fields = {}
    for index = first, current do
      fields[#fields + 1] = field(index)
    end
    local counts = redis.call('HMGET', key, unpack(fields))
    local to_free = used + cost - limit
    for j = 1, #fields do
      frees = first + j - 1
      local n = frees == current and in_current or tonumber(counts[j]) or 0
      to_free = to_free - n
      if to_free <= 0 then
        break
      end
    end
  end
  limits[i] = { window = window, granularity = granularity, limit = limit, cost = cost, used = used,
    room = room, first = first, frees = frees, stale = stale, current_field = current_field,
    in_current = in_current }
end

local reply = { now, admitted and 1 or 0, duplicate and 1 or 0 }
for i, l in ipairs(limits) do
  local used = l.used
  if admitted and l.cost > 0 then
    if #l.stale > 0 then
      redis.call('HDEL', KEYS[i], unpack(l.stale))
    end
    redis.call('HSET', KEYS[i], l.current_field, string.format('%d', l.in_current + l.cost),
      'n', string.format('%d', used + l.cost), 'f', string.format('%d', l.first))
    -- Kept until its newest sub-window has left the window, plus one sub-window of grace.
    redis.call('PEXPIRE', KEYS[i], div(l.window + 2 * l.granularity, 1000) + 1)
    used = used + l.cost
  end
  reply[#reply + 1] = l.room and 1 or 0
  reply[#reply + 1] = math.max(l.limit - used, 0)
  reply[#reply + 1] = math.max((l.frees + 1) * l.granularity + l.window - now, 0)
end
return reply
