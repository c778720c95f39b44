"""Loads a wgpt run directory with Hugging Face transformers, as a user would, and scores a text
the way `wgpt eval` does (non-overlapping windows of n_positions tokens from the start, a final
partial window dropped), printing {"loss", "perplexity", "tokens"} as one JSON object.
Usage: python check_hf_model.py RUN_DIR TEXT_FILE [WGPT_LOSS] (with WGPT_LOSS: exit 1 unless the
two losses agree within 1e-4)."""

import json
import math
import sys

import torch
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel


def main(run_dir, text_file, wgpt_loss=None):
    model = GPT2LMHeadModel.from_pretrained(run_dir).eval()
    tok = Tokenizer.from_file(f"{run_dir}/tokenizer.json")
    ids = tok.encode(open(text_file, encoding="utf-8").read(), add_special_tokens=False).ids
    t = model.config.n_positions
    windows = (len(ids) - 1) // t
    total = 0.0
    with torch.no_grad():
        for w in range(0, windows, 16):
            batch = [ids[(w + k) * t:(w + k) * t + t + 1] for k in range(min(16, windows - w))]
            x = torch.tensor([b[:-1] for b in batch])
            y = torch.tensor([b[1:] for b in batch])
            logits = model(x).logits
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
    loss = total / (windows * t)
    print(json.dumps({"loss": loss, "perplexity": math.exp(loss), "tokens": windows * t}))
    if wgpt_loss is not None and abs(loss - float(wgpt_loss)) > 1e-4:
        print(f"transformers loss {loss} differs from wgpt's {wgpt_loss}")
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:])
