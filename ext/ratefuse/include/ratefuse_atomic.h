/* Atomics on the shared-memory key table (ext/ratefuse/_shm_c.pyx).
 *
 * A slot is two 64-bit words, (fingerprint, state), 16-byte aligned, and
 * every change to a slot is one 16-byte compare-and-swap of both words: an
 * update can never land in a slot that has meanwhile been given to another
 * key (the ABA problem that a CAS on the state word alone would have).
 *
 * x86-64: `lock cmpxchg16b`, inlined by GCC and clang from the __sync
 * builtin in a function compiled for the cx16 target, so neither -mcx16 nor
 * libatomic is needed (libatomic's fallback takes a process-local lock,
 * which would not exclude other processes). Elsewhere the __sync builtin is
 * used where the compiler reports a native 16-byte CAS
 * (__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16, e.g. aarch64); otherwise
 * RATEFUSE_HAVE_CAS16 is 0 and the shared-memory limiters refuse to start.
 *
 * The table's bucket sequence words and statistics use 8-byte __atomic
 * builtins, lock-free on every 64-bit target.
 */
#ifndef RATEFUSE_ATOMIC_H
#define RATEFUSE_ATOMIC_H

#include <stdint.h>

typedef struct {
    uint64_t fingerprint;
    int64_t state;
} __attribute__((aligned(16))) ratefuse_slot;

static inline uint64_t ratefuse_load_fingerprint(const ratefuse_slot *slot) {
    return __atomic_load_n(&slot->fingerprint, __ATOMIC_ACQUIRE);
}

static inline int64_t ratefuse_load_state(const ratefuse_slot *slot) {
    return __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
}

static inline int64_t ratefuse_load_word(const int64_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

/* Replaces *word with `desired` iff it holds `expected`; full barrier. */
static inline int ratefuse_cas_word(int64_t *word, int64_t expected,
                                    int64_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline void ratefuse_add_word(int64_t *word, int64_t delta) {
    __atomic_fetch_add(word, delta, __ATOMIC_RELAXED);
}

/* The slot as one 128-bit value: the fingerprint is the word at the lower
 * address. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define RATEFUSE_PAIR(fingerprint, state)                                    \
    (((unsigned __int128)(fingerprint) << 64) | (uint64_t)(state))
#else
#define RATEFUSE_PAIR(fingerprint, state)                                    \
    (((unsigned __int128)(uint64_t)(state) << 64) | (fingerprint))
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define RATEFUSE_HAVE_CAS16 1
#define RATEFUSE_CAS16_TARGET __attribute__((target("cx16")))
#elif defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#define RATEFUSE_HAVE_CAS16 1
#define RATEFUSE_CAS16_TARGET
#else
#define RATEFUSE_HAVE_CAS16 0
#endif

#if RATEFUSE_HAVE_CAS16
/* Replaces the slot's (fingerprint, state) with the new pair iff it holds
 * the expected pair; full barrier. Returns 1 on success. */
RATEFUSE_CAS16_TARGET static int ratefuse_cas_slot(
    ratefuse_slot *slot, uint64_t fingerprint, int64_t state,
    uint64_t new_fingerprint, int64_t new_state) {
    return __sync_bool_compare_and_swap(
        (unsigned __int128 *)slot, RATEFUSE_PAIR(fingerprint, state),
        RATEFUSE_PAIR(new_fingerprint, new_state));
}
#else
static int ratefuse_cas_slot(ratefuse_slot *slot, uint64_t fingerprint,
                             int64_t state, uint64_t new_fingerprint,
                             int64_t new_state) {
    (void)slot; (void)fingerprint; (void)state;
    (void)new_fingerprint; (void)new_state;
    return 0; /* unreachable: the limiters refuse to start */
}
#endif

#endif /* RATEFUSE_ATOMIC_H */
