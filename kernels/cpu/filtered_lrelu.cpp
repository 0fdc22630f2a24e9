// Fused filtered_lrelu for CPUs, float32, forward and backward (kernels/cpu_ext.py builds, loads and
// calls it).
//
// Forward: y = down(clamp(gain * lrelu(up(x + b)))), the chain of kernels/_ref.py's filtered_lrelu.
// Work is split into (plane = image x channel, band of output rows) items, run in parallel with
// OpenMP; a thread streams through its band one upsampled row at a time, so nothing is ever held at
// full resolution and every upsampled row is computed once per band (bands are tall: neighbours only
// recompute the down filter's overlap):
//
//   1. the input rows that row reads, plus the bias (a small ring of rows; no copy without a bias),
//   2. vertical polyphase upsampling (only the non-zero taps of the row's phase) -> one row V,
//   3. horizontal polyphase upsampling of V, stored by phase ("phase planes": P[p][m] is upsampled
//      column R*m + p, R = lcm(up, down)), each phase a sliding dot product over V's contiguous
//      values, the activation (leaky ReLU, gain, clamp) applied as it is stored,
//   4a. separable down filter: along x, only the kept columns (each output phase s reads contiguous
//       runs of the phase planes) -> a ring of td rows; when the last row an output row needs is in,
//       the vertical filter makes that output row;
//   4b. 2-D (radial) down filter: a ring of td activated rows; each output row is one sum over the
//       td x td taps, every tap a contiguous run of a phase plane. A filter symmetric along y (radial
//       filters are) first sums the row pairs (ky, td - 1 - ky), then takes half the taps. Done along
//       x in tiles (down_radial), so that the pair sums are still in L1 when the taps read them (the
//       full-row pair buffer, 50 KB at 1024 px, went back and forth to L2); with two output column
//       phases (up 4, down 2) both are made in one pass, phase 1's tap kx reading the run phase 0's
//       tap kx + down reads, so each loaded vector feeds two FMAs. The sums keep the order of the
//       earlier one-pass version (bit-identical results); over the R-1024 layers at batch 1 (2
//       threads) the forward went from 2.6 to 2.1 s (output already mapped; 3.4 -> 3.0 s when each
//       call's output is freshly allocated, its page faults included).
//
// Backward (charm_filtered_lrelu_backward_f32): gx = dL/dx = dL/d(x + b) = Up^T(act'(Z) * Down^T(gy)),
// with Z, the upsampled plane before the activation, recomputed from x and b (steps 1-3 above without
// the activation); the caller sums gx for the bias gradient. Items are (plane, band of gx rows); a
// thread makes the upsampled rows its band needs in order, each once:
//
//   a. Z row j as phase planes (steps 1-3),
//   b. Down^T(gy) row j: the gy rows that read row j (a ring, each stored by output column phase with
//      zero margins), combined with their vertical taps (separable), then per phase plane p the
//      polyphase transposed filter along x (every tap a contiguous run); a 2-D filter does both in one
//      sum over the (gy row, tap) pairs; times act'(Z) (gain * (z > 0 ? 1 : slope), 0 where the clamp
//      cuts) as it is stored,
//   c. Up_x^T: the transposed horizontal up pass (a strided down-sampling by `up` with every tap, read
//      from the phase planes as contiguous runs) -> row j of gV, in a ring of tu rows,
//   d. when the last gV row a gx row reads is in, Up_y^T: that gx row, a sum of up to tu gV rows.
//
// Every gx row is computed alike whatever the bands and threads, so gx does not depend on them. Memory
// stays bounded by per-thread buffers of a few rows, as in the forward.
//
// Every pass is a sum of contiguous runs times scalar taps; the loop over a run's elements
// vectorises (blocks of 32 accumulators kept in registers, FMA). The taps come in prepared (flipped,
// gains folded in) from Python; padding may be negative (crops); a missing filter is a single unit
// tap. Factors: up and down 1..4 with lcm(up, down) <= 4. Plain C++17, no torch headers; the entry
// points are charm_filtered_lrelu_f32 and charm_filtered_lrelu_backward_f32 (extern "C").

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#pragma GCC diagnostic ignored "-Wpsabi"  // v8 values passed without AVX (the baseline build)

namespace {

struct Act {
    float gain;
    float slope;
    float clamp;  // < 0: none
};

inline float activate(float v, const Act& a) {
    v = v >= 0.0f ? v : v * a.slope;
    v *= a.gain;
    if (a.clamp >= 0.0f) v = std::min(std::max(v, -a.clamp), a.clamp);
    return v;
}

// 8 floats in a vector register (GCC/Clang vector extensions: AVX with -mavx2, else two SSE halves).
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef int i8 __attribute__((vector_size(32)));

inline v8 load(const float* p) { return *reinterpret_cast<const v8u*>(p); }
inline void store(float* p, v8 v) { *reinterpret_cast<v8u*>(p) = v; }
inline v8 splat(float a) { return v8{a, a, a, a, a, a, a, a}; }

inline v8 activate(v8 v, const Act& a) {
    const v8 zero = splat(0.0f);
    v = v >= zero ? v : v * splat(a.slope);
    v *= splat(a.gain);
    if (a.clamp >= 0.0f) {
        const v8 hi = splat(a.clamp), lo = splat(-a.clamp);
        v = v > hi ? hi : v;
        v = v < lo ? lo : v;
    }
    return v;
}

// acc[i] = sum_t coef[t] * ptr[t][x + i] (8 values each), i < NV, T >= 1, summed in tap order; the NV
// accumulators stay in registers once inlined.
template <int NV>
__attribute__((always_inline)) inline void accumulate(v8* acc, const float* const* ptr, const float* __restrict coef,
                                                      int T, int x) {
    {
        const float* s = ptr[0] + x;
        const v8 c = splat(coef[0]);
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) acc[i] = c * load(s + 8 * i);
    }
    for (int t = 1; t < T; ++t) {
        const float* s = ptr[t] + x;
        const v8 c = splat(coef[t]);
#pragma GCC unroll 8
        for (int i = 0; i < NV; ++i) acc[i] += c * load(s + 8 * i);
    }
}

// The same for one value (the tails of the rows).
inline float accumulate1(const float* const* ptr, const float* __restrict coef, int T, int x) {
    float a = coef[0] * ptr[0][x];
    for (int t = 1; t < T; ++t) a += coef[t] * ptr[t][x];
    return a;
}

// out[x + i] = sum_t coef[t] * ptr[t][x + i], i < 8 * NV (T >= 1), optionally activated.
template <bool ACT, int NV>
inline void combine_block(float* __restrict out, const float* const* ptr, const float* __restrict coef, int T,
                          int x, const Act& act) {
    v8 acc[NV];
    accumulate<NV>(acc, ptr, coef, T, x);
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) store(out + x + 8 * i, ACT ? activate(acc[i], act) : acc[i]);
}

// out[i] = sum_t coef[t] * ptr[t][i], i < n (T >= 1), optionally activated.
template <bool ACT>
void combine(float* __restrict out, const float* const* ptr, const float* __restrict coef, int T, int n,
             const Act& act) {
    int x = 0;
    for (; x + 64 <= n; x += 64) combine_block<ACT, 8>(out, ptr, coef, T, x, act);
    for (; x + 32 <= n; x += 32) combine_block<ACT, 4>(out, ptr, coef, T, x, act);
    for (; x + 8 <= n; x += 8) combine_block<ACT, 1>(out, ptr, coef, T, x, act);
    for (; x < n; ++x) {
        const float a = accumulate1(ptr, coef, T, x);
        out[x] = ACT ? activate(a, act) : a;
    }
}

// The same with runs read at a stride (the rare up 1, down 2 chains: phase planes of a row that was
// not upsampled).
template <bool ACT>
void combine_strided(float* __restrict out, const float* const* ptr, const float* __restrict coef, int T, int n,
                     int stride, const Act& act) {
    for (int x = 0; x < n; ++x) {
        float a = coef[0] * ptr[0][x * stride];
        for (int t = 1; t < T; ++t) a += coef[t] * ptr[t][x * stride];
        out[x] = ACT ? activate(a, act) : a;
    }
}

inline int posmod(int a, int b) { return ((a % b) + b) % b; }
inline int ceildiv(int a, int b) { return (a + b - 1) / b; }
inline int round8(int a) { return (a + 7) & ~7; }

// Upsampled columns per tile of the 2-D down filter (down_radial): its pair sums, about 25 KB, stay in
// L1 (smaller tiles measured no faster on the 1024 px layers).
#ifndef TILE_COLUMNS
#define TILE_COLUMNS 1024
#endif

// Output j of a polyphase upsampling pass (taps h[0..tu), correlation, padding p0 before) reads input
// i = (j - p0 + k) / up for the taps k = k0 + t * up, k0 = (p0 - j) mod up: the phase's taps.
struct Phases {
    int up = 1;
    int count[4] = {0, 0, 0, 0};
    std::vector<float> coef[4];  // coef[ph][t] = h[ph + t * up]
    void init(const float* h, int tu, int up_) {
        up = up_;
        for (int ph = 0; ph < up; ++ph) {
            coef[ph].clear();
            for (int k = ph; k < tu; k += up) coef[ph].push_back(h[k]);
            count[ph] = static_cast<int>(coef[ph].size());
        }
    }
    // For output j: the input index of its first tap, the taps kept within [0, n) and their coefficients.
    inline void taps_for(int j, int p0, int n, int& i0, int& t0, int& t1, const float*& c) const {
        const int m = j - p0;
        const int ph = posmod(-m, up);
        i0 = (m + ph) / up;  // exact: m + ph is a multiple of up
        t0 = std::max(0, -i0);
        t1 = std::min(count[ph], n - i0);
        c = coef[ph].data();
    }
};

struct Problem {
    const float* x;
    float* y;
    const float* bias;
    int channels, h, w;
    int up, px0, py0, tu;
    Phases pv;  // vertical up taps by phase
    const float* hv_all;  // the tu up taps along y and x (the backward uses every one)
    const float* hcoef_all;
    // Horizontal up into R phase planes: plane p uses taps hcoef[p] (hcount[p] of them) on V[hoff[p] +
    // t + (R / up) * m].
    int R;
    int hcount[4];
    int hoff[4];
    std::vector<float> hcoef[4];
    int mw;                          // values per phase plane (ceil(wz / R))
    int vlo, vlen;                   // V's zero margin before column 0, and its stored length
    int mws;                         // stride of the phase planes
    const float* hd;                 // separable down taps (td), or null
    int td;
    const float* hd2;                // 2-D down taps [td2y][td2x], or null
    int td2y, td2x;
    int down, hz, wz, ho, wo;
    int S, rw, rws;                  // output column phases (R / down), values per phase, their stride
    bool sym;                        // hd2's rows ky and td2y - 1 - ky are equal
    Act act;
    int band;  // output rows per band
};

struct Buffer {
    std::vector<float> data;
    float* get(std::size_t n) {
        if (data.size() < n) data.assign(n, 0.0f);
        return data.data();
    }
};

// Make the output row y[0..wo) from its S phases (phase s, value r -> column S * r + s).
inline void store_row(float* __restrict y, const float* __restrict ph, int S, int rws, int wo) {
    if (S == 1) {
        std::memcpy(y, ph, sizeof(float) * wo);
        return;
    }
    if (S == 2) {
        const float* a = ph;
        const float* b = ph + rws;
        const int n = wo / 2;
        for (int r = 0; r < n; ++r) {
            y[2 * r] = a[r];
            y[2 * r + 1] = b[r];
        }
        if (wo & 1) y[wo - 1] = a[n];
        return;
    }
    for (int o = 0; o < wo; ++o) y[o] = ph[(o % S) * rws + o / S];
}

// Steps 1-3 of one plane and band: upsampled row j (rows only go up) as R phase planes, activated
// (forward) or not (the backward's recomputation).
struct UpRows {
    const Problem* P = nullptr;
    const float* xin = nullptr;
    float* xring = nullptr;  // input rows plus bias (row i in slot i % xcap); null without a bias
    int xcap = 0, ws = 0;
    float b = 0.0f;
    int loaded = -1;  // highest input row in the ring
    float* Vrow = nullptr;

    void begin(const Problem& Pr, int plane, Buffer& xring_b, Buffer& v_b) {
        P = &Pr;
        xin = Pr.x + static_cast<std::size_t>(plane) * Pr.h * Pr.w;
        xcap = Pr.pv.count[0] + 1;
        ws = round8(Pr.w);
        xring = Pr.bias ? xring_b.get(static_cast<std::size_t>(xcap) * ws) : nullptr;
        b = Pr.bias ? Pr.bias[plane % Pr.channels] : 0.0f;
        loaded = -1;
        float* V = v_b.get(static_cast<std::size_t>(Pr.vlen));  // zero margins stay zero
        std::memset(V, 0, sizeof(float) * Pr.vlen);
        Vrow = V + Pr.vlo;
    }

    // Phase plane p of row j into Pj + p * mws (mw values); ptrs holds at least max(tu, 1) entries.
    template <bool ACT>
    void row(int j, float* Pj, const float** ptrs) {
        const Problem& Q = *P;
        const Act none{1.0f, 1.0f, -1.0f};
        const int w = Q.w, h = Q.h, R = Q.R;
        // 1-2. vertical upsampling -> V[0..w)
        int i0, t0, t1;
        const float* c;
        Q.pv.taps_for(j, Q.py0, h, i0, t0, t1, c);
        if (t0 >= t1) {
            std::memset(Vrow, 0, sizeof(float) * w);
        } else {
            if (xring && loaded < i0 + t0 - 1) loaded = i0 + t0 - 1;  // rows below are never read again
            for (int t = t0; t < t1; ++t) {
                const int i = i0 + t;
                if (xring) {
                    while (loaded < i) {
                        ++loaded;
                        float* dst = xring + static_cast<std::size_t>(loaded % xcap) * ws;
                        const float* src = xin + static_cast<std::size_t>(loaded) * w;
                        for (int q = 0; q < w; ++q) dst[q] = src[q] + b;
                    }
                    ptrs[t - t0] = xring + static_cast<std::size_t>(i % xcap) * ws;
                } else {
                    ptrs[t - t0] = xin + static_cast<std::size_t>(i) * w;
                }
            }
            combine<false>(Vrow, ptrs, c + t0, t1 - t0, w, none);
        }
        // 3. horizontal upsampling into phase planes (activated for the forward)
        for (int p = 0; p < R; ++p) {
            float* dst = Pj + static_cast<std::size_t>(p) * Q.mws;
            const int T = Q.hcount[p];
            if (T == 0) {
                std::fill(dst, dst + Q.mw, ACT ? activate(0.0f, Q.act) : 0.0f);
                continue;
            }
            const int istride = R / Q.up;
            for (int t = 0; t < T; ++t) ptrs[t] = Vrow + Q.hoff[p] + t;
            if (istride == 1)
                combine<ACT>(dst, ptrs, Q.hcoef[p].data(), T, Q.mw, Q.act);
            else
                combine_strided<ACT>(dst, ptrs, Q.hcoef[p].data(), T, Q.mw, istride, Q.act);
        }
    }
};

// The 2-D down filter for (a tile of) one output row: out[s * os + x] = sum over rows ky < nr and taps
// kx < tdx of h[ky][kx] * src[ky * nq + down * s + kx][x], x < n (a multiple of 8). src[ky * nq + q]
// points at the value of upsampled column R * r + q for x = 0. Every output sums its taps in the same
// order (ky, then kx; the first from zero, which rounds as a product) whatever the block it is in.
template <int NV>
inline void down_block1(float* __restrict out, const float* const* src, const float* __restrict h, int nr,
                        int nq, int tdx, int shift, int x) {
    v8 acc[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) acc[i] = splat(0.0f);
    for (int ky = 0; ky < nr; ++ky) {
        const float* const* sp = src + ky * nq + shift;
        const float* hr = h + ky * tdx;
        for (int kx = 0; kx < tdx; ++kx) {
            const float* a = sp[kx] + x;
            const v8 c = splat(hr[kx]);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) acc[i] += c * load(a + 8 * i);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) store(out + x + 8 * i, acc[i]);
}

// Two output phases at once (S = 2): phase 1's tap kx reads what phase 0's tap kx + down reads, so
// each loaded vector serves both (needs tdx >= down).
template <int NV>
inline void down_block2(float* __restrict out0, float* __restrict out1, const float* const* src,
                        const float* __restrict h, int nr, int nq, int tdx, int down, int x) {
    v8 a0[NV], a1[NV];
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) a0[i] = a1[i] = splat(0.0f);
    for (int ky = 0; ky < nr; ++ky) {
        const float* const* sp = src + ky * nq;
        const float* hr = h + ky * tdx;
        int q = 0;
        for (; q < down; ++q) {
            const float* a = sp[q] + x;
            const v8 c0 = splat(hr[q]);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) a0[i] += c0 * load(a + 8 * i);
        }
        for (; q < tdx; ++q) {
            const float* a = sp[q] + x;
            const v8 c0 = splat(hr[q]), c1 = splat(hr[q - down]);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) {
                const v8 v = load(a + 8 * i);
                a0[i] += c0 * v;
                a1[i] += c1 * v;
            }
        }
        for (; q < nq; ++q) {
            const float* a = sp[q] + x;
            const v8 c1 = splat(hr[q - down]);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) a1[i] += c1 * load(a + 8 * i);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) {
        store(out0 + x + 8 * i, a0[i]);
        store(out1 + x + 8 * i, a1[i]);
    }
}

void down_row(float* out, int os, const float* const* src, const float* h, int nr, int nq, int tdx, int down,
              int S, int n) {
    if (S == 2 && tdx >= down) {
        int x = 0;
        for (; x + 32 <= n; x += 32) down_block2<4>(out, out + os, src, h, nr, nq, tdx, down, x);
        for (; x < n; x += 8) down_block2<1>(out, out + os, src, h, nr, nq, tdx, down, x);
        return;
    }
    if (S == 1) {  // taps and pointers line up: one flat sum over the nr * tdx taps
        combine<false>(out, src, h, nr * tdx, n, Act{1.0f, 1.0f, -1.0f});
        return;
    }
    for (int s = 0; s < S; ++s) {
        float* o = out + static_cast<std::size_t>(s) * os;
        int x = 0;
        for (; x + 64 <= n; x += 64) down_block1<8>(o, src, h, nr, nq, tdx, down * s, x);
        for (; x < n; x += 8) down_block1<1>(o, src, h, nr, nq, tdx, down * s, x);
    }
}

// 4b for output row o (upsampled rows o .. o + td2y - 1 in the ring) -> its S phases in tmp.
// Kept out of run_band so that the separable path compiles as before.
__attribute__((noinline)) void down_radial(const Problem& P, const float* ring, std::size_t psz, int o, float* tmp) {
    static thread_local Buffer pair_b;
    static thread_local std::vector<const float*> src, rows;
    static thread_local std::vector<int> qoff;
    const int down = P.down, R = P.R, tdy = P.td2y;
    // A filter symmetric along y (radial filters are) reads rows ky and td2y - 1 - ky with the
    // same taps: their sum once, then half the taps. Along x in tiles, so that the sums are
    // still in L1 when the filter reads them (each about td2x / R times per output phase).
    const int half = P.sym ? P.td2y / 2 : 0;
    const int nr = P.td2y - half, nq = down * (P.S - 1) + P.td2x;
    const int tw = std::max(8, round8(TILE_COLUMNS / R)), tts = round8(tw + (nq - 1) / R + 1);
    float* pairs = half ? pair_b.get(static_cast<std::size_t>(half) * R * tts) : nullptr;
    src.resize(static_cast<std::size_t>(nr) * nq);
    rows.resize(P.td2y);
    qoff.resize(2 * nq);  // upsampled column R * r + q in the ring and in the tile buffer
    for (int q = 0; q < nq; ++q) {
        qoff[q] = (q % R) * P.mws + q / R;
        qoff[nq + q] = (q % R) * tts + q / R;
    }
    for (int ky = 0; ky < P.td2y; ++ky) rows[ky] = ring + static_cast<std::size_t>(posmod(o + ky, tdy)) * psz;
    for (int r0 = 0; r0 < P.rw; r0 += tw) {
        const int n = std::min(round8(P.rw), r0 + tw) - r0;  // rws >= round8(rw): no scalar tail
        const int np = round8(n + (nq - 1) / R + 1);  // <= tts (past the needed: dropped outputs only)
        for (int ky = 0; ky < half; ++ky) {
            const float* a = rows[ky] + r0;
            const float* c2 = rows[P.td2y - 1 - ky] + r0;
            float* dst = pairs + static_cast<std::size_t>(ky) * R * tts;
            for (int p = 0; p < R; ++p)
                for (int i = 0; i < np; ++i) dst[p * tts + i] = a[p * P.mws + i] + c2[p * P.mws + i];
            for (int q = 0; q < nq; ++q) src[ky * nq + q] = dst + qoff[nq + q];
        }
        for (int ky = half; ky < nr; ++ky) {
            const float* row = rows[ky] + r0;
            for (int q = 0; q < nq; ++q) src[ky * nq + q] = row + qoff[q];
        }
        down_row(tmp + r0, P.rws, src.data(), P.hd2, nr, nq, P.td2x, down, P.S, n);
    }
}

void run_band(const Problem& P, int plane, int o0, int o1) {
    static thread_local Buffer xring_b, v_b, p_b, ring_b, tmp_b;
    static thread_local std::vector<const float*> ptrs;
    static thread_local std::vector<float> coefs;
    UpRows upr;
    const Act none{1.0f, 1.0f, -1.0f};
    const int down = P.down, R = P.R;
    const bool radial = P.hd2 != nullptr;
    const int tdy = radial ? P.td2y : P.td;
    const int z0 = o0 * down, z1 = (o1 - 1) * down + tdy;
    float* yout = P.y + static_cast<std::size_t>(plane) * P.ho * P.wo;

    upr.begin(P, plane, xring_b, v_b);
    const std::size_t psz = static_cast<std::size_t>(R) * P.mws;
    // Ring of the rows the vertical down pass reads: activated phase planes (2-D filter) or rows
    // filtered along x (separable), tdy rows.
    const std::size_t rsz = radial ? psz : static_cast<std::size_t>(P.S) * P.rws;
    float* ring = ring_b.get(rsz * tdy + 8);  // + 8: the 2-D filter's tiles read up to 7 values past a row
    float* Pb = radial ? nullptr : p_b.get(psz);
    float* tmp = tmp_b.get(static_cast<std::size_t>(P.S) * P.rws);
    ptrs.resize(std::max(P.tu, radial ? P.td2y * P.td2x : P.td) + 4);
    coefs.resize(ptrs.size());

    for (int j = z0; j < z1; ++j) {
        // 1-3. the upsampled row, activated, as phase planes
        float* Pj = radial ? ring + static_cast<std::size_t>(posmod(j, tdy)) * psz : Pb;
        upr.row<true>(j, Pj, ptrs.data());
        if (!radial) {
            // 4a. down filter along x: output phase s (columns S * r + s) reads upsampled column
            // R * r + down * s + k, i.e. phase plane (down * s + k) % R at r + (down * s + k) / R.
            float* Hj = ring + static_cast<std::size_t>(posmod(j, tdy)) * rsz;
            for (int s = 0; s < P.S; ++s) {
                for (int k = 0; k < P.td; ++k) {
                    const int q = down * s + k;
                    ptrs[k] = Pj + static_cast<std::size_t>(q % R) * P.mws + q / R;
                }
                combine<false>(Hj + static_cast<std::size_t>(s) * P.rws, ptrs.data(), P.hd, P.td, P.rw, none);
            }
        }
        // The output row whose last input row this was.
        const int o = j - tdy + 1;
        if (o < z0 || o % down != 0) continue;
        const int oy = o / down;
        if (!radial) {
            for (int k = 0; k < P.td; ++k) ptrs[k] = ring + static_cast<std::size_t>(posmod(o + k, tdy)) * rsz;
            combine<false>(tmp, ptrs.data(), P.hd, P.td, static_cast<int>(rsz), none);
        } else {
            down_radial(P, ring, psz, o, tmp);
        }
        store_row(yout + static_cast<std::size_t>(oy) * P.wo, tmp, P.S, P.rws, P.wo);
    }
}

// ---------------------------------------------------------------------------------------------------
// Backward.

// The activation's derivative at the pre-activation z (scaled by the gain): gain * (z > 0 ? 1 : slope),
// 0 where the clamp cuts (the activated value outside [-clamp, clamp]; the bounds pass, as in
// torch.clamp's backward; z == 0 takes the slope, as in torch's leaky_relu backward).
inline float dactivate(float z, const Act& a) {
    float d = z > 0.0f ? a.gain : a.gain * a.slope;
    if (a.clamp >= 0.0f) {
        const float v = (z >= 0.0f ? z : z * a.slope) * a.gain;
        if (!(v >= -a.clamp && v <= a.clamp)) d = 0.0f;
    }
    return d;
}

inline v8 dactivate(v8 z, const Act& a) {
    const v8 zero = splat(0.0f);
    v8 d = z > zero ? splat(a.gain) : splat(a.gain * a.slope);
    if (a.clamp >= 0.0f) {
        const v8 v = (z >= zero ? z : z * splat(a.slope)) * splat(a.gain);
        const i8 inside = (v >= splat(-a.clamp)) & (v <= splat(a.clamp));
        d = inside ? d : zero;
    }
    return d;
}

// out[x + i] = dact(z[x + i]) * sum_t coef[t] * ptr[t][x + i], i < 8 * NV.
template <int NV>
inline void combine_dact_block(float* __restrict out, const float* const* ptr, const float* __restrict coef, int T,
                               int x, const float* __restrict z, const Act& act) {
    v8 acc[NV];
    accumulate<NV>(acc, ptr, coef, T, x);
#pragma GCC unroll 8
    for (int i = 0; i < NV; ++i) store(out + x + 8 * i, acc[i] * dactivate(load(z + x + 8 * i), act));
}

// out[i] = dact(z[i]) * sum_t coef[t] * ptr[t][i], i < n (T >= 1).
void combine_dact(float* __restrict out, const float* const* ptr, const float* __restrict coef, int T, int n,
                  const float* __restrict z, const Act& act) {
    int x = 0;
    for (; x + 64 <= n; x += 64) combine_dact_block<8>(out, ptr, coef, T, x, z, act);
    for (; x + 32 <= n; x += 32) combine_dact_block<4>(out, ptr, coef, T, x, z, act);
    for (; x + 8 <= n; x += 8) combine_dact_block<1>(out, ptr, coef, T, x, z, act);
    for (; x < n; ++x) out[x] = accumulate1(ptr, coef, T, x) * dactivate(z[x], act);
}

inline int floordiv(int a, int b) { return (a - posmod(a, b)) / b; }

struct Tap {
    int plane;   // phase (plane) read
    int shift;   // offset within it
    int k;       // filter tap
};

// What the backward adds to a Problem. Layouts (all rows in phases, so that every pass reads
// contiguous runs):
//   gy rows: S phases (G[S * r + s] at s * gs + Lg + r), zero margins; a ring of gcap rows;
//   gA = Down^T(gy) and gZ = act'(Z) * gA: R phase planes like Z (column R * m + p at p * gzs + Lz + m),
//     zero outside [0, mw);
//   gV = Up_x^T(gZ): istride = R / up phases (V column istride * a + e at e * gvs + a), na values each;
//     a ring of tu rows.
struct Backward {
    const float* gy;
    float* gx;
    int tdy;                      // down taps along y (td or td2y)
    int jend;                     // upsampled rows with a gradient: [0, jend)
    int gcap, Lg, gs;             // gy ring
    std::vector<Tap> down[4];     // phase p of gA: sum over taps of hd[k] * G phase `plane` at m + shift
    int Lz, gzs;                  // gZ phase planes
    int istride, na, gvs;         // gV phases
    std::vector<Tap> upx[4];      // phase e of gV: sum over taps of hh[k] * gZ plane `plane` at a + shift
};

void run_band_backward(const Problem& P, const Backward& B, int plane, int i0, int i1) {
    static thread_local Buffer xring_b, v_b, z_b, gz_b, gring_b, gc_b, vring_b, tmp_b;
    static thread_local std::vector<const float*> ptrs;
    static thread_local std::vector<float> coefs;
    static thread_local std::vector<int> vrow;
    UpRows upr;
    const Act none{1.0f, 1.0f, -1.0f};
    const int h = P.h, w = P.w, up = P.up, down = P.down, R = P.R, S = P.S, tu = P.tu;
    const bool radial = P.hd2 != nullptr;
    const float* gyin = B.gy + static_cast<std::size_t>(plane) * P.ho * P.wo;
    float* gxout = B.gx + static_cast<std::size_t>(plane) * h * w;

    upr.begin(P, plane, xring_b, v_b);
    float* Zb = z_b.get(static_cast<std::size_t>(R) * P.mws);
    const std::size_t gzsz = static_cast<std::size_t>(R) * B.gzs;
    float* gZ = gz_b.get(gzsz);
    std::memset(gZ, 0, sizeof(float) * gzsz);  // margins read by Up_x^T
    const std::size_t gsz = static_cast<std::size_t>(S) * B.gs;
    float* gring = gring_b.get(gsz * B.gcap);
    float* Gc = radial ? nullptr : gc_b.get(gsz);
    const std::size_t vsz = static_cast<std::size_t>(B.istride) * B.gvs;
    float* vring = vring_b.get(vsz * tu);
    float* tmp = B.istride > 1 ? tmp_b.get(vsz) : nullptr;
    ptrs.resize(std::max(tu, radial ? P.td2y * P.td2x : P.td) + 4);
    coefs.resize(ptrs.size());
    vrow.assign(tu, -1);  // the upsampled row held by each ring slot (-1: none, or no gradient)
    int gloaded = -1;     // highest gy row in its ring

    // Upsampled row j: Z, gA, gZ, then gV into its ring slot.
    auto compute_row = [&](int j) {
        const int slot = j % tu;
        const int oy0 = std::max(0, -floordiv(-(j - B.tdy + 1), down));
        const int oy1 = std::min(P.ho - 1, floordiv(j, down));
        vrow[slot] = -1;
        if (oy0 > oy1) return;  // no output reads this row: no gradient
        // gy rows oy0..oy1 in the ring, by phase with zero margins
        if (gloaded < oy0 - 1) gloaded = oy0 - 1;
        while (gloaded < oy1) {
            ++gloaded;
            float* dst = gring + static_cast<std::size_t>(gloaded % B.gcap) * gsz;
            const float* src = gyin + static_cast<std::size_t>(gloaded) * P.wo;
            std::memset(dst, 0, sizeof(float) * gsz);
            if (S == 1) {
                std::memcpy(dst + B.Lg, src, sizeof(float) * P.wo);
            } else {
                for (int o = 0; o < P.wo; ++o) dst[(o % S) * B.gs + B.Lg + o / S] = src[o];
            }
        }
        // Z (not activated)
        upr.row<false>(j, Zb, ptrs.data());
        // gZ = act'(Z) * Down^T(gy)
        if (!radial) {
            int T = 0;
            for (int oy = oy0; oy <= oy1; ++oy, ++T) {
                ptrs[T] = gring + static_cast<std::size_t>(oy % B.gcap) * gsz;
                coefs[T] = P.hd[j - down * oy];
            }
            combine<false>(Gc, ptrs.data(), coefs.data(), T, static_cast<int>(gsz), none);
        }
        for (int p = 0; p < R; ++p) {
            float* dst = gZ + static_cast<std::size_t>(p) * B.gzs + B.Lz;
            const std::vector<Tap>& taps = B.down[p];
            int T = 0;
            if (!radial) {
                for (const Tap& tp : taps) {
                    ptrs[T] = Gc + static_cast<std::size_t>(tp.plane) * B.gs + B.Lg + tp.shift;
                    coefs[T++] = P.hd[tp.k];
                }
            } else {
                for (int oy = oy0; oy <= oy1; ++oy) {
                    const float* g = gring + static_cast<std::size_t>(oy % B.gcap) * gsz + B.Lg;
                    const float* hrow = P.hd2 + static_cast<std::size_t>(j - down * oy) * P.td2x;
                    for (const Tap& tp : taps) {
                        ptrs[T] = g + static_cast<std::size_t>(tp.plane) * B.gs + tp.shift;
                        coefs[T++] = hrow[tp.k];
                    }
                }
            }
            if (T == 0)
                std::memset(dst, 0, sizeof(float) * P.mw);
            else
                combine_dact(dst, ptrs.data(), coefs.data(), T, P.mw, Zb + static_cast<std::size_t>(p) * P.mws, P.act);
        }
        // gV = Up_x^T(gZ)
        float* V = vring + static_cast<std::size_t>(slot) * vsz;
        for (int e = 0; e < B.istride; ++e) {
            int T = 0;
            for (const Tap& tp : B.upx[e]) {
                ptrs[T] = gZ + static_cast<std::size_t>(tp.plane) * B.gzs + B.Lz + tp.shift;
                coefs[T++] = P.hcoef_all[tp.k];
            }
            combine<false>(V + static_cast<std::size_t>(e) * B.gvs, ptrs.data(), coefs.data(), T, B.na, none);
        }
        vrow[slot] = j;
    };

    // gx row i = sum_k hv[k] * gV row (up * i + py0 - k): rows are made in order, each once per band.
    int jnext = std::max(0, up * i0 + P.py0 - tu + 1);
    for (int i = i0; i < i1; ++i) {
        const int jtop = up * i + P.py0;
        const int jlast = std::min(jtop, B.jend - 1);
        for (; jnext <= jlast; ++jnext) compute_row(jnext);
        int T = 0;
        for (int j = std::max(0, jtop - tu + 1); j <= jlast; ++j) {
            const int slot = j % tu;
            if (vrow[slot] != j) continue;
            ptrs[T] = vring + static_cast<std::size_t>(slot) * vsz;
            coefs[T++] = P.hv_all[jtop - j];
        }
        float* out = gxout + static_cast<std::size_t>(i) * w;
        if (T == 0) {
            std::memset(out, 0, sizeof(float) * w);
        } else if (B.istride == 1) {
            combine<false>(out, ptrs.data(), coefs.data(), T, w, none);
        } else {
            combine<false>(tmp, ptrs.data(), coefs.data(), T, static_cast<int>(vsz), none);
            store_row(out, tmp, B.istride, B.gvs, w);
        }
    }
}

// The checks and the plan shared by both directions; 0 or a negative code.
int setup(Problem& P, const float* x, float* y, const float* bias, int planes, int channels, int h, int w,
          const float* hv, const float* hh, int tu, int up, int px0, int py0, const float* hd, int td,
          const float* hd2, int td2y, int td2x, int down, int hz, int wz, int ho, int wo, float gain, float slope,
          float clamp) {
    if (up < 1 || up > 4 || down < 1 || down > 4 || tu < 1 || planes < 0 || h < 1 || w < 1) return -1;
    if (ho < 1 || wo < 1 || hz < 1 || wz < 1) return -1;
    if (!hd2 && (!hd || td < 1)) return -2;
    if (hd2 && (td2y < 1 || td2x < 1)) return -2;
    P.x = x;
    P.y = y;
    P.bias = bias;
    P.channels = channels > 0 ? channels : 1;
    P.h = h;
    P.w = w;
    P.up = up;
    P.px0 = px0;
    P.py0 = py0;
    P.tu = tu;
    P.pv.init(hv, tu, up);
    P.hv_all = hv;
    P.hcoef_all = hh;
    P.hd = hd2 ? nullptr : hd;
    P.td = hd2 ? 0 : td;
    P.hd2 = hd2;
    P.td2y = td2y;
    P.td2x = td2x;
    P.down = down;
    P.hz = hz;
    P.wz = wz;
    P.ho = ho;
    P.wo = wo;
    P.act = Act{gain, slope, clamp};
    P.sym = hd2 != nullptr;
    for (int ky = 0; hd2 && ky < td2y; ++ky)
        for (int kx = 0; kx < td2x; ++kx)
            if (hd2[ky * td2x + kx] != hd2[(td2y - 1 - ky) * td2x + kx]) P.sym = false;

    // Phase planes: R = lcm(up, down) phases of the upsampled row.
    int R = up;
    while (R % down != 0) R += up;
    if (R > 4) return -3;
    P.R = R;
    P.mw = ceildiv(wz, R);
    P.S = R / down;
    P.rw = ceildiv(wo, P.S);
    P.rws = round8(P.rw + 8);
    const int tdx = hd2 ? td2x : td;
    // The down pass reads phase plane values up to rw - 1 + (down * (S - 1) + tdx - 1) / R.
    const int need = P.rw + (down * (P.S - 1) + tdx - 1) / R + 1;
    P.mws = round8(std::max(P.mw, need) + 8);
    // Phase plane p of upsampled column j = R * m + p: taps k = k0 + t * up, k0 = (px0 - p) mod up, on
    // V column (R / up) * m + (p - px0 + k0) / up + t; V is zero outside [0, w).
    const int istride = R / up;
    int lo = 0, hi = w;
    int off[4];
    for (int p = 0; p < R; ++p) {
        const int k0 = posmod(px0 - p, up);
        off[p] = (p - px0 + k0) / up;
        P.hcoef[p].clear();
        for (int k = k0; k < tu; k += up) P.hcoef[p].push_back(hh[k]);
        P.hcount[p] = static_cast<int>(P.hcoef[p].size());
        lo = std::min(lo, off[p]);
        hi = std::max(hi, istride * (P.mw - 1) + off[p] + P.hcount[p]);
    }
    P.vlo = round8(-lo);
    for (int p = 0; p < R; ++p) P.hoff[p] = off[p];
    P.vlen = P.vlo + round8(hi) + 8;
    return 0;
}

// Rows per work item: tall bands (each recomputes the filter overlap of its neighbour), at least 4
// items per thread so that the threads finish together.
int auto_band(int band, int rows, int planes, int threads) {
    if (band <= 0) {
        const int nt = threads > 0 ? threads : 1;
        const int per_plane = std::max(1, (4 * nt + planes - 1) / std::max(1, planes));
        band = std::max(16, ceildiv(rows, per_plane));
    }
    return std::max(1, std::min(band, rows));
}

}  // namespace

extern "C" {

// Returns 0 on success, a negative code for arguments it does not take.
//
// x: [planes][h][w] contiguous; y: [planes][ho][wo]; bias: [channels] or null (plane p uses
// bias[p % channels]); hv, hh: tu up taps (correlation order, the up gain included) along y and x
// (the activation gain may be folded into hv); padding before: px0, py0 (negative crops); hd: td
// separable down taps, or hd2: [td2y][td2x] 2-D down taps (then hd is ignored). hz, wz: upsampled
// size; ho, wo: output size (as the caller computed them). clamp < 0: none. band: output rows per
// work item (<= 0: automatic). threads: OpenMP threads.
int charm_filtered_lrelu_f32(const float* x, float* y, const float* bias, int planes, int channels, int h, int w,
                             const float* hv, const float* hh, int tu, int up, int px0, int py0, const float* hd,
                             int td, const float* hd2, int td2y, int td2x, int down, int hz, int wz, int ho, int wo,
                             float gain, float slope, float clamp, int band, int threads) {
    Problem P;
    const int rc = setup(P, x, y, bias, planes, channels, h, w, hv, hh, tu, up, px0, py0, hd, td, hd2, td2y, td2x,
                         down, hz, wz, ho, wo, gain, slope, clamp);
    if (rc != 0) return rc;
    band = auto_band(band, ho, planes, threads);
    P.band = band;
    const int bands = ceildiv(ho, band);
    const std::int64_t items = static_cast<std::int64_t>(planes) * bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : 1)
    for (std::int64_t it = 0; it < items; ++it) {
        const int plane = static_cast<int>(it / bands);
        const int b = static_cast<int>(it % bands);
        const int o0 = b * band;
        run_band(P, plane, o0, std::min(ho, o0 + band));
    }
    return 0;
}

// The gradient of the same chain with respect to x (and x + bias): gx = Up^T(act'(Z) * Down^T(gy)),
// Z recomputed from x and bias. The arguments are the forward's (the same prepared taps), plus gy
// [planes][ho][wo] and gx [planes][h][w] in place of y; band: gx rows per work item (<= 0: automatic).
// ho, wo must be those the down filter gives (ceil((hz - td + 1) / down), likewise along x): -4
// otherwise. gx does not depend on band or threads (every gx row is computed alike).
int charm_filtered_lrelu_backward_f32(const float* x, const float* gy, float* gx, const float* bias, int planes,
                                      int channels, int h, int w, const float* hv, const float* hh, int tu, int up,
                                      int px0, int py0, const float* hd, int td, const float* hd2, int td2y,
                                      int td2x, int down, int hz, int wz, int ho, int wo, float gain, float slope,
                                      float clamp, int band, int threads) {
    Problem P;
    const int rc = setup(P, x, nullptr, bias, planes, channels, h, w, hv, hh, tu, up, px0, py0, hd, td, hd2, td2y,
                         td2x, down, hz, wz, ho, wo, gain, slope, clamp);
    if (rc != 0) return rc;
    Backward B;
    B.gy = gy;
    B.gx = gx;
    const bool radial = hd2 != nullptr;
    const int tdy = radial ? td2y : td, tdx = radial ? td2x : td;
    if (hz < tdy || wz < tdx || ho != ceildiv(hz - tdy + 1, down) || wo != ceildiv(wz - tdx + 1, down)) return -4;
    const int R = P.R, S = P.S;
    B.tdy = tdy;
    B.jend = std::min(hz, down * (ho - 1) + tdy);
    B.gcap = ceildiv(tdy, down) + 1;
    // gA column c = R * m + p reads taps k = p % down + down * t on G column (c - k) / down = S * m + q,
    // q = p / down - t: G phase q mod S at m + floor(q / S).
    int glo = 0;
    for (int p = 0; p < R; ++p) {
        B.down[p].clear();
        for (int k = p % down, t = 0; k < tdx; k += down, ++t) {
            const int q = p / down - t;
            B.down[p].push_back(Tap{posmod(q, S), floordiv(q, S), k});
            glo = std::min(glo, floordiv(q, S));
        }
    }
    B.Lg = round8(-glo);
    B.gs = round8(B.Lg + std::max(P.rw, P.mw) + 8);  // shifts are <= 0: reads end before Lg + mw
    // gV column i = istride * a + e reads gZ column up * i + px0 - k = R * a + u, u = up * e + px0 - k:
    // plane u mod R at a + floor(u / R), for every tap k.
    B.istride = R / up;
    B.na = ceildiv(w, B.istride);
    int zlo = 0, zhi = 0;
    for (int e = 0; e < B.istride; ++e) {
        B.upx[e].clear();
        for (int k = 0; k < tu; ++k) {
            const int u = up * e + px0 - k;
            B.upx[e].push_back(Tap{posmod(u, R), floordiv(u, R), k});
            zlo = std::min(zlo, floordiv(u, R));
            zhi = std::max(zhi, floordiv(u, R));
        }
    }
    B.Lz = round8(-zlo);
    B.gzs = round8(B.Lz + std::max(P.mw, B.na + zhi) + 8);
    B.gvs = round8(B.na);
    band = auto_band(band, h, planes, threads);
    const int bands = ceildiv(h, band);
    const std::int64_t items = static_cast<std::int64_t>(planes) * bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : 1)
    for (std::int64_t it = 0; it < items; ++it) {
        const int plane = static_cast<int>(it / bands);
        const int b = static_cast<int>(it % bands);
        const int i0 = b * band;
        run_band_backward(P, B, plane, i0, std::min(h, i0 + band));
    }
    return 0;
}

}  // extern "C"
