"""The key table, reference implementation (twin of the table in ``_keyed_c``).

An open-addressing hash table of fixed-size states, keyed by 64-bit key
fingerprints (``_keys_py``), with linear probing and backward-shift deletion
(no tombstones). Bounded by ``max_keys``:

- A state that is back to "as if new" carries no information: it is never
  inserted, and it is dropped whenever the table is rebuilt (on growth, and
  when full at most once per ``max_keys / 4`` insertions). Dropping changes no
  decision as long as time does not step back (a later decision at an
  earlier ``now`` sees the key as new); drops are counted as ``expired``.
- When full, the state closest to new (the least ``idle_at``) among
  ``EVICTION_SAMPLE`` slots from a position derived from the new key's
  fingerprint is removed; if it was not yet idle this is an eviction, the one
  place a keyed limiter may over-admit, and it is counted.

Capacity is a power of two that doubles while more than 3/4 full, up to the
least power of two holding ``max_keys`` at that load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

EVICTION_SAMPLE: Final = 16
MIN_CAPACITY: Final = 16

IdleAt = Callable[[list[int], int], int]


def max_capacity_for(max_keys: int) -> int:
    """`max_capacity_for` is the least power of two >= 16 holding ``max_keys``
    at a load of at most 3/4."""
    capacity = MIN_CAPACITY
    while capacity * 3 < max_keys * 4:
        capacity *= 2
    return capacity


class KeyTable:
    """`KeyTable` maps fingerprints to runs of ``words`` state words.

    Not thread-safe: the keyed engine serialises access.
    """

    def __init__(self, words: int, max_keys: int, idle_at: IdleAt) -> None:
        self.words = words
        self.max_keys = max_keys
        self.max_capacity = max_capacity_for(max_keys)
        self.idle_at = idle_at
        self.live = 0
        self.evictions = 0
        self.expired = 0
        self._inserts_since_rebuild = 0
        self._allocate(MIN_CAPACITY)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.mask = capacity - 1
        self.fingerprints = [0] * capacity
        self.states = [0] * (capacity * self.words)

    def find(self, fingerprint: int) -> int:
        """`find` returns the slot holding ``fingerprint``, or -1."""
        slot = fingerprint & self.mask
        while self.fingerprints[slot]:
            if self.fingerprints[slot] == fingerprint:
                return slot
            slot = (slot + 1) & self.mask
        return -1

    def insert(self, fingerprint: int, state: list[int], now: int) -> int:
        """`insert` stores a new key's state and returns its slot.

        Precondition: ``fingerprint`` is not in the table.
        """
        if self.live >= self.max_keys:
            if self._inserts_since_rebuild >= max(1, self.max_keys // 4):
                self._rebuild(self.capacity, now)
            if self.live >= self.max_keys:
                self._evict_sampled(fingerprint, now)
        elif (
            self.live + 1
        ) * 4 > self.capacity * 3 and self.capacity < self.max_capacity:
            self._rebuild(self.capacity * 2, now)
        self._inserts_since_rebuild += 1
        return self._place(fingerprint, state, 0)

    def remove(self, slot: int) -> None:
        """`remove` empties ``slot``, shifting later entries of its probe run
        back so that every key stays reachable from its home slot."""
        mask, words = self.mask, self.words
        hole = slot
        probe = slot
        while True:
            probe = (probe + 1) & mask
            fingerprint = self.fingerprints[probe]
            if not fingerprint:
                break
            home = fingerprint & mask
            if (probe - home) & mask >= (probe - hole) & mask:
                self.fingerprints[hole] = fingerprint
                self.states[hole * words : (hole + 1) * words] = self.states[
                    probe * words : (probe + 1) * words
                ]
                hole = probe
        self.fingerprints[hole] = 0
        self.states[hole * words : (hole + 1) * words] = [0] * words
        self.live -= 1

    def _place(self, fingerprint: int, state: list[int], offset: int) -> int:
        slot = fingerprint & self.mask
        while self.fingerprints[slot]:
            slot = (slot + 1) & self.mask
        self.fingerprints[slot] = fingerprint
        base = slot * self.words
        self.states[base : base + self.words] = state[offset : offset + self.words]
        self.live += 1
        return slot

    def _rebuild(self, capacity: int, now: int) -> None:
        """`_rebuild` rehashes into ``capacity`` slots, dropping idle states."""
        fingerprints, states = self.fingerprints, self.states
        self._allocate(capacity)
        self.live = 0
        for slot, fingerprint in enumerate(fingerprints):
            if not fingerprint:
                continue
            if self.idle_at(states, slot * self.words) > now:
                self._place(fingerprint, states, slot * self.words)
            else:
                self.expired += 1
        self._inserts_since_rebuild = 0

    def _evict_sampled(self, fingerprint: int, now: int) -> None:
        """`_evict_sampled` removes the state closest to new among a sample.

        Precondition: the table holds at least one key.
        """
        slot = (fingerprint >> 32) & self.mask
        victim, victim_idle = -1, 0
        examined = 0
        while examined < EVICTION_SAMPLE or victim < 0:
            if self.fingerprints[slot]:
                idle = self.idle_at(self.states, slot * self.words)
                if victim < 0 or idle < victim_idle:
                    victim, victim_idle = slot, idle
            slot = (slot + 1) & self.mask
            examined += 1
        self.remove(victim)
        if victim_idle > now:
            self.evictions += 1
        else:
            self.expired += 1
