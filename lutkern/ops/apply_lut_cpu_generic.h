/* Kernels of apply_lut_cpu.c for one element type: included with T (float or double) and SUF(name)
 * (appends the type suffix) defined. Conventions are in apply_lut_cpu.c.
 *
 * A lattice point's (R, G, B) is handled as one 4-lane vector (GCC/clang vector extensions: SSE on
 * x86-64, NEON on ARM): one unaligned load fetches R, G, B and the next point's R (lane 3, never used
 * in a result), a third of the loads of scalar code (measured 1.9x faster for the trilinear forward).
 * The one load that would read past the LUT, at its last point, reads three lanes instead. */

typedef T SUF(vec) __attribute__((vector_size(4 * sizeof(T))));
#define V SUF(vec)

static inline V SUF(load4)(const T *p)
{
    V v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline V SUF(load3)(const T *p) { return (V){p[0], p[1], p[2], 0}; }

/* The point at offset o of the LUT of d^3 points; ``last`` is the offset of its last point. */
static inline V SUF(point)(const T *lut, int64_t o, int64_t last)
{
    return o == last ? SUF(load3)(lut + o) : SUF(load4)(lut + o);
}

static inline T SUF(dot3)(V a, V b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* glut[o .. o+2] += w * g. Lane by lane: neighbouring corners' vectors overlap, and a 4-lane store
 * followed by an overlapping load stalls store forwarding (measured 1.5x slower). */
static inline void SUF(add_corner)(T *glut, int64_t o, T w, V g)
{
    for (int c = 0; c < 3; ++c) glut[o + c] += w * g[c];
}

static inline T SUF(clamp01)(T v) { return v < 0 ? (T)0 : (v > 1 ? (T)1 : v); }

/* The cell of one pixel: offset of c000 (in elements) and the three fractions. */
static inline int64_t SUF(cell)(const T s[3], int64_t d, T f[3])
{
    int64_t i[3];
    for (int a = 0; a < 3; ++a) {
        i[a] = (int64_t)s[a]; /* s >= 0, so truncation is floor */
        if (i[a] > d - 2) i[a] = d - 2;
        f[a] = s[a] - (T)i[a];
    }
    return ((i[2] * d + i[1]) * d + i[0]) * 3;
}

/* round(v) half to even for 0 <= v < 2^23 (float) / 2^52 (double), as torch.round: adding and
 * subtracting 2^23 (2^52) rounds to an integer in the default rounding mode, without the library call
 * nearbyint costs where the compiler may not assume SSE4.1. */
static inline int64_t SUF(round_even)(T v)
{
    const T big = sizeof(T) == 4 ? (T)8388608.0 : (T)4503599627370496.0;
    return (int64_t)((v + big) - big);
}

static inline int64_t SUF(nearest)(const T s[3], int64_t d)
{
    return ((SUF(round_even)(s[2]) * d + SUF(round_even)(s[1])) * d + SUF(round_even)(s[0])) * 3;
}

/* Read the LUT once in memory order when the call has enough pixels to touch most of it: a sequential
 * read is prefetched by the hardware, whereas the lookups would fetch its cache lines in random order
 * (measured 1.8x faster on uniform random pixels with a LUT not yet in cache). */
static inline void SUF(warm)(const T *lut, int64_t d, int64_t n)
{
    const int64_t size = 3 * d * d * d;
    if (4 * n < d * d * d) return;
    T acc = 0;
    for (int64_t i = 0; i < size; i += 64 / sizeof(T)) acc += lut[i];
    volatile T sink = acc;
    (void)sink;
}

/* Lattice coordinates of pixel p; returns 0 when a channel is NaN. */
static inline int SUF(coords)(const T *x, int64_t xs, int64_t p, T scale, T v[3], T s[3])
{
    v[0] = x[p];
    v[1] = x[xs + p];
    v[2] = x[2 * xs + p];
    if (isnan(v[0]) || isnan(v[1]) || isnan(v[2])) return 0;
    for (int a = 0; a < 3; ++a) s[a] = SUF(clamp01)(v[a]) * scale;
    return 1;
}

/* The forward of pixels p0 .. n-1 (the contract is at lut_forward_f32 in apply_lut_cpu.c). */
static void SUF(forward_scalar)(const T *restrict x, int64_t xs, T *restrict out, int64_t os, int64_t n,
                                const T *restrict lut, int64_t d, int interp, int64_t p0)
{
    const T scale = (T)(d - 1);
    const int64_t sr = 3, sg = 3 * d, sb = 3 * d * d, last = 3 * (d * d * d - 1);
    const int64_t stride[3] = {sr, sg, sb};
    for (int64_t p = p0; p < n; ++p) {
        T v[3], s[3], f[3];
        V o;
        if (!SUF(coords)(x, xs, p, scale, v, s)) {
            out[p] = out[os + p] = out[2 * os + p] = (T)NAN;
            continue;
        }
        if (interp == NEAREST) {
            o = SUF(load3)(lut + SUF(nearest)(s, d));
        } else if (interp == TRILINEAR) {
            const int64_t b = SUF(cell)(s, d, f);
            const T *c = lut + b;
            V a00 = SUF(load4)(c), a10 = SUF(load4)(c + sg), a01 = SUF(load4)(c + sb);
            V a11 = SUF(load4)(c + sb + sg);
            a00 += f[0] * (SUF(load4)(c + sr) - a00);
            a10 += f[0] * (SUF(load4)(c + sg + sr) - a10);
            a01 += f[0] * (SUF(load4)(c + sb + sr) - a01);
            a11 += f[0] * (SUF(point)(lut, b + sb + sg + sr, last) - a11);
            a00 += f[1] * (a10 - a00);
            a01 += f[1] * (a11 - a01);
            o = a00 + f[2] * (a01 - a00);
        } else {
            const int64_t b = SUF(cell)(s, d, f);
            Tetra t = tetra_case(f[0], f[1], f[2]);
            const int64_t oa = stride[t.first], ob = oa + stride[t.second];
            T f1 = f[t.first], f2 = f[t.second], f3 = f[t.third];
            const T *c = lut + b;
            o = (1 - f1) * SUF(load4)(c) + (f1 - f2) * SUF(load4)(c + oa) + (f2 - f3) * SUF(load4)(c + ob) +
                f3 * SUF(point)(lut, b + sr + sg + sb, last);
        }
        out[p] = o[0];
        out[os + p] = o[1];
        out[2 * os + p] = o[2];
    }
}

/* The backward of pixels p0 .. n-1 (the contract is at lut_backward_f32 in apply_lut_cpu.c). */
static void SUF(backward_scalar)(const T *restrict x, int64_t xs, const T *restrict go, int64_t gs,
                                 T *restrict gx, int64_t gxs, T *restrict glut, int64_t n,
                                 const T *restrict lut, int64_t d, int interp, int64_t p0)
{
    const T scale = (T)(d - 1);
    const int64_t sr = 3, sg = 3 * d, sb = 3 * d * d, last = 3 * (d * d * d - 1);
    const int64_t stride[3] = {sr, sg, sb};
    for (int64_t p = p0; p < n; ++p) {
        T v[3], s[3], f[3], dc[3] = {0, 0, 0};
        const V g = {go[p], go[gs + p], go[2 * gs + p], 0};
        if (!SUF(coords)(x, xs, p, scale, v, s)) {
            if (gx) gx[p] = gx[gxs + p] = gx[2 * gxs + p] = 0;
            continue;
        }
        if (interp == NEAREST) {
            if (glut) SUF(add_corner)(glut, SUF(nearest)(s, d), 1, g);
            if (gx) gx[p] = gx[gxs + p] = gx[2 * gxs + p] = 0;
            continue;
        }
        const int64_t b = SUF(cell)(s, d, f);
        if (interp == TRILINEAR) {
            if (gx) {
                /* The partial derivatives of the blend along r, g and b, as vectors, then <go, .>. */
                const T *c = lut + b;
                V e00 = SUF(load4)(c + sr), e10 = SUF(load4)(c + sg + sr), e01 = SUF(load4)(c + sb + sr);
                V e11 = SUF(point)(lut, b + sb + sg + sr, last);
                V a00 = SUF(load4)(c), a10 = SUF(load4)(c + sg), a01 = SUF(load4)(c + sb);
                V a11 = SUF(load4)(c + sb + sg);
                e00 -= a00, e10 -= a10, e01 -= a01, e11 -= a11; /* steps along r */
                a00 += f[0] * e00, a10 += f[0] * e10, a01 += f[0] * e01, a11 += f[0] * e11;
                V x0 = e00 + f[1] * (e10 - e00), x1 = e01 + f[1] * (e11 - e01);
                V y0 = a10 - a00, y1 = a11 - a01; /* steps along g */
                V b0 = a00 + f[1] * y0, b1 = a01 + f[1] * y1;
                dc[0] = SUF(dot3)(g, x0 + f[2] * (x1 - x0));
                dc[1] = SUF(dot3)(g, y0 + f[2] * (y1 - y0));
                dc[2] = SUF(dot3)(g, b1 - b0);
            }
            if (glut) {
                const T r0 = 1 - f[0], r1 = f[0];
                const T w00 = (1 - f[1]) * (1 - f[2]), w10 = f[1] * (1 - f[2]); /* weights of (g, b) */
                const T w01 = (1 - f[1]) * f[2], w11 = f[1] * f[2];
                SUF(add_corner)(glut, b, w00 * r0, g);
                SUF(add_corner)(glut, b + sr, w00 * r1, g);
                SUF(add_corner)(glut, b + sg, w10 * r0, g);
                SUF(add_corner)(glut, b + sg + sr, w10 * r1, g);
                SUF(add_corner)(glut, b + sb, w01 * r0, g);
                SUF(add_corner)(glut, b + sb + sr, w01 * r1, g);
                SUF(add_corner)(glut, b + sb + sg, w11 * r0, g);
                SUF(add_corner)(glut, b + sb + sg + sr, w11 * r1, g);
            }
        } else {
            Tetra tc = tetra_case(f[0], f[1], f[2]);
            const int64_t off[4] = {b, b + stride[tc.first], b + stride[tc.first] + stride[tc.second],
                                    b + sr + sg + sb};
            T f1 = f[tc.first], f2 = f[tc.second], f3 = f[tc.third];
            const T w[4] = {1 - f1, f1 - f2, f2 - f3, f3};
            if (gx) {
                T t[4];
                for (int k = 0; k < 4; ++k) t[k] = SUF(dot3)(g, SUF(point)(lut, off[k], last));
                /* out = c000 + f1 (ca - c000) + f2 (cb - ca) + f3 (c111 - cb) */
                dc[tc.first] = t[1] - t[0];
                dc[tc.second] = t[2] - t[1];
                dc[tc.third] = t[3] - t[2];
            }
            if (glut) {
                for (int k = 0; k < 4; ++k) SUF(add_corner)(glut, off[k], w[k], g);
            }
        }
        if (gx) {
            for (int a = 0; a < 3; ++a) gx[a * gxs + p] = (v[a] >= 0 && v[a] <= 1) ? dc[a] * scale : 0;
        }
    }
}

#undef V
