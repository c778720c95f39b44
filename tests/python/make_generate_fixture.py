"""Makes tests/fixtures/hf_generate, once, with torch, tokenizers and transformers: a GPT-2 directory
as transformers' save_pretrained writes it (a 2-layer, C=32 model with a 384-token byte-level BPE,
trained for a few hundred steps on the corpus so its greedy text is not one repeated token), and
expected.safetensors with transformers' generate(do_sample=False) for two prompts up to the context
length (the last id is picked from all 64 positions, so prompt + generated is 65 ids, as `wgpt sample`
makes): each prompt's ids, the ids it generated and the logits of every generated step. The Rust
test (tests/generate.rs) checks wgpt's KV-cache generation against it without torch.
Usage: python make_generate_fixture.py CORPUS OUT_DIR"""

import json
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel

PROMPTS = ["ROMEO:", "First Citizen:\nWe are"]
EOT = "<|endoftext|>"


def main(corpus, out):
    text = open(corpus, encoding="utf-8").read()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text[:200_000]], trainer)
    eot = tok.token_to_id(EOT)
    torch.manual_seed(1234)
    cfg = GPT2Config(
        vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=eot, eos_token_id=eot,
    )
    model = GPT2LMHeadModel(cfg)
    ids = torch.tensor(tok.encode(text[:300_000]).ids)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    for step in range(400):
        starts = torch.randint(0, len(ids) - 65, (32,))
        batch = torch.stack([ids[s:s + 65] for s in starts])
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained 400 steps, last loss {loss.item():.3f}")
    model.eval()
    model.save_pretrained(out)
    tok.save(f"{out}/tokenizer.json")
    expected, texts = {}, []
    for i, prompt in enumerate(PROMPTS):
        p = torch.tensor([tok.encode(prompt).ids])
        with torch.no_grad():
            g = model.generate(
                p, attention_mask=torch.ones_like(p), do_sample=False, max_new_tokens=65 - p.shape[1],
                output_logits=True, return_dict_in_generate=True, pad_token_id=eot,
            )
        new = g.sequences[0, p.shape[1]:]
        expected[f"prompt{i}.ids"] = p[0].to(torch.int32)
        expected[f"prompt{i}.greedy"] = new.to(torch.int32).contiguous()
        expected[f"prompt{i}.logits"] = torch.stack([s[0] for s in g.logits]).float().contiguous()
        texts.append({"prompt": prompt, "continuation": tok.decode(new.tolist())})
    save_file(expected, f"{out}/expected.safetensors", metadata={"prompts": json.dumps(texts)})
    for t in texts:
        print(json.dumps(t))


if __name__ == "__main__":
    main(*sys.argv[1:])
