// Interface between the CUDA kernel (filtered_lrelu.cu) and its PyTorch binding (filtered_lrelu.cpp).
#pragma once
#include <cuda_runtime.h>

struct FlreluParams {
    int N, C, H, W;           // input
    int Ho, Wo;               // output
    int Hz, Wz;               // upsampled-filtered plane (before decimation)
    int up, down;
    int px0, py0;
    int tu, td;               // tap counts (td is the side length when the down filter is 2-D)
    bool down2d;
    float gain, slope, clamp; // clamp < 0: none
};

enum class FlreluDType { f32, f16, bf16 };

// Returns cudaErrorInvalidValue when the filters are too long for the fused kernel's shared memory.
cudaError_t flrelu_launch(FlreluDType dtype, const void* x, const float* bias, const float* fu, const float* fd,
                          void* y, const FlreluParams& p, cudaStream_t stream);
