# PyTorch's side of bench/step.ts, on the same GPU in the same device call (bench/gpu.sh):
# f32 (no TF32) training steps of RoBERTa-base (batch 32 x 128, adapters on query/value) and of
# one LLaMA-7B decoder layer (batch 4 x 512, adapters on q_proj/v_proj), with PEFT's LoRA r=8
# and FourierFT, SSH through a dense fft2 dW (as ../shared/device/torch_anchor.py), and full
# fine-tuning for RoBERTa. Prints one "torch-step MODEL METHOD MS PEAK_GIB" line per run.
import sys
import torch
import torch.nn as nn
from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForSequenceClassification
from peft import FourierFTConfig, LoraConfig, get_peft_model

from cuda_timing import median_ms, strict_f32

precision = strict_f32()
dev = "cuda"


class SSHLinear(nn.Module):
    """dW = alpha/(M N) * DHT2(S) with DHT2 = Re(fft2) - Im(fft2), built densely every step."""

    def __init__(self, base, n, alpha=300.0):
        super().__init__()
        self.base = base
        m, d = base.weight.shape
        self.register_buffer("idx", torch.randperm(m * d, device=base.weight.device)[:n])
        self.m, self.d, self.alpha = m, d, alpha
        self.c = nn.Parameter(torch.zeros(n, device=base.weight.device))

    def forward(self, x):
        S = torch.zeros(self.m * self.d, device=x.device).index_put((self.idx,), self.c).view(self.m, self.d)
        F = torch.fft.fft2(S)
        return self.base(x) + x @ ((F.real - F.imag) * (self.alpha / (self.m * self.d))).T


def adapt(m, kind, targets, n, task):
    if kind == "lora":
        return get_peft_model(m, LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type=task))
    if kind == "fourierft":
        return get_peft_model(m, FourierFTConfig(n_frequency=1000, scaling=150.0, target_modules=targets, task_type=task))
    if kind == "ssh":
        for p in m.parameters():
            p.requires_grad_(False)
        for mod in list(m.modules()):
            for t in targets:
                if isinstance(getattr(mod, t, None), nn.Linear):
                    setattr(mod, t, SSHLinear(getattr(mod, t), n))
        for name, p in m.named_parameters():
            if "classifier" in name or name.endswith(".c"):
                p.requires_grad_(True)
    return m


def run(label, make, inputs, kinds):
    for kind in kinds:
        m = make(kind)
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step():
            m(**inputs).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        torch.cuda.reset_peak_memory_stats()
        ms = median_ms(step)
        print(f"torch-step {label} {kind} {ms:.2f} {torch.cuda.max_memory_allocated() / 2**30:.2f}", flush=True)
        del m, opt
        torch.cuda.empty_cache()


print("torch", torch.__version__, torch.cuda.get_device_name(), precision, flush=True)
which = sys.argv[1:] or ["roberta-base", "llama7b-layer"]
if "roberta-base" in which:
    ids = torch.randint(3, 50265, (32, 128), device=dev)
    lab = torch.randint(0, 2, (32,), device=dev)

    def mk_rob(kind):
        torch.manual_seed(0)
        m = RobertaForSequenceClassification(RobertaConfig(num_labels=2)).to(dev)
        return m if kind == "full" else adapt(m, kind, ["query", "value"], 750, "SEQ_CLS")

    run("roberta-base", mk_rob, {"input_ids": ids, "labels": lab}, ["ssh", "lora", "fourierft", "full"])
if "llama7b-layer" in which:
    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=1,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=1024)
    lids = torch.randint(3, 32000, (4, 512), device=dev)

    def mk_llama(kind):
        torch.manual_seed(0)
        return adapt(LlamaForCausalLM(cfg).to(dev), kind, ["q_proj", "v_proj"], 1000, "CAUSAL_LM")

    run("llama7b-layer", mk_llama, {"input_ids": lids, "labels": lids}, ["ssh", "lora", "fourierft"])
