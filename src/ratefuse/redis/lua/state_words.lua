-- A subject's state words as a step leaves them: states[i][s] is word s of
-- limit i, and before is a flat copy of the words as they were read.

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
