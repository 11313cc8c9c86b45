#!/usr/bin/env python3
"""The worker-model training step in plain PyTorch, for a side-by-side with the Rust bench.

Same model maths as worker-model / Hugging Face LLaMA (RMSNorm in fp32, rotate-half RoPE,
GQA through scaled_dot_product_attention, SwiGLU, tied or untied head), same batch shapes,
same step: forward, token-summed cross-entropy / tokens, backward, global-norm clip 1.0,
torch.optim.AdamW(lr 1.17e-4, betas (0.9, 0.95), eps 1e-8, wd 0.1 on matrices).

    .venv/bin/python worker/model/benches/reference_torch.py [tiny|150m]

With `check DIR` it instead loads a worker-model Hugging Face export (DIR/model.safetensors +
DIR/config.json), runs DIR/input_ids.json through this independent implementation and
compares the logits with DIR/logits.f32 (raw little-endian fp32 written by the Rust side).
With `check-train DIR` it replays DIR/train.json's inner steps with torch.optim.AdamW and
compares the weights with the export in DIR/after. tests/torch_reference.rs drives both.
"""

import json
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = {
    # name: (vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, seq, tied, batch, warmup, steps)
    "tiny": (2048, 64, 176, 2, 4, 2, 16, 64, True, 8, 3, 20),
    "150m": (32000, 768, 2560, 12, 12, 12, 64, 256, False, 2, 1, 3),
}


class Llama(torch.nn.Module):
    def __init__(self, vocab, hidden, inter, layers, heads, kv, head_dim, seq, tied, theta=10000.0, eps=1e-5, hf_norm=False):
        super().__init__()
        self.eps, self.hf_norm = eps, hf_norm
        self.heads, self.kv, self.head_dim = heads, kv, head_dim
        lin = lambda o, i: torch.nn.Parameter(torch.randn(o, i) * 0.02)
        self.embed = torch.nn.Parameter(torch.randn(vocab, hidden) * 0.02)
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            layer = torch.nn.ParameterDict({
                "q": lin(heads * head_dim, hidden), "k": lin(kv * head_dim, hidden),
                "v": lin(kv * head_dim, hidden), "o": lin(hidden, heads * head_dim),
                "gate": lin(inter, hidden), "up": lin(inter, hidden), "down": lin(hidden, inter),
                "ln1": torch.nn.Parameter(torch.ones(hidden)), "ln2": torch.nn.Parameter(torch.ones(hidden)),
            })
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(hidden))
        self.head = None if tied else lin(vocab, hidden)
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(seq).float(), inv)
        emb = torch.cat([freqs, freqs], -1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())

    def rms(self, x, weight):
        if not self.hf_norm:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        # transformers' LlamaRMSNorm, written out.
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)

    def rope(self, x):
        t = x.shape[2]
        half = self.head_dim // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * self.cos[:t] + rotated * self.sin[:t]

    def forward(self, ids):
        b, t = ids.shape
        x = F.embedding(ids, self.embed)
        for l in self.layers:
            h = self.rms(x, l["ln1"])
            q = F.linear(h, l["q"]).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, l["k"]).view(b, t, self.kv, self.head_dim).transpose(1, 2)
            v = F.linear(h, l["v"]).view(b, t, self.kv, self.head_dim).transpose(1, 2)
            a = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True,
                                               enable_gqa=self.kv != self.heads)
            x = x + F.linear(a.transpose(1, 2).reshape(b, t, -1), l["o"])
            h = self.rms(x, l["ln2"])
            x = x + F.linear(F.silu(F.linear(h, l["gate"])) * F.linear(h, l["up"]), l["down"])
        x = self.rms(x, self.norm)
        return F.linear(x, self.embed if self.head is None else self.head)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(body[start:end]), dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


SHORT = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v", "self_attn.o_proj": "o",
         "mlp.gate_proj": "gate", "mlp.up_proj": "up", "mlp.down_proj": "down",
         "input_layernorm": "ln1", "post_attention_layernorm": "ln2"}


def load_export(directory):
    """An independent model holding the weights of a worker-model HF export."""
    cfg = json.load(open(os.path.join(directory, "config.json")))
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["hidden_act"] == "silu"
    weights = load_safetensors(os.path.join(directory, "model.safetensors"))
    model = Llama(cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"],
                  cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"],
                  cfg["max_position_embeddings"], cfg["tie_word_embeddings"], cfg["rope_theta"], cfg["rms_norm_eps"], hf_norm=True)
    with torch.no_grad():
        model.embed.copy_(weights.pop("model.embed_tokens.weight"))
        model.norm.copy_(weights.pop("model.norm.weight"))
        if model.head is not None:
            model.head.copy_(weights.pop("lm_head.weight"))
        for i, layer in enumerate(model.layers):
            for hf, ours in SHORT.items():
                layer[ours].copy_(weights.pop(f"model.layers.{i}.{hf}.weight"))
        assert not weights, f"unexpected tensors {list(weights)}"
    return cfg, model


def named_parameters(model):
    """(HF name, tensor) pairs of the reference model."""
    yield "model.embed_tokens.weight", model.embed
    for i, layer in enumerate(model.layers):
        for hf, ours in SHORT.items():
            yield f"model.layers.{i}.{hf}.weight", layer[ours]
    yield "model.norm.weight", model.norm
    if model.head is not None:
        yield "lm_head.weight", model.head


def check(directory):
    """Forward pass: logits of the export vs DIR/logits.f32."""
    cfg, model = load_export(directory)
    ids = torch.tensor(json.load(open(os.path.join(directory, "input_ids.json"))))
    expected = torch.frombuffer(bytearray(open(os.path.join(directory, "logits.f32"), "rb").read()),
                                dtype=torch.float32).reshape(*ids.shape, cfg["vocab_size"])
    with torch.no_grad():
        logits = model(ids)
    diff = (logits - expected).abs().max().item()
    print(f"max |logits - worker-model logits| = {diff:.3e}")
    sys.exit(0 if diff < 1e-4 else 1)


def check_train(directory):
    """Training: DIR/train.json steps of torch.optim.AdamW + clipping from DIR's weights must
    land on the weights of DIR/after (worker-model's InnerTrainer on the same batches)."""
    _, model = load_export(directory)
    spec = json.load(open(os.path.join(directory, "train.json")))
    _, after = load_export(os.path.join(directory, "after"))
    params = [p for _, p in named_parameters(model)]
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}],
                            lr=spec["lr"], betas=(spec["beta1"], spec["beta2"]), eps=spec["eps"])
    for step in spec["steps"]:
        total = sum(int((torch.tensor(mb["labels"]) != -100).sum()) for mb in step)
        for mb in step:
            ids, labels = torch.tensor(mb["input_ids"]), torch.tensor(mb["labels"])
            logits = model(ids)
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1),
                                   ignore_index=-100, reduction="sum")
            (loss / total).backward()
        torch.nn.utils.clip_grad_norm_(params, spec["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
    _, before = load_export(directory)
    diff_sq = update_sq = 0.0
    for (_, mine), (_, theirs), (_, start) in zip(named_parameters(model), named_parameters(after),
                                                  named_parameters(before)):
        diff_sq += (mine.detach() - theirs).double().pow(2).sum().item()
        update_sq += (mine.detach() - start).double().pow(2).sum().item()
    relative = (diff_sq / update_sq) ** 0.5
    print(f"|torch AdamW weights - worker-model weights| / |torch update| = {relative:.3e}")
    sys.exit(0 if relative < 1e-3 else 1)


def main():
    if sys.argv[1:2] == ["check"]:
        return check(sys.argv[2])
    if sys.argv[1:2] == ["check-train"]:
        return check_train(sys.argv[2])
    names = sys.argv[1:] or list(CONFIGS)
    print(f"reference PyTorch {torch.__version__}: CPU, {torch.get_num_threads()} threads, fp32")
    torch.manual_seed(0)
    for name in names:
        vocab, hidden, inter, layers, heads, kv, hd, seq, tied, batch, warmup, steps = CONFIGS[name]
        model = Llama(vocab, hidden, inter, layers, heads, kv, hd, seq, tied)
        params = list(model.parameters())
        decay = [p for p in params if p.dim() >= 2]
        other = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                lr=1.17e-4, betas=(0.9, 0.95), eps=1e-8)
        tokens = torch.randint(vocab, (batch, seq + 1))
        ids, labels = tokens[:, :-1], tokens[:, 1:].contiguous()

        def step():
            logits = model(ids)
            loss = F.cross_entropy(logits.float().view(-1, vocab), labels.view(-1), ignore_index=-100,
                                   reduction="sum")
            (loss / labels.numel()).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        train = []
        cpu_start = time.process_time()
        for _ in range(steps):
            start = time.perf_counter()
            step()
            train.append(time.perf_counter() - start)
        train_cpu = (time.process_time() - cpu_start) / steps
        evals = []
        with torch.no_grad():
            for _ in range(steps):
                start = time.perf_counter()
                F.cross_entropy(model(ids).float().view(-1, vocab), labels.view(-1)).item()
                evals.append(time.perf_counter() - start)
        train_s, eval_s = statistics.median(train), statistics.median(evals)
        n = sum(p.numel() for p in params)
        print(f"{name:<5} params {n:>11}  batch {batch}x{seq}  train step (median) {train_s * 1e3:8.1f} ms  "
              f"{batch * seq / train_s:9.0f} tokens/s  ({train_cpu:.2f} cpu-s/step) | eval {eval_s * 1e3:8.1f} ms  {batch * seq / eval_s:9.0f} tokens/s")


if __name__ == "__main__":
    main()
