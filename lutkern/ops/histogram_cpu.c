/* Per-channel histograms on the CPU: the compiled loop of lutkern.channel_histogram
 * (lutkern/ops/histogram_cpu.py builds it with the system C compiler and calls it through ctypes, one
 * chunk of one channel plane per call). Same counts as lutkern/reference/histogram.py:
 *
 *   float value v   bin round-half-even(clamp(v, 0, 1) * (bins - 1)), computed in v's own type
 *                   (float or double); NaN is not counted; -0, -inf clamp to bin 0, +inf to bin bins - 1
 *   integer code k  bin k; a code outside [0, bins) is not counted (the caller refuses such images)
 *
 * Each call counts n values x[0], x[xs], ..., x[(n - 1) xs] into private 32-bit tables and then adds them
 * to out[0 .. bins) with relaxed atomic adds: calls on the same plane may run in parallel threads, and
 * integer sums are exact, so the result does not depend on their order. Returns 0, -1 when the tables
 * cannot be allocated, -2 for arguments out of range (n >= 2^32, bins outside [1, 2^16]).
 */
#include <stdint.h>
#include <stdlib.h>

/* The product clamp(v) * (bins - 1) is rounded to the value type before it is rounded to a bin, as in
 * torch: a fused multiply-add would skip that rounding and move ties. GCC in ISO C mode does not contract;
 * clang's default contracts within an expression, and is told not to. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Values are not trapped on (the default floating-point environment): letting GCC assume so allows it to
 * turn the comparisons of the float index loops into vector selects (clang assumes it by default). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

enum { BLOCK = 1024, MAX_BINS = 1 << 16, FEW_BINS = 4096 };

/* Neighbouring pixels often fall in the same bin, and consecutive increments of one counter wait on each
 * other through memory: four tables used in turn break that chain. Beyond FEW_BINS bins four tables would
 * no longer fit the cache, and one is used. Slot `bins` of a table takes the values not counted. */
typedef struct {
    uint32_t *counts;
    int64_t stride; /* elements from one table to the next; 0 with one table */
    int tables;
} Tables;

static int tables_open(Tables *t, int64_t bins)
{
    t->tables = bins <= FEW_BINS ? 4 : 1;
    t->stride = t->tables > 1 ? bins + 1 : 0;
    t->counts = calloc((size_t)t->tables * (size_t)(bins + 1), sizeof(uint32_t));
    return t->counts ? 0 : -1;
}

static void tables_close(Tables *t, int64_t bins, int64_t *out)
{
    for (int64_t k = 0; k < bins; k++) {
        int64_t c = 0;
        for (int j = 0; j < t->tables; j++)
            c += t->counts[j * t->stride + k];
        if (c)
            __atomic_fetch_add(out + k, c, __ATOMIC_RELAXED);
    }
    free(t->counts);
}

static void count(const Tables *t, const uint32_t *idx, int64_t n)
{
    uint32_t *h0 = t->counts, *h1 = h0 + t->stride, *h2 = h1 + t->stride, *h3 = h2 + t->stride;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        h0[idx[i]]++;
        h1[idx[i + 1]]++;
        h2[idx[i + 2]]++;
        h3[idx[i + 3]]++;
    }
    for (; i < n; i++)
        h0[idx[i]]++;
}

/* Bin indices of a block of float values: written as a loop without branches, so that the compiler
 * vectorizes it. Adding and subtracting 2^23 (2^52 for double) rounds a value in [0, 2^16] to an integer,
 * half to even, in the default rounding mode, without a call to rint. */
#define FLOAT_INDEX(NAME, T, MAGIC)                                                                      \
    static void NAME(const T *x, int64_t xs, int64_t n, int64_t bins, uint32_t *idx)                     \
    {                                                                                                    \
        const T scale = (T)(bins - 1);                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                                \
            T v = x[i * xs];                                                                             \
            T c = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN (sent to slot bins below) and -0 give +0 */       \
            T s = c * scale;                                                                             \
            T r = (s + MAGIC) - MAGIC;                                                                   \
            idx[i] = v == v ? (uint32_t)(int32_t)r : (uint32_t)bins;                                     \
        }                                                                                                \
    }

#define CODE_INDEX(NAME, T, UNSIGNED)                                                                    \
    static void NAME(const T *x, int64_t xs, int64_t n, int64_t bins, uint32_t *idx)                     \
    {                                                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                                \
            UNSIGNED k = (UNSIGNED)x[i * xs]; /* a negative code wraps past bins */                     \
            idx[i] = k < (UNSIGNED)bins ? (uint32_t)k : (uint32_t)bins;                                  \
        }                                                                                                \
    }

#define HISTOGRAM(NAME, T, INDEX)                                                                        \
    int NAME(const T *x, int64_t xs, int64_t n, int64_t bins, int64_t *out)                              \
    {                                                                                                    \
        if (n < 0 || n > (int64_t)UINT32_MAX || bins < 1 || bins > MAX_BINS)                             \
            return -2;                                                                                   \
        Tables t;                                                                                        \
        if (tables_open(&t, bins))                                                                       \
            return -1;                                                                                   \
        uint32_t idx[BLOCK];                                                                             \
        for (int64_t p = 0; p < n; p += BLOCK) {                                                         \
            int64_t m = n - p < BLOCK ? n - p : BLOCK;                                                   \
            INDEX(x + p * xs, xs, m, bins, idx);                                                         \
            count(&t, idx, m);                                                                           \
        }                                                                                                \
        tables_close(&t, bins, out);                                                                     \
        return 0;                                                                                        \
    }

FLOAT_INDEX(index_f32, float, 0x1p23f)
FLOAT_INDEX(index_f64, double, 0x1p52)
CODE_INDEX(index_u8, uint8_t, uint32_t)
CODE_INDEX(index_i16, int16_t, uint32_t)
CODE_INDEX(index_i32, int32_t, uint32_t)
CODE_INDEX(index_i64, int64_t, uint64_t)

HISTOGRAM(histogram_f32, float, index_f32)
HISTOGRAM(histogram_f64, double, index_f64)
HISTOGRAM(histogram_u8, uint8_t, index_u8)
HISTOGRAM(histogram_i16, int16_t, index_i16)
HISTOGRAM(histogram_i32, int32_t, index_i32)
HISTOGRAM(histogram_i64, int64_t, index_i64)
