"""Straightforward PyTorch SparseLoCo, written the way the public Templar code does it,
on the same ~100M LLaMA-shaped tensors as `benches/throughput/main.rs`.

Steps per tensor: e.mul_(0.95).add_(delta); rearrange into chunks; topk(|x|) per chunk;
gather; 2-bit quantization with codes stored one per uint8; 12-bit index packing with
torch ops; dense decompression (scatter_reduce mean) and un-chunking to update the error
feedback; torch.save of the payload. Aggregation: torch.load, unpack indices, dequantize,
median-norm clipping, concatenate peers and scatter_reduce(mean), un-chunk.

Run: /work/main/.venv/bin/python worker/sparseloco/benches/reference_torch.py
Environment: SPARSELOCO_BENCH_THREADS (default 2), SPARSELOCO_BENCH_PEERS (default 8).
"""

import io
import math
import os
import statistics
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

CHUNK = 64
TOPK = 64
DECAY = 0.95
N_BINS = 4
RANGE_IN_SIGMAS = 6  # scale = 6 * std / 4 = 1.5 std
AGGREGATE_RUNS = 5


def layer(prefix, hidden, mlp, kv):
    return [
        (f"{prefix}.self_attn.q_proj.weight", (hidden, hidden)),
        (f"{prefix}.self_attn.k_proj.weight", (kv, hidden)),
        (f"{prefix}.self_attn.v_proj.weight", (kv, hidden)),
        (f"{prefix}.self_attn.o_proj.weight", (hidden, hidden)),
        (f"{prefix}.mlp.gate_proj.weight", (mlp, hidden)),
        (f"{prefix}.mlp.up_proj.weight", (mlp, hidden)),
        (f"{prefix}.mlp.down_proj.weight", (hidden, mlp)),
        (f"{prefix}.input_layernorm.weight", (hidden,)),
        (f"{prefix}.post_attention_layernorm.weight", (hidden,)),
    ]


def bench_specs():
    specs = []
    for i in range(2):
        specs += layer(f"llama1b.layers.{i}", 2048, 5632, 256)
    for i in range(2):
        specs += layer(f"llama150m.layers.{i}", 768, 2048, 768)
    return specs


def smaller_split(n, close_to):
    return max(d for d in range(1, min(n, close_to) + 1) if n % d == 0)


def chunk(x):
    """(y h) (x w) -> y x (h w); (x w) -> x w."""
    if x.dim() == 2:
        h, w = smaller_split(x.shape[0], CHUNK), smaller_split(x.shape[1], CHUNK)
        y, xx = x.shape[0] // h, x.shape[1] // w
        return x.view(y, h, xx, w).permute(0, 2, 1, 3).reshape(y, xx, h * w)
    w = smaller_split(x.shape[0], CHUNK)
    return x.view(-1, w)


def unchunk(c, shape):
    if len(shape) == 2:
        h, w = smaller_split(shape[0], CHUNK), smaller_split(shape[1], CHUNK)
        y, xx = shape[0] // h, shape[1] // w
        return c.view(y, xx, h, w).permute(0, 2, 1, 3).reshape(shape)
    return c.reshape(shape)


def pack_12bit(indices):
    flat = indices.flatten().to(torch.int32)
    pairs = flat.reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    packed = torch.zeros(pairs.shape[0] * 3, dtype=torch.uint8)
    packed[0::3] = (a & 0xFF).to(torch.uint8)
    packed[1::3] = (((a >> 8) & 0x0F) | ((b & 0x0F) << 4)).to(torch.uint8)
    packed[2::3] = ((b >> 4) & 0xFF).to(torch.uint8)
    return packed


def unpack_12bit(packed, shape):
    n = math.prod(shape)
    out = torch.zeros(n, dtype=torch.int64)
    b0, b1, b2 = (packed[i::3].to(torch.int64) for i in range(3))
    out[0::2] = b0 | ((b1 & 0x0F) << 8)
    out[1::2] = ((b1 >> 4) & 0x0F) | (b2 << 4)
    return out.view(*shape)


def quantize(val):
    shift = val.mean()
    centered = val - shift
    std = centered.norm() / math.sqrt(centered.numel() - 1)
    scale = RANGE_IN_SIGMAS * std / N_BINS
    if scale == 0 or torch.isnan(scale) or torch.isinf(scale):
        scale = torch.tensor(1.0)
    q = (centered / scale + N_BINS // 2).round().clamp(0, N_BINS - 1).to(torch.uint8)
    sums = torch.zeros(N_BINS).scatter_add_(0, q.flatten().long(), centered.flatten())
    counts = torch.zeros(N_BINS).scatter_add_(0, q.flatten().long(), torch.ones(centered.numel()))
    nominal = (torch.arange(N_BINS, dtype=torch.float32) - N_BINS // 2) * scale
    lookup = torch.where(counts > 0, sums / counts.clamp(min=1), nominal)
    return q, shift, lookup


def dequantize(q, shift, lookup):
    return lookup[q.long()] + shift


def scatter_mean(shape_chunked, idx, val):
    x = torch.zeros(shape_chunked)
    x.scatter_reduce_(-1, idx, val, reduce="mean", include_self=False)
    return x


@torch.no_grad()
def compress(errors, grads, specs):
    payload = {}
    for (name, shape), delta in zip(specs, grads):
        e = errors[name]
        e.mul_(DECAY).add_(delta)
        x = chunk(e)
        k = min(TOPK, x.shape[-1])
        idx = torch.topk(x.abs(), k=k, dim=-1, largest=True, sorted=False).indices
        val = torch.gather(x, -1, idx)
        q, shift, lookup = quantize(val)
        transmit = unchunk(scatter_mean(x.shape, idx, dequantize(q, shift, lookup)), shape)
        e.sub_(transmit)
        payload[name] = (pack_12bit(idx), q, shift, lookup, list(x.shape), list(idx.shape))
    return payload


def encode(payload):
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def decode(data):
    return torch.load(io.BytesIO(data), weights_only=True)


@torch.no_grad()
def aggregate(payloads, specs):
    out = []
    for name, shape in specs:
        idxs, vals = [], []
        for p in payloads:
            packed, q, shift, lookup, xshape, ishape = p[name]
            idxs.append(unpack_12bit(packed, ishape))
            vals.append(dequantize(q, shift, lookup))
        norms = torch.stack([torch.norm(v, p=2) for v in vals])
        median = torch.median(norms)
        vals = [v * torch.clamp(median / (n + 1e-8), max=1) for v, n in zip(vals, norms)]
        dense = scatter_mean(xshape, torch.cat(idxs, -1), torch.cat(vals, -1))
        out.append(unchunk(dense, shape))
    return out


def main():
    threads = int(os.environ.get("SPARSELOCO_BENCH_THREADS", "2"))
    peers = max(2, int(os.environ.get("SPARSELOCO_BENCH_PEERS", "8")))
    torch.set_num_threads(threads)
    specs = bench_specs()
    numel = sum(math.prod(s) for _, s in specs)
    print(f"reference (PyTorch {torch.__version__}): {len(specs)} tensors, {numel} parameters, "
          f"{threads} threads, {peers} peers")
    torch.manual_seed(0)
    grads = [torch.randn(s) for _, s in specs]
    errors = {n: torch.zeros(s) for n, s in specs}

    start = time.perf_counter()
    encode(compress(errors, grads, specs))
    print(f"warm-up compress+encode: {time.perf_counter() - start:.3f} s")

    wire, times = [], []
    for _ in range(peers):
        start = time.perf_counter()
        data = encode(compress(errors, grads, specs))
        times.append(time.perf_counter() - start)
        wire.append(data)
    compress_s, compress_best = statistics.median(times), min(times)

    agg_times = []
    decode_s = 0.0
    for _ in range(AGGREGATE_RUNS):
        start = time.perf_counter()
        payloads = [decode(d) for d in wire]
        decode_s = time.perf_counter() - start
        update = aggregate(payloads, specs)
        agg_times.append(time.perf_counter() - start)
        del update
    aggregate_s, aggregate_best = statistics.median(agg_times), min(agg_times)

    wire_bytes = len(wire[0])
    fp32, bf16 = numel * 4, numel * 2
    def rate(s):
        return numel / s / 1e6
    print(f"compress+encode (1 peer):   median {compress_s:.3f} s = {rate(compress_s):.1f} M elements/s   "
          f"best {compress_best:.3f} s = {rate(compress_best):.1f} M elements/s")
    print(f"decode+aggregate ({peers} peers): median {aggregate_s:.3f} s = {rate(aggregate_s):.1f} M elements/s   "
          f"best {aggregate_best:.3f} s = {rate(aggregate_best):.1f} M elements/s   (decode alone {decode_s:.3f} s)")
    print(f"wire bytes per peer: {wire_bytes}  dense fp32 {fp32}  dense bf16 {bf16}  "
          f"ratio vs fp32 {fp32 / wire_bytes:.2f}x  vs bf16 {bf16 / wire_bytes:.2f}x")


if __name__ == "__main__":
    main()
