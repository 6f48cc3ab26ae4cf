-- The sliding log's layout: the subject's hash holds, per limit, a header
-- field named by the limit's id and the ring's entries, fields named by
-- the id and the slot (0 to limit - 1) as 4 little-endian bytes (no
-- number formatting: printf is a measurable share of a decision), each
-- 10 bytes: the stamp (7) and units (3). The header is little-endian:
-- head, count and total (3 bytes each), the oldest live entry's stamp (7)
-- and units (3), the newest entry's stamp (7) and the unix ms the key is
-- known to live until (8): 34 bytes. A limit above 64 pads it to 65 bytes
-- (LOG_WIDE): a value longer than 64 bytes (hash-max-listpack-value's
-- default) makes the hash a hash table from its first write, where a
-- listpack of up to 512 fields would be scanned by every HGET and HSET;
-- a log of at most 64 entries stays a listpack, about half the memory.
-- With the oldest entry and the newest stamp in the header, a decision
-- reads one field and writes two (HGET, HSET): an entry is read only when
-- the oldest expires (once per entry: a cache of the next entries in the
-- header, refilled three at a time, measured no cheaper) or when a
-- denial needs more units than the oldest frees; the expiry is written
-- only when the newest entry outlives the one set. The general step
-- (sliding_log.lua, hash_layout.lua: state words 1 to 7) and the lean
-- decider (lean_sliding_log.lua) leave the same header.
local LOG_FORMAT = '<I3I3I3I7I3I7I8'
-- Padded by 31 bytes of zeros in four words (packed from four 0s, one
-- format item each where 'x' takes one per byte).
local LOG_WIDE = '<I3I3I3I7I3I7I8I8I8I8I7' -- 65 bytes
local LOG_BYTES, LOG_WIDE_BYTES = 34, 65
local LOG_ENTRY = '<I7I3'
local LOG_MAX = 9007199254740992 -- 2^53

-- log_shape is the header's format and length for a limit.
local function log_shape(limit)
  if limit > 64 then
    return LOG_WIDE, LOG_WIDE_BYTES
  end
  return LOG_FORMAT, LOG_BYTES
end

-- log_field is the field of ring slot `slot` of limit `id`.
local function log_field(id, slot)
  return id .. struct.pack('<I4', slot)
end

-- log_valid says whether header words are ones the scripts write: a ring
-- position inside the ring, at most the limit logged, every entry at
-- least one unit, stamps and expiry doubles hold exactly. Anything else
-- is repaired (drained) by the general path.
local function log_valid(limit, head, count, total, oldest, units, newest, expires)
  if head >= limit or count > limit or total > limit or newest >= LOG_MAX
      or expires >= LOG_MAX then
    return false
  end
  if count == 0 then
    return total == 0
  end
  return total >= count and units >= 1 and units <= total and oldest <= newest
    and (count > 1 or (units == total and oldest == newest))
end

-- log_entry is an entry's stamp and units, or nil for a value the scripts
-- never write (10 bytes, units from 1 to the limit).
local function log_entry(value, limit)
  if not value or #value ~= 10 then
    return nil
  end
  local stamp, units = struct.unpack(LOG_ENTRY, value)
  if stamp >= LOG_MAX or units < 1 or units > limit then
    return nil
  end
  return stamp, units
end

-- log_expiry is the unix ms the key is set to live until when the newest
-- entry (stamp newest) outlives the expiry last set: past that entry's
-- end (floor + 1 ms, as expiry) by an eighth of the period, so that the
-- decisions of the next eighth find it set already.
local function log_expiry(newest, period)
  local need = newest + period
  local slack = period / 8000
  return (need - need % 1000) / 1000 + 1 + slack - slack % 1
end

-- log_needs says whether a log whose newest entry is `newest` outlives
-- the expiry `expires` last set (floor + 1 ms).
local function log_needs(newest, period, expires)
  local need = newest + period
  return expires < (need - need % 1000) / 1000 + 1
end
