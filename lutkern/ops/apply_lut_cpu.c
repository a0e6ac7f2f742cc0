/* 3D-LUT application on the CPU: one pass per pixel, forward and backward.
 *
 * The compiled loop of lutkern's torch backend on CPU tensors (lutkern/ops/apply_lut_cpu.py builds it
 * with the system C compiler and calls it through ctypes, one chunk of pixels per call). Same function
 * as lutkern/reference/apply.py, with the same clamping, NaN, cell and tie rules:
 *
 *   image chunk  x[c * xs + p]   planar RGB, c = 0..2, p = 0..n-1 (channel stride xs)
 *   lut          lut[((b * D + g) * D + r) * 3 + c]   one (D,D,D,3) LUT, red index fastest
 *   coordinate   s = clamp(x, 0, 1) * (D - 1); a NaN channel makes the whole output pixel NaN
 *   cell         origin min(floor(s), D - 2), fraction f = s - origin (so f = 1 at the top edge)
 *   nearest      the lattice point round-half-even(s)
 *
 * The kernels are in apply_lut_cpu_generic.h, included twice: T = float (suffix _f32) and T = double
 * (suffix _f64); the arithmetic is in T, as in the reference. No global state: calls on disjoint outputs may run in
 * parallel threads.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { TRILINEAR = 0, TETRAHEDRAL = 1, NEAREST = 2 };

/* Tetrahedral interpolation walks c000 -> ca -> cb -> c111, stepping the axes in order of decreasing
 * fraction; ties are broken r, g, b, exactly as the reference's six cases:
 *   fr >= fg >= fb: r, g, b    fr >= fb > fg: r, b, g    fb > fr >= fg: b, r, g
 *   fg > fr >= fb:  g, r, b    fg >= fb > fr: g, b, r    fb > fg > fr:  b, g, r
 * The case is looked up from the three comparisons instead of branched on: with fractions in random
 * order, mispredicted branches cost more than the rest of the pixel. */
typedef struct {
    int first, second, third; /* axis (0 = r, 1 = g, 2 = b) of the largest, middle, smallest fraction */
} Tetra;

/* Indexed by 4 (fr >= fg) + 2 (fg >= fb) + (fr >= fb); 1 and 6 cannot occur. */
static const Tetra TETRA_CASES[8] = {
    {2, 1, 0}, {0, 1, 2}, {1, 2, 0}, {1, 0, 2}, {2, 0, 1}, {0, 2, 1}, {0, 1, 2}, {0, 1, 2},
};

static Tetra tetra_case(double fr, double fg, double fb)
{
    return TETRA_CASES[4 * (fr >= fg) + 2 * (fg >= fb) + (fr >= fb)];
}

#define T float
#define SUF(name) name##_f32
#include "apply_lut_cpu_generic.h"
#undef T
#undef SUF

#define T double
#define SUF(name) name##_f64
#include "apply_lut_cpu_generic.h"
#undef T
#undef SUF

/* ---------------------------------------------------------------------------------------------------
 * Trilinear and tetrahedral forward, float32, 8 pixels per step with AVX2 gathers (x86-64 CPUs that
 * have AVX2, chosen at run time; measured 1.5x the scalar loop for both). The same operations in the
 * same order as forward_scalar_f32, without fused multiply-adds, so every pixel gets the same bits from
 * either path (tested). vector_forward_f32 returns how many pixels it did (a multiple of 8; the rest go
 * to the scalar loop). Nearest stays scalar: it is bound by reading and writing the planes. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static int cpu_has_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return known;
}

/* The cells of pixels p .. p+7: element offset of c000 (base), fractions f and the NaN-pixel mask. */
AVX2 static inline __m256i cells8(const float *x, int64_t xs, int64_t p, int64_t d, __m256 f[3], __m256 *isnan)
{
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 scale = _mm256_set1_ps((float)(d - 1));
    const __m256i top = _mm256_set1_epi32((int)(d - 2)), vd = _mm256_set1_epi32((int)d);
    __m256 v[3];
    __m256i i[3];
    for (int a = 0; a < 3; ++a) v[a] = _mm256_loadu_ps(x + a * xs + p);
    *isnan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v[0], v[0], _CMP_UNORD_Q), _mm256_cmp_ps(v[1], v[1], _CMP_UNORD_Q)),
                          _mm256_cmp_ps(v[2], v[2], _CMP_UNORD_Q));
    for (int a = 0; a < 3; ++a) {
        /* clamp01: max(0, -0) is -0, as there; NaN becomes 1 (max and min return their second operand
         * when one is NaN), a valid cell, and the caller sets the pixel's output to NaN */
        const __m256 s = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(zero, v[a]), one), scale);
        i[a] = _mm256_min_epi32(_mm256_cvttps_epi32(s), top);
        f[a] = _mm256_sub_ps(s, _mm256_cvtepi32_ps(i[a]));
    }
    const __m256i pt = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(i[2], vd), i[1]), vd), i[0]);
    return _mm256_add_epi32(pt, _mm256_add_epi32(pt, pt)); /* x 3 */
}

/* The 8 values lut[idx + off] (idx in elements). */
AVX2 static inline __m256 gather(const float *lut, __m256i idx, __m256i off)
{
    return _mm256_i32gather_ps(lut, _mm256_add_epi32(idx, off), 4);
}

/* The 8 element pairs lut[idx + off], lut[idx + off + 1], as floats [a0 b0 a1 b1 | a2 b2 a3 b3] (lo, pixels
 * 0-3) and the same for pixels 4-7 (hi). */
AVX2 static inline void gather_pairs(const float *lut, __m256i idx, int off, __m256 *lo, __m256 *hi)
{
    const __m256i at = _mm256_add_epi32(idx, _mm256_set1_epi32(off));
    const long long *base = (const long long *)lut;
    *lo = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_castsi256_si128(at), 4));
    *hi = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_extracti128_si256(at, 1), 4));
}

AVX2 static inline __m256 lerp8(__m256 a, __m256 b, __m256 t)
{
    return _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_sub_ps(b, a)));
}

/* Trilinear: the two corners (r, g, b) and (r+1, g, b) of a cell edge along r are 6 consecutive floats
 * R0 G0 B0 R1 G1 B1, fetched as three 8-byte pairs (half the gathered elements of one float per value).
 * Splitting the pairs leaves the pixels in the order 0 1 4 5 2 3 6 7 (shuffles work within 128-bit
 * halves); the fractions are put in that order and the result back (the permutation is its own inverse). */
AVX2 static int64_t trilinear_avx2_f32(const float *restrict x, int64_t xs, float *restrict out, int64_t os,
                                       int64_t n, const float *restrict lut, int64_t d)
{
    const __m256 nan = _mm256_set1_ps(NAN);
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    const int rows[4] = {0, 3 * (int)d, 3 * (int)(d * d), 3 * (int)(d * d + d)}; /* (g, b) = 00 10 01 11 */
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 f[3], isnan;
        const __m256i base = cells8(x, xs, p, d, f, &isnan);
        for (int a = 0; a < 3; ++a) f[a] = _mm256_permutevar8x32_ps(f[a], order);
        __m256 e[4][3]; /* per row, per channel: the value lerped along r */
        for (int row = 0; row < 4; ++row) {
            __m256 lo0, hi0, lo1, hi1, lo2, hi2;
            gather_pairs(lut, base, rows[row], &lo0, &hi0);     /* R0 G0 */
            gather_pairs(lut, base, rows[row] + 2, &lo1, &hi1); /* B0 R1 */
            gather_pairs(lut, base, rows[row] + 4, &lo2, &hi2); /* G1 B1 */
            const __m256 r0 = _mm256_shuffle_ps(lo0, hi0, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 g0 = _mm256_shuffle_ps(lo0, hi0, _MM_SHUFFLE(3, 1, 3, 1));
            const __m256 b0 = _mm256_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 r1 = _mm256_shuffle_ps(lo1, hi1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m256 g1 = _mm256_shuffle_ps(lo2, hi2, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 b1 = _mm256_shuffle_ps(lo2, hi2, _MM_SHUFFLE(3, 1, 3, 1));
            e[row][0] = lerp8(r0, r1, f[0]);
            e[row][1] = lerp8(g0, g1, f[0]);
            e[row][2] = lerp8(b0, b1, f[0]);
        }
        for (int ch = 0; ch < 3; ++ch) {
            const __m256 lo = lerp8(e[0][ch], e[1][ch], f[1]), hi = lerp8(e[2][ch], e[3][ch], f[1]);
            const __m256 o = _mm256_permutevar8x32_ps(lerp8(lo, hi, f[2]), order);
            _mm256_storeu_ps(out + ch * os + p, _mm256_blendv_ps(o, nan, isnan));
        }
    }
    return p;
}

AVX2 static int64_t tetrahedral_avx2_f32(const float *restrict x, int64_t xs, float *restrict out,
                                         int64_t os, int64_t n, const float *restrict lut, int64_t d)
{
    const __m256 one = _mm256_set1_ps(1.0f), nan = _mm256_set1_ps(NAN);
    const int stride[3] = {3, 3 * (int)d, 3 * (int)(d * d)};
    const __m256i c000 = _mm256_setzero_si256(), c111 = _mm256_set1_epi32(stride[0] + stride[1] + stride[2]);
    int oa_table[8], ob_table[8]; /* offsets of ca and cb for each case of TETRA_CASES */
    for (int k = 0; k < 8; ++k) {
        oa_table[k] = stride[TETRA_CASES[k].first];
        ob_table[k] = stride[TETRA_CASES[k].first] + stride[TETRA_CASES[k].second];
    }
    const __m256i oa_t = _mm256_loadu_si256((const __m256i *)oa_table);
    const __m256i ob_t = _mm256_loadu_si256((const __m256i *)ob_table);
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 f[3], isnan;
        const __m256i base = cells8(x, xs, p, d, f, &isnan);
        /* case index 4 (fr >= fg) + 2 (fg >= fb) + (fr >= fb), from the all-ones (-1) compare masks */
        const __m256i ge_rg = _mm256_castps_si256(_mm256_cmp_ps(f[0], f[1], _CMP_GE_OQ));
        const __m256i ge_gb = _mm256_castps_si256(_mm256_cmp_ps(f[1], f[2], _CMP_GE_OQ));
        const __m256i ge_rb = _mm256_castps_si256(_mm256_cmp_ps(f[0], f[2], _CMP_GE_OQ));
        const __m256i k = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(ge_rg, 2), _mm256_slli_epi32(ge_gb, 1)), ge_rb));
        const __m256i oa = _mm256_permutevar8x32_epi32(oa_t, k), ob = _mm256_permutevar8x32_epi32(ob_t, k);
        /* the largest, middle and smallest fraction */
        const __m256 f1 = _mm256_max_ps(_mm256_max_ps(f[0], f[1]), f[2]);
        const __m256 f3 = _mm256_min_ps(_mm256_min_ps(f[0], f[1]), f[2]);
        const __m256 f2 = _mm256_max_ps(_mm256_min_ps(f[0], f[1]), _mm256_min_ps(_mm256_max_ps(f[0], f[1]), f[2]));
        const __m256 w0 = _mm256_sub_ps(one, f1), w1 = _mm256_sub_ps(f1, f2), w2 = _mm256_sub_ps(f2, f3);
        for (int ch = 0; ch < 3; ++ch) {
            const __m256i b = _mm256_add_epi32(base, _mm256_set1_epi32(ch));
            __m256 o = _mm256_mul_ps(w0, gather(lut, b, c000));
            o = _mm256_add_ps(o, _mm256_mul_ps(w1, gather(lut, b, oa)));
            o = _mm256_add_ps(o, _mm256_mul_ps(w2, gather(lut, b, ob)));
            o = _mm256_add_ps(o, _mm256_mul_ps(f3, gather(lut, b, c111)));
            _mm256_storeu_ps(out + ch * os + p, _mm256_blendv_ps(o, nan, isnan));
        }
    }
    return p;
}

AVX2 static int64_t vector_forward_f32(const float *x, int64_t xs, float *out, int64_t os, int64_t n,
                                       const float *lut, int64_t d, int interp)
{
    if (d > 812) return 0; /* gather indices are int32: 3 * d^3 < 2^31 */
    if (interp == TRILINEAR) return trilinear_avx2_f32(x, xs, out, os, n, lut, d);
    if (interp == TETRAHEDRAL) return tetrahedral_avx2_f32(x, xs, out, os, n, lut, d);
    return 0;
}
#else
static int cpu_has_avx2(void) { return 0; }
static int64_t vector_forward_f32(const float *x, int64_t xs, float *out, int64_t os, int64_t n,
                                  const float *lut, int64_t d, int interp)
{
    (void)x, (void)xs, (void)out, (void)os, (void)n, (void)lut, (void)d, (void)interp;
    return 0;
}
#endif

/* out (3 planes, stride os) = lut applied to x (3 planes, stride xs), for n pixels; simd = 0 keeps to
 * the scalar loop. */
void lut_forward_f32(const float *x, int64_t xs, float *out, int64_t os, int64_t n, const float *lut,
                     int64_t d, int interp, int simd)
{
    warm_f32(lut, d, n);
    const int64_t done = simd && cpu_has_avx2() ? vector_forward_f32(x, xs, out, os, n, lut, d, interp) : 0;
    forward_scalar_f32(x, xs, out, os, n, lut, d, interp, done);
}

void lut_forward_f64(const double *x, int64_t xs, double *out, int64_t os, int64_t n, const double *lut,
                     int64_t d, int interp, int simd)
{
    (void)simd;
    warm_f64(lut, d, n);
    forward_scalar_f64(x, xs, out, os, n, lut, d, interp, 0);
}

/* 1 when lut_forward_f32 uses the AVX2 path (for tests). */
int lut_has_simd(void) { return cpu_has_avx2(); }

