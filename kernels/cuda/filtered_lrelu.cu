// Fused filtered_lrelu for StyleGAN3 (Charm Studio's own kernel). Plain CUDA: the PyTorch binding
// lives in filtered_lrelu.cpp, so nvcc never parses the heavy torch headers.
//
// One thread block computes a TILE x TILE patch of outputs for one (sample, channel) plane:
//   1. rows of the input plane (+ bias) the patch depends on are upsampled horizontally
//      (polyphase: only taps that hit real samples are multiplied) into shared memory,
//   2. upsampled vertically the same way, then leaky ReLU * gain and clamp, still in shared memory,
//   3. filtered and decimated (vertical then horizontal, or one 2-D pass for radial filters),
//      computing only the samples that are kept, and written out.
// Index conventions follow kernels/_polyphase.py: taps are correlation taps (already flipped) with
// the per-axis gain folded in; padding (px0, py0) may be negative.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "filtered_lrelu.h"

namespace {

constexpr int TILE = 16;
constexpr int THREADS = 256;

// Explicit conversions: torch builds CUDA code with the implicit half conversions disabled.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
__device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

template <typename scalar_t>
__global__ void filtered_lrelu_kernel(const scalar_t* __restrict__ x, const float* __restrict__ bias,
                                      const float* __restrict__ fu, const float* __restrict__ fd,
                                      scalar_t* __restrict__ y, FlreluParams p, int tiles_x, int tiles_y) {
    extern __shared__ float smem[];
    const int tid = threadIdx.x;
    int blk = blockIdx.x;
    const int tile = blk % (tiles_x * tiles_y);
    const int plane = blk / (tiles_x * tiles_y);          // n * C + c
    const int c = plane % p.C;
    const int oy0 = (tile / tiles_x) * TILE;
    const int ox0 = (tile % tiles_x) * TILE;

    // Extent of the upsampled plane this tile reads.
    const int zy0 = oy0 * p.down, zx0 = ox0 * p.down;
    const int zh = (TILE - 1) * p.down + p.td;
    const int zw = (TILE - 1) * p.down + p.td;
    // Input rows/columns that feed it: u = z + t - pad must be a multiple of up.
    const int iy0 = max(0, ceil_div(zy0 - p.py0, p.up));
    const int iy1 = min(p.H - 1, floor_div(zy0 + zh - 1 + p.tu - 1 - p.py0, p.up));
    const int rows = max(0, iy1 - iy0 + 1);

    float* s_fu = smem;                                    // tu
    float* s_fd = s_fu + p.tu;                             // td or td*td
    float* s_h = s_fd + (p.down2d ? p.td * p.td : p.td);   // rows x zw   (horizontal up pass)
    float* s_z = s_h + rows * zw;                          // zh x zw     (activated, upsampled)
    float* s_v = s_z + zh * zw;                            // TILE x zw   (vertical down pass)

    for (int i = tid; i < p.tu; i += blockDim.x) s_fu[i] = fu[i];
    const int nfd = p.down2d ? p.td * p.td : p.td;
    for (int i = tid; i < nfd; i += blockDim.x) s_fd[i] = fd[i];
    __syncthreads();

    const scalar_t* xp = x + (size_t)plane * p.H * p.W;
    const float b = bias ? bias[c] : 0.f;

    // 1. Horizontal upsampling of the needed input rows.
    for (int idx = tid; idx < rows * zw; idx += blockDim.x) {
        const int r = idx / zw, zx = zx0 + idx % zw;
        const scalar_t* row = xp + (size_t)(iy0 + r) * p.W;
        const int u0 = zx - p.px0;                         // u = u0 + t
        const int t0 = ((-u0) % p.up + p.up) % p.up;       // first tap landing on a sample
        float acc = 0.f;
        for (int t = t0; t < p.tu; t += p.up) {
            const int i = (u0 + t) / p.up;
            if (i >= 0 && i < p.W) acc += s_fu[t] * (to_float(row[i]) + b);
        }
        s_h[idx] = acc;
    }
    __syncthreads();

    // 2. Vertical upsampling, then leaky ReLU, gain and clamp.
    for (int idx = tid; idx < zh * zw; idx += blockDim.x) {
        const int zy = zy0 + idx / zw, col = idx % zw;
        const int u0 = zy - p.py0;
        const int t0 = ((-u0) % p.up + p.up) % p.up;
        float acc = 0.f;
        for (int t = t0; t < p.tu; t += p.up) {
            const int i = (u0 + t) / p.up;
            if (i >= iy0 && i <= iy1) acc += s_fu[t] * s_h[(i - iy0) * zw + col];
        }
        acc = (acc < 0.f ? acc * p.slope : acc) * p.gain;
        if (p.clamp >= 0.f) acc = fminf(fmaxf(acc, -p.clamp), p.clamp);
        s_z[idx] = acc;
    }
    __syncthreads();

    scalar_t* yp = y + (size_t)plane * p.Ho * p.Wo;
    if (p.down2d) {
        // 3b. One 2-D filter pass, only at the kept positions.
        for (int idx = tid; idx < TILE * TILE; idx += blockDim.x) {
            const int ly = idx / TILE, lx = idx % TILE;
            const int oy = oy0 + ly, ox = ox0 + lx;
            if (oy >= p.Ho || ox >= p.Wo) continue;
            float acc = 0.f;
            for (int sy = 0; sy < p.td; ++sy) {
                const float* zrow = s_z + (ly * p.down + sy) * zw + lx * p.down;
                const float* frow = s_fd + sy * p.td;
                for (int sx = 0; sx < p.td; ++sx) acc += frow[sx] * zrow[sx];
            }
            yp[(size_t)oy * p.Wo + ox] = from_float<scalar_t>(acc);
        }
        return;
    }
    // 3a. Separable decimation: vertical, then horizontal.
    for (int idx = tid; idx < TILE * zw; idx += blockDim.x) {
        const int ly = idx / zw, col = idx % zw;
        float acc = 0.f;
        for (int s = 0; s < p.td; ++s) acc += s_fd[s] * s_z[(ly * p.down + s) * zw + col];
        s_v[idx] = acc;
    }
    __syncthreads();
    for (int idx = tid; idx < TILE * TILE; idx += blockDim.x) {
        const int ly = idx / TILE, lx = idx % TILE;
        const int oy = oy0 + ly, ox = ox0 + lx;
        if (oy >= p.Ho || ox >= p.Wo) continue;
        float acc = 0.f;
        for (int s = 0; s < p.td; ++s) acc += s_fd[s] * s_v[ly * zw + lx * p.down + s];
        yp[(size_t)oy * p.Wo + ox] = from_float<scalar_t>(acc);
    }
}

}  // namespace

template <typename T>
static cudaError_t launch(const void* x, const float* bias, const float* fu, const float* fd, void* y,
                          const FlreluParams& p, cudaStream_t stream) {
    const int tiles_x = (p.Wo + TILE - 1) / TILE, tiles_y = (p.Ho + TILE - 1) / TILE;
    const long long blocks = (long long)tiles_x * tiles_y * p.N * p.C;
    if (blocks >= (1LL << 31)) return cudaErrorInvalidConfiguration;
    const int zh = (TILE - 1) * p.down + p.td, zw = zh;
    const int rows = (zh + p.tu) / p.up + 2;
    const size_t shm = sizeof(float) * (p.tu + (p.down2d ? p.td * p.td : p.td) + rows * zw + zh * zw + TILE * zw);
    if (shm > 48 * 1024) return cudaErrorInvalidValue;
    filtered_lrelu_kernel<T><<<(unsigned)blocks, THREADS, shm, stream>>>(
        static_cast<const T*>(x), bias, fu, fd, static_cast<T*>(y), p, tiles_x, tiles_y);
    return cudaGetLastError();
}

cudaError_t flrelu_launch(FlreluDType dtype, const void* x, const float* bias, const float* fu, const float* fd,
                          void* y, const FlreluParams& p, cudaStream_t stream) {
    switch (dtype) {
        case FlreluDType::f32: return launch<float>(x, bias, fu, fd, y, p, stream);
        case FlreluDType::f16: return launch<__half>(x, bias, fu, fd, y, p, stream);
        case FlreluDType::bf16: return launch<__nv_bfloat16>(x, bias, fu, fd, y, p, stream);
    }
    return cudaErrorInvalidValue;
}
