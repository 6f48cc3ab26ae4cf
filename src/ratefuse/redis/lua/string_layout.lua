-- The "string" layout of a subject's key (gcra, the windows): binary,
-- each limit's entry one after the other, an entry being the limit's
-- field id and a space (its prefix, text: digits and '/') followed by its
-- state words, each a little-endian IEEE 754 double holding an integer
-- in [0, 2^53): "<id> <8 bytes>[<8 bytes>..]<id2> <8 bytes>...", written
-- with SET .. PXAT (value and expiry in one command). Binary, rather than
-- decimal text, because reading a word is then one struct.unpack and
-- writing it one struct.pack, where text paid a pattern match, a strtod
-- per word and a printf per word (a fifth of a lean decision), and
-- rather than a msgpack map, because the common single-limit value is
-- one fixed-size string whose layout is known: one unpack with the
-- entry's format (entry_layout) reads it, and it is this limit's exactly
-- when its length and its prefix are. Doubles, rather than 8-byte
-- integers, because struct's integers are C longs (4 bytes on 32-bit
-- builds); any bytes may be stored, so every word read is checked
-- (stored, and each algorithm's valid). As in the "hash" layout
-- (hash_layout.lua), a limiter only touches its own limits' entries, so
-- limiters that share a name share exactly the limits they have in common.

-- WORDS[width] is the struct format of an entry's words; ENTRY[width]
-- of a whole entry to write ('c0': all of the prefix given, then words).
local WORDS = {'<d', '<dd', '<ddd'}
local ENTRY = {'c0<d', 'c0<dd', 'c0<ddd'}

-- entry_layout gives spec its prefix ("<id> ") and, for width words, the
-- struct format reading its whole entry (spec.read[width]: the prefix as
-- 'c<n>', then the words) and the entry's size in bytes (spec.size[width]).
local function entry_layout(spec, width)
  local prefix = spec.prefix
  if not prefix then
    prefix = spec.id .. ' '
    spec.prefix, spec.read, spec.size = prefix, {}, {}
  end
  spec.read[width] = 'c' .. #prefix .. WORDS[width]
  spec.size[width] = #prefix + 8 * width
end

-- parse_entries reads every entry of a "string" value: the ids in order
-- and their words' bytes, so that foreign limits are written back as they
-- were, and whether the value has the layout's shape at all (false:
-- garbage, whose entries cannot be told apart).
local function parse_entries(raw, width)
  local ids, words = {}, {}
  local bytes = 8 * width
  local at, size = 1, #raw
  while at <= size do
    local space = string.find(raw, ' ', at, true)
    -- An id of at least one character, then its words' bytes.
    if not space or space == at or space + bytes > size then
      return ids, words, false
    end
    local id = string.sub(raw, at, space - 1)
    if not words[id] then
      ids[#ids + 1] = id
    end
    words[id] = string.sub(raw, space + 1, space + bytes)
    at = space + bytes + 1
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
    -- The common case: the value is exactly this limit's entry (a value
    -- that holds other limits too, or damage, takes the general path).
    local spec = specs[1]
    if #raw == spec.size[width] then
      local id, first, second, third = struct.unpack(spec.read[width], raw)
      if width == 1 then
        second, third = 0, 0
      elseif width == 2 then
        third = 0
      end
      if id == spec.prefix and stored(first) and stored(second) and stored(third) then
        state[1], state[2], state[3] = first, second, third
        state.invalid = false
        for s = 1, width do
          before[s] = state[s]
        end
        -- The words past the width unused, as the scratch's shape wants.
        for s = width + 1, 3 do
          state[s] = nil
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
    local decoded = entry and {struct.unpack(WORDS[width], entry)}
    for s = 1, width do
      local value = 0
      if decoded then
        value = stored(decoded[s])
      end
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
local function encode_string(specs, width, states, entries)
  local format = ENTRY[width]
  if not entries and #specs == 1 then
    local state = states[1]
    return struct.pack(format, specs[1].prefix, state[1], state[2], state[3])
  end
  local parts = {}
  for i = 1, #specs do
    local state = states[i]
    parts[i] = struct.pack(format, specs[i].prefix, state[1], state[2], state[3])
  end
  if entries then
    local own = {}
    for i = 1, #specs do
      own[specs[i].id] = true
    end
    for _, id in ipairs(entries.ids) do
      if not own[id] then
        parts[#parts + 1] = id .. ' ' .. entries.words[id]
      end
    end
  end
  return table.concat(parts)
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
    local value = encode_string(specs, width, states, entries)
    if entries and entries.foreign then
      at = kept_expiry(key, at)
    end
    redis.call('SET', key, value, 'PXAT', decimal(at))
    return value
  end
  return raw
end
