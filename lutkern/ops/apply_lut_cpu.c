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
 * Float32 trilinear and tetrahedral, 8 pixels per step with AVX2, on x86-64 CPUs that have AVX2 (chosen at
 * run time; per-function target attributes keep the rest of the library portable). The lattice values
 * are fetched with one 16-byte load per pixel and split by channel with shuffles (rows8), not with
 * gather instructions: on this project's Intel benchmark machine (Ice Lake) the gathering loop took 2.2x
 * (trilinear) and 1.2x (tetrahedral) the scalar loop's time, the loads and shuffles (with the two passes
 * below) 0.55x and 0.45x of it. The same operations in the same order as the scalar loop and no fused
 * multiply-adds, so every pixel gets the same bits from either path (tested). vector_forward_f32 /
 * vector_backward_f32 return how many pixels they did (a multiple of 8; the rest go to the scalar loop).
 * Nearest stays scalar: it is bound by reading and writing the planes. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static int has_avx2; /* set once when the library is loaded, before any call */

__attribute__((constructor)) static void detect_cpu(void)
{
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
}

static int cpu_has_avx2(void) { return has_avx2; }

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

/* Lattice values of 8 pixels (see above: no gathers): one 16-byte load per pixel
 * at lut + at[q], pixels q and q + 4 paired in the two 128-bit halves, then split by channel with
 * in-lane shuffles, pixels back in their natural order. */
AVX2 static inline void rows8(const float *lut, const uint32_t at[8], __m256 row[4])
{
    for (int q = 0; q < 4; ++q)
        row[q] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lut + at[q])), _mm_loadu_ps(lut + at[q + 4]), 1);
}

/* The 4 rows' lanes 0-1 (lo) and 2-3 (hi) split: lane k of every pixel is shuffle(lo or hi, k % 2). */
#define LANES_01 _MM_SHUFFLE(1, 0, 1, 0)
#define LANES_23 _MM_SHUFFLE(3, 2, 3, 2)

/* The 8 lattice points at lut + at[q]: channel c in rgb[c]. ``lead`` = 0 reads R G B and the next point's
 * R, 1 reads the previous point's B then R G B: the LUT's last point needs lead 1, its first lead 0. */
AVX2 static inline void corner8(const float *lut, const uint32_t at[8], int lead, __m256 rgb[3])
{
    __m256 r[4];
    rows8(lut - lead, at, r);
    const __m256 lo01 = _mm256_unpacklo_ps(r[0], r[1]), lo23 = _mm256_unpacklo_ps(r[2], r[3]);
    const __m256 hi01 = _mm256_unpackhi_ps(r[0], r[1]), hi23 = _mm256_unpackhi_ps(r[2], r[3]);
    if (lead) {
        rgb[0] = _mm256_shuffle_ps(lo01, lo23, LANES_23);
        rgb[1] = _mm256_shuffle_ps(hi01, hi23, LANES_01);
        rgb[2] = _mm256_shuffle_ps(hi01, hi23, LANES_23);
    } else {
        rgb[0] = _mm256_shuffle_ps(lo01, lo23, LANES_01);
        rgb[1] = _mm256_shuffle_ps(lo01, lo23, LANES_23);
        rgb[2] = _mm256_shuffle_ps(hi01, hi23, LANES_01);
    }
}

/* Trilinear: the two corners (r, g, b) and (r+1, g, b) of a cell edge along r are 6 consecutive floats
 * R0 G0 B0 R1 G1 B1 from lut + at[q], read as R0 G0 B0 R1 and B0 R1 G1 B1 (never past the LUT's end).
 * first[c] and next[c] are channel c of the two corners. */
AVX2 static inline void edge8(const float *lut, const uint32_t at[8], __m256 first[3], __m256 next[3])
{
    __m256 r[4], s[4];
    rows8(lut, at, r);
    rows8(lut + 2, at, s);
    const __m256 lo01 = _mm256_unpacklo_ps(r[0], r[1]), lo23 = _mm256_unpacklo_ps(r[2], r[3]);
    const __m256 hi01 = _mm256_unpackhi_ps(r[0], r[1]), hi23 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t01 = _mm256_unpackhi_ps(s[0], s[1]), t23 = _mm256_unpackhi_ps(s[2], s[3]);
    first[0] = _mm256_shuffle_ps(lo01, lo23, LANES_01);
    first[1] = _mm256_shuffle_ps(lo01, lo23, LANES_23);
    first[2] = _mm256_shuffle_ps(hi01, hi23, LANES_01);
    next[0] = _mm256_shuffle_ps(hi01, hi23, LANES_23);
    next[1] = _mm256_shuffle_ps(t01, t23, LANES_01);
    next[2] = _mm256_shuffle_ps(t01, t23, LANES_23);
}

AVX2 static inline __m256 lerp8(__m256 a, __m256 b, __m256 t)
{
    return _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_sub_ps(b, a)));
}

/* Tetrahedral: per case of TETRA_CASES, the offsets of ca and cb and the role (0 largest, 1 middle,
 * 2 smallest fraction) of each axis. */
typedef struct {
    __m256i oa, ob, role[3];
} TetraTables;

AVX2 static TetraTables tetra_tables(int64_t d)
{
    const int stride[3] = {3, 3 * (int)d, 3 * (int)(d * d)};
    int oa[8], ob[8], role[3][8];
    for (int k = 0; k < 8; ++k) {
        const Tetra t = TETRA_CASES[k];
        oa[k] = stride[t.first];
        ob[k] = stride[t.first] + stride[t.second];
        role[t.first][k] = 0, role[t.second][k] = 1, role[t.third][k] = 2;
    }
    TetraTables tt;
    tt.oa = _mm256_loadu_si256((const __m256i *)oa);
    tt.ob = _mm256_loadu_si256((const __m256i *)ob);
    for (int a = 0; a < 3; ++a) tt.role[a] = _mm256_loadu_si256((const __m256i *)role[a]);
    return tt;
}

/* The tetrahedra of 8 pixels: returns the case index; off = element offsets of c000, ca, cb, c111 from
 * the cell origin, w = their weights (1 - f1, f1 - f2, f2 - f3, f3 for the sorted fractions). */
AVX2 static inline __m256i tetra8(const TetraTables *tt, int64_t d, const __m256 f[3], __m256i off[4], __m256 w[4])
{
    /* index 4 (fr >= fg) + 2 (fg >= fb) + (fr >= fb), from the all-ones (-1) compare masks */
    const __m256i ge_rg = _mm256_castps_si256(_mm256_cmp_ps(f[0], f[1], _CMP_GE_OQ));
    const __m256i ge_gb = _mm256_castps_si256(_mm256_cmp_ps(f[1], f[2], _CMP_GE_OQ));
    const __m256i ge_rb = _mm256_castps_si256(_mm256_cmp_ps(f[0], f[2], _CMP_GE_OQ));
    const __m256i k = _mm256_sub_epi32(
        _mm256_setzero_si256(),
        _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(ge_rg, 2), _mm256_slli_epi32(ge_gb, 1)), ge_rb));
    off[0] = _mm256_setzero_si256();
    off[1] = _mm256_permutevar8x32_epi32(tt->oa, k);
    off[2] = _mm256_permutevar8x32_epi32(tt->ob, k);
    off[3] = _mm256_set1_epi32(3 * (int)(1 + d + d * d));
    const __m256 f1 = _mm256_max_ps(_mm256_max_ps(f[0], f[1]), f[2]);
    const __m256 f3 = _mm256_min_ps(_mm256_min_ps(f[0], f[1]), f[2]);
    const __m256 f2 = _mm256_max_ps(_mm256_min_ps(f[0], f[1]), _mm256_min_ps(_mm256_max_ps(f[0], f[1]), f[2]));
    w[0] = _mm256_sub_ps(_mm256_set1_ps(1.0f), f1), w[1] = _mm256_sub_ps(f1, f2), w[2] = _mm256_sub_ps(f2, f3);
    w[3] = f3;
    return k;
}

/* The forward loops take PLAN pixels at a time in two passes: first their cells and weights (into arrays
 * on the stack), then the lookups and blends. One pass per 8 pixels made each step one long chain
 * (coordinates, offsets, loads, blend) that the CPU could not overlap with the next step's; the two
 * passes were 1.25x (trilinear) and 1.3x (tetrahedral) faster, flat from 32 to 256 pixels. */
enum { PLAN = 64 };

AVX2 static int64_t trilinear_avx2_f32(const float *restrict x, int64_t xs, float *restrict out, int64_t os,
                                       int64_t n, const float *restrict lut, int64_t d)
{
    const __m256 nan = _mm256_set1_ps(NAN);
    const int rows[4] = {0, 3 * (int)d, 3 * (int)(d * d), 3 * (int)(d * d + d)}; /* (g, b) = 00 10 01 11 */
    const int64_t done = n / 8 * 8;
    for (int64_t p = 0; p < done; p += PLAN) {
        const int64_t m = done - p < PLAN ? done - p : PLAN;
        uint32_t at[PLAN];
        float fr[3][PLAN], bad[PLAN];
        for (int64_t q = 0; q < m; q += 8) {
            __m256 f[3], isnan;
            _mm256_storeu_si256((__m256i *)(at + q), cells8(x, xs, p + q, d, f, &isnan));
            for (int a = 0; a < 3; ++a) _mm256_storeu_ps(fr[a] + q, f[a]);
            _mm256_storeu_ps(bad + q, isnan);
        }
        for (int64_t q = 0; q < m; q += 8) {
            __m256 f[3], e[4][3]; /* e: per row, per channel, the value lerped along r */
            for (int a = 0; a < 3; ++a) f[a] = _mm256_loadu_ps(fr[a] + q);
            for (int row = 0; row < 4; ++row) {
                __m256 next[3];
                edge8(lut + rows[row], at + q, e[row], next);
                for (int c = 0; c < 3; ++c) e[row][c] = lerp8(e[row][c], next[c], f[0]);
            }
            const __m256 isnan = _mm256_loadu_ps(bad + q);
            for (int c = 0; c < 3; ++c) {
                const __m256 lo = lerp8(e[0][c], e[1][c], f[1]), hi = lerp8(e[2][c], e[3][c], f[1]);
                _mm256_storeu_ps(out + c * os + p + q, _mm256_blendv_ps(lerp8(lo, hi, f[2]), nan, isnan));
            }
        }
    }
    return done;
}

AVX2 static int64_t tetrahedral_avx2_f32(const float *restrict x, int64_t xs, float *restrict out,
                                         int64_t os, int64_t n, const float *restrict lut, int64_t d)
{
    const __m256 nan = _mm256_set1_ps(NAN);
    const TetraTables tt = tetra_tables(d);
    const int64_t o111 = 3 * (1 + d + d * d); /* c111 - c000 */
    const int64_t done = n / 8 * 8;
    for (int64_t p = 0; p < done; p += PLAN) {
        const int64_t m = done - p < PLAN ? done - p : PLAN;
        uint32_t at[3][PLAN]; /* c000, ca, cb (c111 is c000 + o111) */
        float wt[4][PLAN], bad[PLAN];
        for (int64_t q = 0; q < m; q += 8) {
            __m256 f[3], isnan, w[4];
            __m256i off[4];
            const __m256i base = cells8(x, xs, p + q, d, f, &isnan);
            tetra8(&tt, d, f, off, w);
            for (int j = 0; j < 3; ++j) _mm256_storeu_si256((__m256i *)(at[j] + q), _mm256_add_epi32(base, off[j]));
            for (int j = 0; j < 4; ++j) _mm256_storeu_ps(wt[j] + q, w[j]);
            _mm256_storeu_ps(bad + q, isnan);
        }
        for (int64_t q = 0; q < m; q += 8) {
            /* o = w0 c0 + w1 c1 + w2 c2 + w3 c3 as in the scalar loop */
            __m256 o[3];
            for (int j = 0; j < 4; ++j) {
                __m256 corner[3];
                const __m256 wj = _mm256_loadu_ps(wt[j] + q);
                /* c111 may be the LUT's last point */
                corner8(j == 3 ? lut + o111 : lut, at[j == 3 ? 0 : j] + q, j == 3, corner);
                for (int c = 0; c < 3; ++c)
                    o[c] = j == 0 ? _mm256_mul_ps(wj, corner[c]) : _mm256_add_ps(o[c], _mm256_mul_ps(wj, corner[c]));
            }
            const __m256 isnan = _mm256_loadu_ps(bad + q);
            for (int c = 0; c < 3; ++c) _mm256_storeu_ps(out + c * os + p + q, _mm256_blendv_ps(o[c], nan, isnan));
        }
    }
    return done;
}

/* acc[0..5] += (w0 g, w1 g): the LUT gradient of a cell edge along r, whose two corners are 6 consecutive
 * floats, as one 4-float and one 2-float read-modify-write instead of six scalar ones. Each element gets
 * the same product added as in the scalar loop, so the bits are the same. The two parts do not overlap,
 * nor do the edges of one pixel (rows 3D apart), so no load waits on a partly overlapping store. */
AVX2 static inline void add_edge(float *acc, float w0, float w1, __m128 g)
{
    const __m128 g1 = _mm_shuffle_ps(g, g, _MM_SHUFFLE(3, 3, 2, 1)); /* g1 g2 0 0 */
    const __m128 lo = _mm_add_ps(_mm_loadu_ps(acc), _mm_mul_ps(_mm_setr_ps(w0, w0, w0, w1), _mm_shuffle_ps(g, g, _MM_SHUFFLE(0, 2, 1, 0))));
    _mm_storeu_ps(acc, lo);
    const __m128 hi = _mm_castpd_ps(_mm_load_sd((const double *)(acc + 4)));
    _mm_store_sd((double *)(acc + 4), _mm_castps_pd(_mm_add_ps(hi, _mm_mul_ps(_mm_set1_ps(w1), g1))));
}

/* dot3 of the scalar loop, lane-wise: (a0 b0 + a1 b1) + a2 b2. */
AVX2 static inline __m256 dot3_8(const __m256 a[3], const __m256 b[3])
{
    return _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(a[0], b[0]), _mm256_mul_ps(a[1], b[1])), _mm256_mul_ps(a[2], b[2]));
}

/* Backward of pixels p .. p+7, float32, trilinear or tetrahedral, same bits as the scalar loop: the image
 * gradient from corners fetched 8 pixels at a time; the LUT gradient from weights computed 8 at a time
 * and added pixel by pixel in the scalar loop's order, corner by corner (tetrahedral) or cell edge by
 * cell edge (trilinear, add_edge: measured 1.4-1.7x faster for the trilinear LUT gradient alone). */
AVX2 static int64_t vector_backward_f32(const float *restrict x, int64_t xs, const float *restrict go, int64_t gs,
                                        float *restrict gx, int64_t gxs, float *restrict glut, int64_t n,
                                        const float *restrict lut, int64_t d, int interp)
{
    if (d > 812 || interp == NEAREST) return 0; /* offsets are int32: 3 * d^3 < 2^31 */
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 scale = _mm256_set1_ps((float)(d - 1));
    const int rows[4] = {0, 3 * (int)d, 3 * (int)(d * d), 3 * (int)(d * d + d)}; /* (g, b) = 00 10 01 11 */
    const TetraTables tt = tetra_tables(d);
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 f[3], isnan, g[3], dc[3], w[4] = {zero, zero, zero, zero};
        __m256i off[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        uint32_t at[4][8]; /* per pixel, the element offset of c000 (trilinear) or of the 4 corners (tetrahedral) */
        const __m256i base = cells8(x, xs, p, d, f, &isnan);
        for (int c = 0; c < 3; ++c) g[c] = _mm256_loadu_ps(go + c * gs + p);
        if (interp == TETRAHEDRAL) {
            const __m256i k = tetra8(&tt, d, f, off, w);
            for (int j = 0; j < 4; ++j) _mm256_storeu_si256((__m256i *)at[j], _mm256_add_epi32(base, off[j]));
            if (gx) {
                __m256 t[4]; /* <go, corner> */
                for (int j = 0; j < 4; ++j) {
                    __m256 corner[3];
                    corner8(lut, at[j], j == 3, corner);
                    t[j] = dot3_8(g, corner);
                }
                /* out = c000 + f1 (ca - c000) + f2 (cb - ca) + f3 (c111 - cb): the axis in role j moves along step j */
                const __m256 step[3] = {_mm256_sub_ps(t[1], t[0]), _mm256_sub_ps(t[2], t[1]), _mm256_sub_ps(t[3], t[2])};
                for (int a = 0; a < 3; ++a) {
                    const __m256i role = _mm256_permutevar8x32_epi32(tt.role[a], k);
                    const __m256 is0 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(role, _mm256_setzero_si256()));
                    const __m256 is1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(role, _mm256_set1_epi32(1)));
                    dc[a] = _mm256_blendv_ps(_mm256_blendv_ps(step[2], step[1], is1), step[0], is0);
                }
            }
        } else {
            _mm256_storeu_si256((__m256i *)at[0], base);
        }
        if (interp == TRILINEAR && gx) {
            /* A: corner value at r, then lerped along r; E: the step along r; per row and channel */
            __m256 A[4][3], E[4][3];
            for (int row = 0; row < 4; ++row) {
                edge8(lut + rows[row], at[0], A[row], E[row]);
                for (int c = 0; c < 3; ++c) {
                    E[row][c] = _mm256_sub_ps(E[row][c], A[row][c]);
                    A[row][c] = _mm256_add_ps(A[row][c], _mm256_mul_ps(f[0], E[row][c]));
                }
            }
            __m256 dr[3], dg[3], db[3]; /* the blend's partial derivatives along r, g, b, per channel */
            for (int c = 0; c < 3; ++c) {
                const __m256 x0 = lerp8(E[0][c], E[1][c], f[1]), x1 = lerp8(E[2][c], E[3][c], f[1]);
                const __m256 y0 = _mm256_sub_ps(A[1][c], A[0][c]), y1 = _mm256_sub_ps(A[3][c], A[2][c]);
                const __m256 b0 = _mm256_add_ps(A[0][c], _mm256_mul_ps(f[1], y0));
                const __m256 b1 = _mm256_add_ps(A[2][c], _mm256_mul_ps(f[1], y1));
                dr[c] = lerp8(x0, x1, f[2]);
                dg[c] = lerp8(y0, y1, f[2]);
                db[c] = _mm256_sub_ps(b1, b0);
            }
            dc[0] = dot3_8(g, dr);
            dc[1] = dot3_8(g, dg);
            dc[2] = dot3_8(g, db);
        }
        if (gx) {
            for (int a = 0; a < 3; ++a) {
                /* zero outside [0, 1] (the gradient of clamp) and for NaN pixels */
                const __m256 v = _mm256_loadu_ps(x + a * xs + p);
                const __m256 in = _mm256_andnot_ps(isnan, _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ),
                                                                         _mm256_cmp_ps(v, one, _CMP_LE_OQ)));
                _mm256_storeu_ps(gx + a * gxs + p, _mm256_and_ps(in, _mm256_mul_ps(dc[a], scale)));
            }
        }
        if (glut) {
            float wt[8][8], gv[3][8];
            if (interp == TRILINEAR) {
                const __m256 r0 = _mm256_sub_ps(one, f[0]), r1 = f[0];
                const __m256 g0 = _mm256_sub_ps(one, f[1]), b0 = _mm256_sub_ps(one, f[2]);
                const __m256 wgb[4] = {_mm256_mul_ps(g0, b0), _mm256_mul_ps(f[1], b0), _mm256_mul_ps(g0, f[2]),
                                       _mm256_mul_ps(f[1], f[2])};
                for (int row = 0; row < 4; ++row) {
                    _mm256_storeu_ps(wt[2 * row], _mm256_mul_ps(wgb[row], r0));
                    _mm256_storeu_ps(wt[2 * row + 1], _mm256_mul_ps(wgb[row], r1));
                }
            } else {
                for (int j = 0; j < 4; ++j) _mm256_storeu_ps(wt[j], w[j]);
            }
            for (int c = 0; c < 3; ++c) _mm256_storeu_ps(gv[c], g[c]);
            const int nan_bits = _mm256_movemask_ps(isnan);
            for (int q = 0; q < 8; ++q) { /* NaN pixels contribute nothing */
                if (nan_bits >> q & 1 || interp != TRILINEAR) continue;
                const __m128 g3 = _mm_setr_ps(gv[0][q], gv[1][q], gv[2][q], 0.0f);
                for (int row = 0; row < 4; ++row) /* the edge from c000 + rows[row]; add_edge writes both corners */
                    add_edge(glut + rows[row] + at[0][q], wt[2 * row][q], wt[2 * row + 1][q], g3);
            }
            for (int q = 0; q < 8; ++q) {
                if (nan_bits >> q & 1 || interp != TETRAHEDRAL) continue;
                for (int j = 0; j < 4; ++j) {
                    float *acc = glut + at[j][q];
                    for (int c = 0; c < 3; ++c) acc[c] += wt[j][q] * gv[c][q];
                }
            }
        }
    }
    return p;
}

AVX2 static int64_t vector_forward_f32(const float *x, int64_t xs, float *out, int64_t os, int64_t n,
                                       const float *lut, int64_t d, int interp)
{
    if (d > 812) return 0; /* offsets are int32: 3 * d^3 < 2^31 */
    if (interp == TRILINEAR) return trilinear_avx2_f32(x, xs, out, os, n, lut, d);
    if (interp == TETRAHEDRAL) return tetrahedral_avx2_f32(x, xs, out, os, n, lut, d);
    return 0;
}
#else
static int cpu_has_avx2(void) { return 0; }
static int64_t vector_backward_f32(const float *x, int64_t xs, const float *go, int64_t gs, float *gx, int64_t gxs,
                                   float *glut, int64_t n, const float *lut, int64_t d, int interp)
{
    (void)x, (void)xs, (void)go, (void)gs, (void)gx, (void)gxs, (void)glut, (void)n, (void)lut, (void)d, (void)interp;
    return 0;
}
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

/* Gradients of sum(out * go) for n pixels: the image gradient gx (3 planes, stride gxs; NULL to skip)
 * is written, the LUT gradient is ADDED to glut (one (D,D,D,3) accumulator that no other thread
 * touches; NULL to skip). NaN pixels contribute nothing; the image gradient is zero where a channel is
 * outside [0, 1] or NaN (the gradient of clamp) and for nearest (piecewise constant). simd = 0 keeps to
 * the scalar loop. */
void lut_backward_f32(const float *x, int64_t xs, const float *go, int64_t gs, float *gx, int64_t gxs, float *glut,
                      int64_t n, const float *lut, int64_t d, int interp, int simd)
{
    warm_f32(lut, d, n);
    const int64_t done =
        simd && cpu_has_avx2() ? vector_backward_f32(x, xs, go, gs, gx, gxs, glut, n, lut, d, interp) : 0;
    backward_scalar_f32(x, xs, go, gs, gx, gxs, glut, n, lut, d, interp, done);
}

void lut_backward_f64(const double *x, int64_t xs, const double *go, int64_t gs, double *gx, int64_t gxs,
                      double *glut, int64_t n, const double *lut, int64_t d, int interp, int simd)
{
    (void)simd;
    warm_f64(lut, d, n);
    backward_scalar_f64(x, xs, go, gs, gx, gxs, glut, n, lut, d, interp, 0);
}

/* Grade n pixels of interleaved RGB integer codes in place (codes[3 * p + c]; uint8 when bytes == 1,
 * uint16 when bytes == 2, full scale top = 2^(8 bytes) - 1) with one float32 LUT: the same bits as
 * converting the codes to float32 (code / top), applying lut_forward_f32 and converting back as
 * lutkern.imageio.to_integer_array does (clamp to [0, 1], times top and round half to even, in double),
 * without the three passes over the whole image that costs in torch. Blocks of BLOCK pixels go through
 * planar float buffers on the stack, small enough to stay in the first cache levels. */
enum { BLOCK = 1024 };

void lut_grade_codes(void *codes, int bytes, int64_t n, const float *lut, int64_t d, int interp, int simd)
{
    const double top = bytes == 1 ? 255.0 : 65535.0;
    const float topf = (float)top;
    float x[3 * BLOCK], out[3 * BLOCK];
    uint8_t *c8 = codes;
    uint16_t *c16 = codes;
    warm_f32(lut, d, n);
    for (int64_t p0 = 0; p0 < n; p0 += BLOCK) {
        const int64_t m = n - p0 < BLOCK ? n - p0 : BLOCK;
        for (int64_t p = 0; p < m; ++p)
            for (int c = 0; c < 3; ++c)
                x[c * BLOCK + p] = (float)(bytes == 1 ? c8[3 * (p0 + p) + c] : c16[3 * (p0 + p) + c]) / topf;
        const int64_t done =
            simd && cpu_has_avx2() ? vector_forward_f32(x, BLOCK, out, BLOCK, m, lut, d, interp) : 0;
        forward_scalar_f32(x, BLOCK, out, BLOCK, m, lut, d, interp, done);
        for (int64_t p = 0; p < m; ++p)
            for (int c = 0; c < 3; ++c) {
                double v = out[c * BLOCK + p];
                v = v < 0 ? 0 : (v > 1 ? 1 : v);
                const int64_t code = round_even_f64(v * top);
                if (bytes == 1)
                    c8[3 * (p0 + p) + c] = (uint8_t)code;
                else
                    c16[3 * (p0 + p) + c] = (uint16_t)code;
            }
    }
}

/* n interleaved 8-bit RGB pixels replaced in place by their entries in `graded`: every 8-bit colour graded
 * by lut_grade_codes, graded[((b * 256 + g) * 256 + r) * 3 + c] (red fastest, like a LUT). A lookup per
 * pixel instead of an interpolation: the same codes, bit for bit (each pixel's result depends on its codes
 * alone), at a fraction of the work. */
void lut_look_up_u8(uint8_t *codes, int64_t n, const uint8_t *graded)
{
    for (int64_t p = 0; p < n; ++p) {
        uint8_t *c = codes + 3 * p;
        const uint8_t *g = graded + 3 * ((int64_t)c[0] | (int64_t)c[1] << 8 | (int64_t)c[2] << 16);
        c[0] = g[0];
        c[1] = g[1];
        c[2] = g[2];
    }
}

/* 1 when the float32 loops use the AVX2 paths (for tests). */
int lut_has_simd(void) { return cpu_has_avx2(); }

