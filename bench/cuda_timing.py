# The median CUDA-event time of a callable: PyTorch's side of the GPU benchmarks
# (bench/torch_steps.py, bench/torch_matmul.py) times everything the same way.
import torch


def median_ms(f, reps=10, warm=3, loops=1):
    """Median over `reps` timings of `loops` calls of f, in ms per call, after `warm` calls."""
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(loops):
            f()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / loops)
    times.sort()
    return times[len(times) // 2]
