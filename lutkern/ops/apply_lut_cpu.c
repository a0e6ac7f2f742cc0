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
 * Tetrahedral forward, float32, 8 pixels per step with AVX2 gathers (x86-64 CPUs that have AVX2, chosen
 * at run time): 1.5x the scalar loop. The same operations in the same order as forward_scalar_f32,
 * without fused multiply-adds, so every pixel gets the same bits from either path (tested). Returns how
 * many pixels it did (a multiple of 8; the rest go to the scalar loop). Trilinear stays scalar: its 24
 * gathered values per pixel cost more than the scalar loop's 8 four-lane loads (measured: no faster);
 * nearest is bound by reading and writing the planes. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

static int cpu_has_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return known;
}

#define AVX2 __attribute__((target("avx2")))

/* The 8 values lut[idx + off] (idx in elements). */
AVX2 static inline __m256 gather(const float *lut, __m256i idx, __m256i off)
{
    return _mm256_i32gather_ps(lut, _mm256_add_epi32(idx, off), 4);
}

AVX2 static int64_t tetrahedral_avx2_f32(const float *restrict x, int64_t xs, float *restrict out,
                                         int64_t os, int64_t n, const float *restrict lut, int64_t d,
                                         int interp)
{
    if (interp != TETRAHEDRAL || d > 812) return 0; /* gather indices are int32: 3 * d^3 < 2^31 */
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), nan = _mm256_set1_ps(NAN);
    const __m256 scale = _mm256_set1_ps((float)(d - 1));
    const __m256i top = _mm256_set1_epi32((int)(d - 2)), vd = _mm256_set1_epi32((int)d);
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
        __m256 v[3], f[3];
        __m256i i[3];
        for (int a = 0; a < 3; ++a) v[a] = _mm256_loadu_ps(x + a * xs + p);
        const __m256 isnan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v[0], v[0], _CMP_UNORD_Q),
                                                       _mm256_cmp_ps(v[1], v[1], _CMP_UNORD_Q)),
                                          _mm256_cmp_ps(v[2], v[2], _CMP_UNORD_Q));
        for (int a = 0; a < 3; ++a) {
            /* clamp01: max(0, -0) is -0, as there; NaN becomes 1 (max and min return their second
             * operand when one is NaN), a valid cell, and the pixel's output is set to NaN below */
            const __m256 s = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(zero, v[a]), one), scale);
            i[a] = _mm256_min_epi32(_mm256_cvttps_epi32(s), top);
            f[a] = _mm256_sub_ps(s, _mm256_cvtepi32_ps(i[a]));
        }
        __m256i base = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(i[2], vd), i[1]), vd), i[0]);
        base = _mm256_add_epi32(base, _mm256_add_epi32(base, base)); /* x 3 */
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
#else
static int cpu_has_avx2(void) { return 0; }
static int64_t tetrahedral_avx2_f32(const float *x, int64_t xs, float *out, int64_t os, int64_t n,
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
    const int64_t done = simd && cpu_has_avx2() ? tetrahedral_avx2_f32(x, xs, out, os, n, lut, d, interp) : 0;
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

