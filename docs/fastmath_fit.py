"""The polynomial of src/engine/fastmath.rs: e^r - 1 ~ r + r^2 * (C2 + C3 r + ... + C7 r^5)
on |r| <= ln(2)/2, minimax in relative error, then rounded to f32.

Lawson's algorithm (iteratively reweighted least squares, which converges to the minimax
fit) on Chebyshev points, in 30-digit arithmetic. Needs only mpmath; takes about a minute.

    python3 docs/fastmath_fit.py
"""

import struct

import mpmath as mp

mp.mp.dps = 30
TERMS = 6  # C2..C7
POINTS = 1500
ITERATIONS = 150
# Rounding x*log2(e) in f32 can leave |r| a hair past ln(2)/2.
HALF = mp.log(2) / 2 * (1 + mp.mpf(2) ** -20)


def to_f32(v):
    return struct.unpack("<f", struct.pack("<f", float(v)))[0]


def f32_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


points = [HALF * mp.cos(mp.pi * (i + mp.mpf(1) / 2) / POINTS) for i in range(POINTS)]
basis = [[r ** (k + 2) for k in range(TERMS)] for r in points]
target = [mp.expm1(r) - r for r in points]
weight = [1 / abs(mp.expm1(r)) for r in points]  # relative error

u = [mp.mpf(1)] * POINTS
for _ in range(ITERATIONS):
    a = mp.zeros(TERMS, TERMS)
    b = mp.zeros(TERMS, 1)
    for row, t, w, ui in zip(basis, target, weight, u):
        s = ui * w * w
        for j in range(TERMS):
            b[j] += s * row[j] * t
            for k in range(TERMS):
                a[j, k] += s * row[j] * row[k]
    c = mp.lu_solve(a, b)
    err = [w * abs(sum(c[k] * row[k] for k in range(TERMS)) - t) for row, t, w in zip(basis, target, weight)]
    total = sum(ui * e for ui, e in zip(u, err))
    u = [ui * e / total for ui, e in zip(u, err)]

coefficients = [to_f32(c[k]) for k in range(TERMS)]
for k, v in enumerate(coefficients):
    print(f"C{k + 2} = {v!r:24} bits {f32_bits(v):#010x}   (1/{k + 2}! = {float(1 / mp.factorial(k + 2))!r})")

worst = max(
    abs((r + sum(mp.mpf(coefficients[k]) * r ** (k + 2) for k in range(TERMS))) / mp.expm1(r) - 1)
    for r in (HALF * mp.mpf(i) / 20000 for i in range(-20000, 20001) if i != 0)
)
print(f"max relative error with the f32 coefficients, exact arithmetic: {mp.nstr(worst, 3)}")
