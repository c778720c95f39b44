"""Loads wgpt's tokenizer.json files with the Hugging Face `tokenizers` library and checks that
it encodes each text to the ids wgpt gave and decodes them back. Input: a JSON file of cases
[{"tokenizer": path, "text": str, "ids": [int]}]. Exit status 1 on any mismatch."""

import json
import sys

from tokenizers import Tokenizer


def main(cases_path):
    cases = json.load(open(cases_path, encoding="utf-8"))
    failed = 0
    for case in cases:
        tok = Tokenizer.from_file(case["tokenizer"])
        ids = tok.encode(case["text"], add_special_tokens=False).ids
        back = tok.decode(case["ids"])
        if ids != case["ids"]:
            first = next((i for i, (a, b) in enumerate(zip(ids, case["ids"])) if a != b), min(len(ids), len(case["ids"])))
            print(f"{case['tokenizer']}: ids differ at {first} (tokenizers {ids[first:first + 8]}, wgpt {case['ids'][first:first + 8]}; lengths {len(ids)} vs {len(case['ids'])})")
            failed += 1
        elif back != case["text"]:
            print(f"{case['tokenizer']}: decode differs: {back[:80]!r} vs {case['text'][:80]!r}")
            failed += 1
        else:
            print(f"{case['tokenizer']}: {len(ids)} ids match, decode matches")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1])
