-- A run this long is worth its group (shorter ones are written out: the
-- client expands groups in Python, and copies here cost less).
local RUN = 8

-- flush_repeats writes the previous verdict (out's last 5) `repeats` more
-- times, as a group when the run is long; returns out's new length.
local function flush_repeats(out, n, repeats)
  if repeats >= RUN then
    out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = -repeats, 0, 0, 0, 0
    return n + 5
  end
  local a, b, c, d, e = out[n - 4], out[n - 3], out[n - 2], out[n - 1], out[n]
  for _ = 1, repeats do
    out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = a, b, c, d, e
    n = n + 5
  end
  return n
end

-- decide_batch decides KEYS[k] with costs[k] in turn; out gets the
-- verdicts, 5 integers each, except that a run of at least RUN verdicts
-- equal to the one before them is written as one group of 5, -n then four
-- zeros, meaning "the previous verdict n more times" (fresh keys of one
-- cost share their verdict: packing 5 integers a key was a sixth of a
-- fresh batch's time). raws[k] is KEYS[k]'s value in the "string"
-- layout (false: none, or the "hash" layout); values (false in mode "u")
-- is each key's current value, for a key that comes back later in the
-- batch. The common batch, a single limit in the "string" layout, is
-- decided here with decide_key's calls inlined, which are a measurable
-- share of a batch's time; anything else, and a value this does not
-- recognise (other limits too, or a foreign shape), goes to decide_key.
local function decide_batch(algorithm, specs, now, costs, raws, values, out)
  local width = algorithm.width
  local step = algorithm.step
  local spec = specs[1]
  local inline = not algorithm.hash and #specs == 1
  -- As load_string and encode_string (string_layout.lua), for this limit.
  local prefix, read, size = spec.prefix, false, false
  if inline then
    read, size = spec.read[width], spec.size[width]
  end
  local write = ENTRY[width]
  local valid = algorithm.valid
  local pack, unpack, call = struct.pack, struct.unpack, redis.call
  local state = {}
  -- The expiry argument of the last reset seen: a function of reset
  -- alone within a call (one now), and the keys of a batch mostly share it.
  local last_reset, last_at = false, false
  local last_word, last_value = false, false
  -- The cost of the last new key decided, and its step's result.
  local fresh_cost, fresh = false, {}
  local n = 0
  -- The previous verdict, and how many keys since repeated it.
  local p1, p2, p3, p4, p5 = false, false, false, false, false
  local repeats = 0
  for k = 1, #KEYS do
    local key = KEYS[k]
    local raw = raws[k] or false
    if values then
      local current = values[key]
      if current ~= nil then
        raw = current
      end
    end
    local cost = costs[k]
    local known = false
    if inline then
      if not raw then
        state[1], state[2], state[3] = 0, 0, 0 -- the words past width unused
        known = true
      elseif #raw == size then
        -- As load_string: exactly this limit's entry, words the scripts
        -- write (the words past the width are 0: stored).
        local id, first, second, third = unpack(read, raw)
        if width == 1 then
          second, third = 0, 0
        elseif width == 2 then
          third = 0
        end
        if id == prefix and stored(first) and stored(second) and stored(third) then
          state[1], state[2], state[3] = first, second, third
          -- A state no decision leaves goes to decide_key, which repairs it.
          known = valid(spec, state, now)
        end
      end
    end
    local allowed, remaining, retry, reset, binding, value
    if known then
      -- As save_string: write only a changed state, and a new subject's
      -- only when it carries information (reset > 0).
      local first, second, third = state[1], state[2], state[3]
      if not raw and cost == fresh_cost then
        -- A new key of the last new key's cost: the step is a function of
        -- the state, now and the cost alone, all the same (one now a
        -- call), so its verdict and new state are the last new key's.
        allowed, remaining, retry, reset = fresh[1], fresh[2], fresh[3], fresh[4]
        state[1], state[2], state[3] = fresh[5], fresh[6], fresh[7]
      else
        allowed, remaining, retry, reset = step(spec, state, now, cost, true, key)
        if not raw then
          fresh_cost = cost
          fresh[1], fresh[2], fresh[3], fresh[4] = allowed, remaining, retry, reset
          fresh[5], fresh[6], fresh[7] = state[1], state[2], state[3]
        end
      end
      binding, value = 0, raw
      if (state[1] ~= first or state[2] ~= second or state[3] ~= third)
        and (raw or reset > 0) then
        if width == 1 then
          -- The keys of a batch often share their new state (fresh keys,
          -- one now), hence the value: built once.
          if state[1] ~= last_word then
            last_word, last_value = state[1], pack(write, prefix, state[1])
          end
          value = last_value
        else
          value = pack(write, prefix, state[1], state[2], state[3])
        end
        if reset ~= last_reset then
          last_reset, last_at = reset, decimal(expiry(now, reset))
        end
        if raw then
          call('SET', key, value, 'PXAT', last_at)
        else
          -- A new key: with GET, SET replies nil, which reaches Lua for
          -- less than its "OK" (a table), for one lookup more.
          call('SET', key, value, 'PXAT', last_at, 'GET')
        end
      end
      allowed = allowed and 1 or 0
    else
      allowed, remaining, retry, reset, binding, value =
        decide_key(algorithm, key, specs, now, cost, raw)
    end
    if values then
      values[key] = value
    end
    if allowed == p1 and remaining == p2 and retry == p3 and reset == p4
      and binding == p5 then
      repeats = repeats + 1
    else
      if repeats > 0 then
        n = flush_repeats(out, n, repeats)
        repeats = 0
      end
      out[n + 1], out[n + 2], out[n + 3] = allowed, remaining, retry
      out[n + 4], out[n + 5] = reset, binding
      n = n + 5
      p1, p2, p3, p4, p5 = allowed, remaining, retry, reset, binding
    end
  end
  if repeats > 0 then
    flush_repeats(out, n, repeats)
  end
end
