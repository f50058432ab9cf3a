"""Would `torch.compile` make the built-in engine's decode step faster? A side-by-side measurement.

    .venv/bin/python bench/compile_decode.py [--batch 64] [--steps 60] [--mode default|max-autotune-no-cudagraphs]

One decode step of the default recipe's model (random weights; speed does not depend on training), batch
`--batch`, a 30-token context already cached, three ways, each over `--steps` steps:

- engine:  the engine's own step (`Transformer.forward` with a `KVCache`, keys sliced to the filled length);
- fixed:   a fixed-shape step (attention over every slot of the full-length cache, invalid ones masked,
           so no shape changes from step to step), eager. The new token's key and value join the attention
           separately and are returned, the caller writes them into the cache: a compiled graph that
           writes its input cache in place copies the whole cache every step (measured: 4.7x slower);
- compiled: the fixed step under `torch.compile(dynamic=False, mode=--mode)`; compile time reported.

Prints ms per step, the speed-up over the engine and the largest logit difference (compiled vs fixed).
Not part of `make bench`: its answer so far (README, "Where the time goes") is that compiling does not
pay at this model size on this machine.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ponder.config import load_recipe
from ponder.policy.tiny import TinyPolicy
from ponder.policy.transformer import KVCache, apply_rope


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--context", type=int, default=30)
    ap.add_argument("--mode", default="default", help="torch.compile mode (default, max-autotune-no-cudagraphs)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    opts = ap.parse_args(argv)
    torch.set_num_threads(opts.threads)
    cfg = load_recipe("default").model
    model = TinyPolicy(cfg, seed=0).model.eval()
    B, ctx = opts.batch, opts.context
    base = KVCache(cfg, B, cfg.max_seq_len, torch.float32)
    base.k.normal_()
    base.v.normal_()
    base.valid[:, :ctx] = True
    nxt = torch.randint(3, 20, (B,))
    pos = torch.full((B,), ctx)

    def engine(n: int) -> torch.Tensor:
        c = KVCache.__new__(KVCache)
        c.k, c.v, c.valid, c.length = base.k.clone(), base.v.clone(), base.valid.clone(), ctx
        p = pos.clone()
        with torch.no_grad():
            for _ in range(n):
                c.valid[:, c.length] = True
                logits = model(nxt[:, None], p[:, None], c)[:, -1]
                p = p + 1
        return logits

    def step(idx, p, k_all, v_all, valid):
        x = model.embed(idx[:, None])
        cos, sin = model.rope_cos[p][:, None, None, :], model.rope_sin[p][:, None, None, :]
        mask = torch.zeros(valid.shape, dtype=x.dtype).masked_fill(~valid, float("-inf"))[:, None, None, :]
        ks, vs = [], []
        for i, blk in enumerate(model.blocks):
            D = x.shape[-1]
            qkv = blk.qkv(blk.norm1(x)).view(B, 1, 3, blk.h, D // blk.h).permute(2, 0, 3, 1, 4)
            q, k = apply_rope(qkv[:2], cos, sin)
            v = qkv[2]
            scale = q.shape[-1] ** -0.5
            w = torch.softmax(torch.cat([(q @ k_all[i].transpose(-1, -2)) * scale + mask,
                                         (q * k).sum(-1, keepdim=True) * scale], -1), dim=-1)
            att = w[..., :-1] @ v_all[i] + w[..., -1:] * v
            x = x + blk.proj(att.transpose(1, 2).reshape(B, 1, D))
            gate, up = blk.gate_up(blk.norm2(x)).chunk(2, dim=-1)
            x = x + blk.down(F.silu(gate) * up)
            ks.append(k)
            vs.append(v)
        return F.linear(model.norm(x), model.embed.weight)[:, -1], torch.stack(ks), torch.stack(vs)

    def fixed(fn, n: int) -> torch.Tensor:
        k, v, valid, p = base.k.clone(), base.v.clone(), base.valid.clone(), pos.clone()
        with torch.no_grad():
            for t in range(n):
                logits, kn, vn = fn(nxt, p, k, v, valid)
                k[:, :, :, ctx + t] = kn[:, :, :, 0]
                v[:, :, :, ctx + t] = vn[:, :, :, 0]
                valid[:, ctx + t] = True
                p = p + 1
        return logits

    def per_step(fn) -> float:
        fn(2)
        start = time.perf_counter()
        fn(opts.steps)
        return (time.perf_counter() - start) / opts.steps * 1e3

    start = time.perf_counter()
    compiled = torch.compile(step, dynamic=False, mode=None if opts.mode == "default" else opts.mode)
    fixed(compiled, 2)
    compile_s = time.perf_counter() - start
    rows = [("engine", per_step(engine)), ("fixed", per_step(lambda n: fixed(step, n))),
            ("compiled", per_step(lambda n: fixed(compiled, n)))]
    gap = float((fixed(step, 3) - fixed(compiled, 3)).abs().max())
    print(f"batch {B}, {opts.threads} thread(s), mode {opts.mode}, compile {compile_s:.1f} s, "
          f"max |compiled - fixed| logit {gap:.1e}\n\n| step | ms | speed-up over the engine |\n|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {rows[0][1] / ms:.2f}x |")


if __name__ == "__main__":
    main()
