"""The PyTorch side of `make bench-gpu`: GPT-2 124M training steps (forward, backward, AdamW with
wgpt's settings) on random tokens, as Hugging Face's GPT2LMHeadModel, in fp32 eager, bf16 autocast
eager and, if it works, bf16 torch.compile. One JSON object per mode on stdout:
{"impl": "torch", "mode", "batch_size", "block_size", "step_ms", "tokens_per_s"} or
{"impl": "torch", "mode", "error"}.

usage: python3 scripts/torch_gpt2.py BATCH BLOCK STEPS [MODE ...]   (modes: fp32 bf16 compile)
"""

import json
import sys
import time


def run(mode, batch, block, steps):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1337)
    dev = "cuda"
    # wgpt's GPT-2: no dropout, tied lm_head, the reference's layer-norm epsilon.
    cfg = GPT2Config(n_positions=block, n_ctx=block, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).to(dev)
    model.train()
    # fp32 eager keeps fp32 matmuls (no TF32), as wgpt's f32 kernels do.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = model
    if mode == "compile":
        step_fn = torch.compile(model)
    ids = torch.randint(0, cfg.vocab_size, (batch, block + 1), device=dev)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode in ("bf16", "compile")):
            logits = step_fn(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(2):  # warm-up (and compilation)
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / steps
    return {"step_ms": secs * 1e3, "tokens_per_s": batch * block / secs, "loss": float(loss)}


def main():
    batch, block, steps = (int(a) for a in sys.argv[1:4])
    modes = sys.argv[4:] or ["fp32", "bf16", "compile"]
    for mode in modes:
        row = {"impl": "torch", "mode": mode, "batch_size": batch, "block_size": block}
        try:
            row.update(run(mode, batch, block, steps))
        except Exception as e:  # one line per failed mode; the others still run
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        print(json.dumps(row), flush=True)
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:
            pass


if __name__ == "__main__":
    main()
