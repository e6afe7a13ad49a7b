# PyTorch's side of the matmul table of bench/main.ts (`deno task bench --full`), on the same GPU in
# the same device call (bench/gpu.sh part torch_matmul): f32 products without TF32 at the same
# shapes and operand layouts (NT: B stored n×k). Prints one
# "torch-matmul M×N×K LAYOUT MS GFLOP/S" line per shape, the median of 10 timed loops of 10 products.
import torch

from cuda_timing import median_ms, strict_f32

precision = strict_f32()
SHAPES = [
    (4096, 4096, 4096, "NN"),
    (4096, 4096, 4096, "NT"),
    (4096, 768, 768, "NT"),
    (4096, 3072, 768, "NT"),
    (4096, 768, 3072, "NT"),
    (4096, 768, 768, "NN"),
    (768, 768, 4096, "TN"),
    (2048, 4096, 4096, "NT"),
    (2048, 11008, 4096, "NT"),
]


def product(m, n, k, layout):
    a = torch.randn(k, m, device="cuda") if layout[0] == "T" else torch.randn(m, k, device="cuda")
    b = torch.randn(n, k, device="cuda") if layout[1] == "T" else torch.randn(k, n, device="cuda")
    a = a.t() if layout[0] == "T" else a
    b = b.t() if layout[1] == "T" else b
    return lambda: a @ b


print("torch", torch.__version__, torch.cuda.get_device_name(), precision, flush=True)
for m, n, k, layout in SHAPES:
    ms = median_ms(product(m, n, k, layout), warm=5, loops=10)
    print(f"torch-matmul {m}×{n}×{k} {layout} {ms:.3f} {2 * m * n * k / ms / 1e6:.1f}", flush=True)
