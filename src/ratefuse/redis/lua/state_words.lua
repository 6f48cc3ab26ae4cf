-- A subject's state words as a step leaves them: states[i][s] is word s of
-- limit i, and before is a flat copy of the words as they were read.

-- Every word the scripts write is an integer in [0, 2^53) (decimal text
-- in the "hash" layout, a double in the "string" layout); what is read
-- back is checked (by the layouts: word and stored, and by each
-- algorithm's valid), since anyone can write the key: a value doubles
-- cannot hold exactly, garbage or a state no decision leaves would
-- otherwise be taken as a new subject, or yield waits that are negative
-- or endless.
-- A limit whose state fails is repaired (repair_states).
local MAX_WORD = 9007199254740992 -- 2^53

-- word is a stored word of the "hash" layout as a number, or false when it is not one the
-- scripts write (nil or false: none, 0).
local function word(text)
  if not text then
    return 0
  end
  if not string.find(text, '^%d+$') then
    return false
  end
  local number = tonumber(text)
  if number >= MAX_WORD then
    return false
  end
  return number
end

-- stored is a word read from the "string" layout (a double, see
-- string_layout.lua) as it is, or false when it is not one the scripts
-- write: an integer in [0, 2^53) (NaN fails every comparison; a fraction
-- or an infinity fails number % 1 == 0).
local function stored(number)
  if number >= 0 and number < MAX_WORD and number % 1 == 0 then
    return number
  end
  return false
end

-- latest_window is the latest window index a stored window state may hold
-- (the windows' valid): now's, or the next when the server clock went
-- back by up to a period. One per call (one now): a batch computes it once.
local function latest_window(spec, now)
  local latest = spec.latest
  if not latest then
    latest = idiv(now, spec.period) + 1
    spec.latest = latest
  end
  return latest
end

-- repair_states replaces each limit's state that is not one the scripts
-- write (a word failed, state.invalid, or the algorithm's valid refused
-- it) by the algorithm's drained state at now: the limit as if just used
-- up. Never more admitted than before the damage, and every wait bounded
-- by the limit's own (one period, or tau). Returns whether it repaired.
local function repair_states(algorithm, specs, states, now, key)
  local repaired = false
  for i = 1, #specs do
    local state = states[i]
    if state.invalid or not algorithm.valid(specs[i], state, now) then
      state.invalid = false
      algorithm.drain(specs[i], state, now, key)
      repaired = true
    end
  end
  return repaired
end

-- changed_words reports whether any word differs from before; with a
-- table changes (else false), it also appends each changed word's field
-- (fields[j], for the flat index j) and its new value.
local function changed_words(states, width, before, fields, changes)
  local changed = false
  local j = 0
  for i = 1, #states do
    local state = states[i]
    for s = 1, width do
      j = j + 1
      if state[s] ~= before[j] then
        changed = true
        if changes then
          changes[#changes + 1] = fields[j]
          changes[#changes + 1] = state[s]
        end
      end
    end
  end
  return changed
end
