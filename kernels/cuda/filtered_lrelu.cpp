// PyTorch binding of the fused CUDA filtered_lrelu (argument checks, output allocation, dispatch).
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "filtered_lrelu.h"

// x: [N,C,H,W] CUDA (float32/float16/bfloat16); bias: [C] float32 or empty; fu: [tu] float32 correlation
// taps (gain included); fd: [td] or [td,td] float32 correlation taps. Returns [N,C,Ho,Wo] in x's dtype.
torch::Tensor filtered_lrelu_forward(torch::Tensor x, torch::Tensor bias, torch::Tensor fu, torch::Tensor fd,
                                     int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
                                     int64_t py1, double gain, double slope, double clamp) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x must be a 4-D CUDA tensor");
    TORCH_CHECK(fu.is_cuda() && fu.dim() == 1 && fu.scalar_type() == torch::kFloat, "fu: 1-D float32 CUDA");
    TORCH_CHECK(fd.is_cuda() && (fd.dim() == 1 || fd.dim() == 2) && fd.scalar_type() == torch::kFloat,
                "fd: 1-D or 2-D float32 CUDA");
    TORCH_CHECK(bias.numel() == 0 || (bias.is_cuda() && bias.scalar_type() == torch::kFloat &&
                                      bias.numel() == x.size(1)), "bias: [C] float32 CUDA or empty");
    TORCH_CHECK(up >= 1 && down >= 1, "up and down must be >= 1");
    FlreluDType dtype;
    switch (x.scalar_type()) {
        case torch::kFloat: dtype = FlreluDType::f32; break;
        case torch::kHalf: dtype = FlreluDType::f16; break;
        case torch::kBFloat16: dtype = FlreluDType::bf16; break;
        default: TORCH_CHECK(false, "x must be float32, float16 or bfloat16");
    }
    const c10::cuda::CUDAGuard guard(x.device());
    x = x.contiguous();
    FlreluParams p;
    p.N = x.size(0); p.C = x.size(1); p.H = x.size(2); p.W = x.size(3);
    p.up = up; p.down = down; p.px0 = px0; p.py0 = py0;
    p.tu = fu.size(0);
    p.down2d = fd.dim() == 2;
    p.td = fd.size(0);
    TORCH_CHECK(!p.down2d || fd.size(1) == p.td, "2-D down filter must be square");
    p.Hz = p.H * up + py0 + py1 - p.tu + 1;
    p.Wz = p.W * up + px0 + px1 - p.tu + 1;
    TORCH_CHECK(p.Hz >= p.td && p.Wz >= p.td, "output would be empty");
    p.Ho = (p.Hz - p.td) / down + 1;
    p.Wo = (p.Wz - p.td) / down + 1;
    p.gain = gain; p.slope = slope; p.clamp = clamp;
    auto y = torch::empty({p.N, p.C, p.Ho, p.Wo}, x.options());
    if (y.numel() == 0) return y;
    auto fuc = fu.contiguous(), fdc = fd.contiguous();
    const float* bptr = bias.numel() ? bias.data_ptr<float>() : nullptr;
    cudaError_t err = flrelu_launch(dtype, x.data_ptr(), bptr, fuc.data_ptr<float>(), fdc.data_ptr<float>(),
                                    y.data_ptr(), p, c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "filtered_lrelu CUDA launch failed: ", cudaGetErrorString(err));
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("filtered_lrelu_forward", &filtered_lrelu_forward, "Fused filtered leaky ReLU (forward)");
}
