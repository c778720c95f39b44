"""Issue 17's eval measure: `wgpt eval` on a GPT-2-124M-shaped directory in transformers' layout
(random weights, GPT-2's vocab.json + merges.txt with 50,257 tokens) over one 1,024-token window,
with its time, peak resident memory and the forward-only plan; and, where torch and transformers
are installed, GPT2LMHeadModel's loss on the same window beside it.

Standard library only for the wgpt side. The vocabulary is synthetic (every byte, then merges of
byte pairs, then <|endoftext|>), enough for GPT-2's shapes and a valid byte-level BPE.

usage: python3 scripts/eval-gpt2-shape.py [CORPUS]   (default: $WGPT_SHARED/data/tinyshakespeare.txt;
       WGPT_BIN: the wgpt binary, default target/release/wgpt)
"""

import array
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time

V, P, C, L = 50257, 1024, 768, 12


def byte_symbols():
    """GPT-2's printable stand-in for each byte (bytes that print as themselves keep their glyph)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def write_tokenizer(d):
    syms = byte_symbols()
    vocab = {s: i for i, s in enumerate(syms)}
    merges = []
    for a in syms:
        for b in syms:
            if len(vocab) == V - 1:
                break
            merges.append(f"{a} {b}")
            vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = V - 1
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def tensors():
    """GPT-2's parameters by Hugging Face name: (shape, values). Weights N(0, 0.02) (projections into
    the residual stream scaled by 1/sqrt(2L)), LayerNorm weights near 1, small biases. A seeded
    block of normals is reused at a different offset per tensor: random enough to score, fast in
    plain Python."""
    rng = random.Random(1337)
    normal = [rng.gauss(0.0, 1.0) for _ in range(1 << 20)]
    scaled, out, k = {}, [], 0

    def fill(name, shape, std, mean=0.0):
        nonlocal k
        if (std, mean) not in scaled:
            scaled[(std, mean)] = array.array("f", (mean + std * x for x in normal))
        block = scaled[(std, mean)]
        n = 1
        for s in shape:
            n *= s
        k += 1
        off = (k * 7919) % len(block)
        vals = array.array("f")
        while len(vals) < n:
            vals.extend(block[off:off + min(n - len(vals), len(block) - off)])
            off = 0
        out.append((name, shape, vals))

    fill("transformer.wte.weight", [V, C], 0.02)
    fill("transformer.wpe.weight", [P, C], 0.01)
    for l in range(L):
        h = f"transformer.h.{l}."
        fill(h + "ln_1.weight", [C], 0.1, 1.0)
        fill(h + "ln_1.bias", [C], 0.02)
        fill(h + "attn.c_attn.weight", [C, 3 * C], 0.02)
        fill(h + "attn.c_attn.bias", [3 * C], 0.02)
        fill(h + "attn.c_proj.weight", [C, C], 0.02 / (2 * L) ** 0.5)
        fill(h + "attn.c_proj.bias", [C], 0.02)
        fill(h + "ln_2.weight", [C], 0.1, 1.0)
        fill(h + "ln_2.bias", [C], 0.02)
        fill(h + "mlp.c_fc.weight", [C, 4 * C], 0.02)
        fill(h + "mlp.c_fc.bias", [4 * C], 0.02)
        fill(h + "mlp.c_proj.weight", [4 * C, C], 0.02 / (2 * L) ** 0.5)
        fill(h + "mlp.c_proj.bias", [C], 0.02)
    fill("transformer.ln_f.weight", [C], 0.1, 1.0)
    fill("transformer.ln_f.bias", [C], 0.02)
    return out


def write_model(d):
    header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, shape, vals in tensors():
        data = vals.tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)
    cfg = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": P,
        "n_ctx": P, "n_embd": C, "n_layer": L, "n_head": 12, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
        "attn_pdrop": 0.0, "bos_token_id": V - 1, "eos_token_id": V - 1,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def transformers_loss(d, text):
    """GPT2LMHeadModel's mean loss on the first 1,024 predictions of `text`, or why there is none."""
    try:
        import torch
        from transformers import GPT2LMHeadModel, GPT2TokenizerFast
    except ImportError as e:
        return f"not measured ({e.name} is not installed)"
    tok = GPT2TokenizerFast(vocab_file=os.path.join(d, "vocab.json"), merges_file=os.path.join(d, "merges.txt"))
    ids = tok(text)["input_ids"][: P + 1]
    model = GPT2LMHeadModel.from_pretrained(d).eval()
    with torch.no_grad():
        x = torch.tensor([ids[:P]])
        y = torch.tensor([ids[1:P + 1]])
        logits = model(x).logits.double()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    return f"{loss.item():.8f}"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("WGPT_SHARED", os.path.join(root, "..", "shared"))
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(shared, "data", "tinyshakespeare.txt")
    with open(corpus, encoding="utf-8") as f:
        text = f.read()[:3000]  # about 1,500 tokens of byte pairs: one whole window of 1,024
    wgpt = os.environ.get("WGPT_BIN", os.path.join(root, "target", "release", "wgpt"))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        write_tokenizer(d)
        write_model(d)
        print(f"GPT-2 124M-shaped directory written in {time.time() - t0:.1f} s")
        held = os.path.join(d, "held.txt")
        with open(held, "w", encoding="utf-8") as f:
            f.write(text)
        t0 = time.time()
        run = subprocess.run(
            [wgpt, "eval", "--ckpt", d, "--data", held],
            capture_output=True, text=True, env=dict(os.environ, WGPT_DEBUG="1"))
        rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        secs = time.time() - t0
        if run.returncode != 0:
            sys.exit(f"wgpt eval failed:\n{run.stdout}\n{run.stderr}")
        said = [l for l in run.stdout.splitlines() if "loss" in l]
        # WGPT_DEBUG's last plan (the program that scored): its buffers, up to the lifetime line.
        lines = run.stderr.splitlines()
        starts = [i for i, l in enumerate(lines) if l.strip() == "memory plan:"]
        plan = []
        for l in lines[starts[-1] + 1:] if starts else []:
            if not l.startswith("  arena") and not l.startswith("  class"):
                break
            if l.startswith("  arena") and l.split()[2] != "0":
                plan.append(" ".join(l.split()[1:4]))
        print(f"wgpt eval: {said[-1] if said else run.stdout.strip()}")
        print(f"wgpt eval: {secs:.1f} s, peak resident {rss_kib / 1024:.0f} MiB (host memory; on lavapipe the device's too)")
        if plan:
            print(f"wgpt eval: forward-only plan: {'; '.join(plan)}")
        print(f"transformers loss: {transformers_loss(d, text)}")


if __name__ == "__main__":
    main()
