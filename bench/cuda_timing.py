# The median CUDA-event time of a callable: PyTorch's side of the GPU benchmarks
# (bench/torch_steps.py, bench/torch_matmul.py) times everything the same way, in f32 without TF32.
import time

import torch


def strict_f32():
    """No TF32 in products or convolutions; returns the settings in effect, for the log."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return (f"allow_tf32={torch.backends.cuda.matmul.allow_tf32} "
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} "
            f"float32_matmul_precision={torch.get_float32_matmul_precision()}")


def median_ms(f, reps=10, warm=3, loops=1, warm_s=0.3):
    """Median over `reps` timings of `loops` calls of f, in ms per call, after at least `warm`
    calls and `warm_s` seconds of them (an idle GPU needs a few hundred ms to raise its clocks,
    as bench/stats.ts warms ours)."""
    start, done = time.perf_counter(), 0
    while done < warm or time.perf_counter() - start < warm_s:
        f()
        done += 1
        if done % 4 == 0:
            torch.cuda.synchronize()
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
