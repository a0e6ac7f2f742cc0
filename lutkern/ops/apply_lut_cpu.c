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

static Tetra tetra_case(double fr, double fg, double fb)
{
    /* index 4 (fr >= fg) + 2 (fg >= fb) + (fr >= fb); 1 and 6 cannot occur */
    static const Tetra cases[8] = {
        {2, 1, 0}, {0, 1, 2}, {1, 2, 0}, {1, 0, 2}, {2, 0, 1}, {0, 2, 1}, {0, 1, 2}, {0, 1, 2},
    };
    return cases[4 * (fr >= fg) + 2 * (fg >= fb) + (fr >= fb)];
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
