-- The "string" layout of a subject's key (gcra, the windows): text, each
-- limit's field id followed by its state words in decimal, all separated
-- by single spaces ("<id> <w1> [<w2> ..] <id2> ..."), written with SET ..
-- PXAT (value and expiry in one command). Text, rather than a msgpack map,
-- because the common single-limit value is then one concatenation to write
-- and one pattern match to read. As in the "hash" layout (hash_layout.lua),
-- a limiter only touches its own limits' entries, so limiters that share a
-- name share exactly the limits they have in common.

-- parse_entries reads every entry of a "string" value: the ids in order
-- and their words (strings), so that foreign limits are written back, and
-- whether the value has the layout's shape at all (false: garbage, whose
-- entries cannot be told apart).
local function parse_entries(raw, width)
  local ids, words = {}, {}
  local tokens = {}
  for token in string.gmatch(raw, '%S+') do
    tokens[#tokens + 1] = token
  end
  if #tokens % (width + 1) ~= 0 then
    return ids, words, false
  end
  for j = 1, #tokens - width, width + 1 do
    local id = tokens[j]
    local entry = {}
    for s = 1, width do
      entry[s] = tokens[j + s]
    end
    if not words[id] then
      ids[#ids + 1] = id
    end
    words[id] = entry
  end
  return ids, words, true
end

-- The state of a single-limit subject while it is decided: one set of
-- tables for a whole batch instead of three per key, made at first use
-- (nothing keeps them past decide_key: the value stored is a new string).
local scratch_state, scratch_before, scratch_states = false, false, false

-- load_string reads the "string" layout from raw (the value, or false):
-- every limit's state words (states[i][s]), the value's entries when it
-- holds more than this limiter's single limit (else false) and a flat
-- copy of the words to detect changes. The "string" layouts have at most
-- three words per limit.
local function load_string(raw, specs, width)
  if #specs == 1 then
    if not scratch_state then
      scratch_state, scratch_before = {}, {}
      scratch_states = {scratch_state}
    end
    local state, before = scratch_state, scratch_before
    if not raw then
      -- A new subject (the common case of a batch over many keys).
      for s = 1, width do
        state[s], before[s] = 0, 0
      end
      -- The scratch may have held a wider state (the Functions library
      -- shares it between algorithms).
      for s = width + 1, 3 do
        state[s], before[s] = nil, nil
      end
      state.invalid = false
      return scratch_states, false, before
    end
    -- The common case: the value is exactly this limit's entry.
    local spec = specs[1]
    local prefix = spec.prefix
    if string.find(raw, prefix, 1, true) == 1 then
      -- The words right after the prefix, and no more (a value that holds
      -- other limits too takes the general path below).
      local first, second, third
      if width == 1 then
        first = string.match(raw, '^(%d+)$', #prefix + 1)
      else
        local pattern = '^(%d+) (%d+)$'
        if width == 3 then
          pattern = '^(%d+) (%d+) (%d+)$'
        end
        first, second, third = string.match(raw, pattern, #prefix + 1)
      end
      if first then
        state[1], state[2], state[3] = tonumber(first), tonumber(second), tonumber(third)
        state.invalid = false
        for s = 1, width do
          before[s] = state[s]
        end
        return scratch_states, false, before
      end
    end
  end
  local states, before = {}, {}
  local ids, words = false, {}
  local foreign, shaped = false, true
  if raw then
    ids, words, shaped = parse_entries(raw, width)
    -- Garbage may hold anyone's state: its expiry is kept.
    foreign = not shaped
    local own = {}
    for i = 1, #specs do
      own[specs[i].id] = true
    end
    for _, id in ipairs(ids) do
      if not own[id] then
        foreign = true
      end
    end
  end
  for i = 1, #specs do
    local entry = words[specs[i].id]
    local state = {invalid = not shaped}
    for s = 1, width do
      local value = word(entry and entry[s])
      -- A damaged word is written again whatever replaces it.
      before[#before + 1] = value
      if not value then
        state.invalid, value = true, 0
      end
      state[s] = value
    end
    states[i] = state
  end
  return states, ids and {ids = ids, words = words, foreign = foreign} or false, before
end

-- encode_string writes the "string" layout: this limiter's limits, then
-- the value's other limits as they were.
local function encode_string(specs, states, entries)
  if not entries and #specs == 1 then
    local state = states[1]
    local width = #state
    if width == 1 then
      return specs[1].prefix .. decimal(1, state[1])
    elseif width == 2 then
      return specs[1].prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
    end
    return specs[1].prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
      .. ' ' .. decimal(3, state[3])
  end
  local parts = {}
  for i = 1, #specs do
    local words = {}
    for s = 1, #states[i] do
      words[s] = string.format('%d', states[i][s])
    end
    parts[i] = specs[i].id .. ' ' .. table.concat(words, ' ')
  end
  if entries then
    local own = {}
    for i = 1, #specs do
      own[specs[i].id] = true
    end
    for _, id in ipairs(entries.ids) do
      if not own[id] then
        parts[#parts + 1] = id .. ' ' .. table.concat(entries.words[id], ' ')
      end
    end
  end
  return table.concat(parts, ' ')
end

-- A state that did not change keeps its expiry, which is a function of the
-- state alone (tat, window end, newest entry + period). A new subject whose
-- state is still as if new (a query, a denial) is not written at all: as
-- in the local keyed limiters, such a state carries no information.
-- A value that holds other limiters' limits keeps the later of its
-- expiry and this limiter's (kept_expiry). Returns the value now stored
-- (raw when nothing was written).
local function save_string(key, specs, width, states, entries, before, raw, at, reset)
  if changed_words(states, width, before, false, false) and (raw or reset > 0) then
    local value = encode_string(specs, states, entries)
    if entries and entries.foreign then
      at = kept_expiry(key, at)
    end
    redis.call('SET', key, value, 'PXAT', decimal(4, at))
    return value
  end
  return raw
end
