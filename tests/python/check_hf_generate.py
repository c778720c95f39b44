"""Greedy generation in transformers against wgpt's: loads a GPT-2 directory with
GPT2LMHeadModel.from_pretrained and, for each case of CASES_JSON ([{"prompt_ids": [...], "ids": [...]}],
the ids wgpt's KV-cache generation picked after the prompt), runs generate(do_sample=False) for as
many tokens, with no end-of-text stop. Each case prints one line; exit 1 unless every id is
transformers', or the first that is not has a logit within 1e-5 of transformers' largest (a tie).
Usage: python check_hf_generate.py MODEL_DIR CASES_JSON"""

import json
import sys

import torch
from transformers import GPT2LMHeadModel


def main(model_dir, cases_json):
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    failed = False
    for i, case in enumerate(json.load(open(cases_json))):
        p = torch.tensor([case["prompt_ids"]])
        wgpt = case["ids"]
        with torch.no_grad():
            g = model.generate(
                p, attention_mask=torch.ones_like(p), do_sample=False, max_new_tokens=len(wgpt),
                min_new_tokens=len(wgpt), output_logits=True, return_dict_in_generate=True,
                eos_token_id=None, pad_token_id=0,
            )
        theirs = g.sequences[0, p.shape[1]:].tolist()
        step = next((s for s, (a, b) in enumerate(zip(wgpt, theirs)) if a != b), None)
        if step is None and len(theirs) == len(wgpt):
            print(f"case {i}: generate matches wgpt's {len(wgpt)} ids")
            continue
        if step is None:
            print(f"case {i}: transformers generated {len(theirs)} ids, wgpt {len(wgpt)}")
            failed = True
            continue
        row = g.logits[step][0]
        margin = (row[theirs[step]] - row[wgpt[step]]).item()
        tie = margin <= 1e-5
        failed |= not tie
        print(f"case {i}: step {step}: wgpt picked {wgpt[step]}, transformers {theirs[step]}, "
              f"{margin:.3g} apart ({'a tie' if tie else 'a mismatch'})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(*sys.argv[1:])
