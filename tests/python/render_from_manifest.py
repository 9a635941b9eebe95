"""Renders LM-BFF prompts from an lmbff export directory alone, independently of lmbff.

It reads EXPORT_DIR/lmbff-export.json (the template's parts, the label word ids, the
special ids, the truncation rules) and the tokenizer.json it names, and rebuilds the
input ids a host in another language must feed the exported model. Tests compare its
output with lmbff's own.

Usage:
    python render_from_manifest.py EXPORT_DIR EXAMPLES_JSON
EXAMPLES_JSON holds a JSON list of {"text_a": str, "text_b": str|null}. Prints one JSON
object: {"input_ids": [[[...], ...], ...], "token_type_ids": [[[...], ...], ...]},
unpadded: for each example, one rendering per demonstration set of the manifest (one
rendering when it has none).
As a library: render(manifest, tokenizer, examples), load(export_dir).
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer

# Unicode White_Space, as Rust's str::trim uses (Python's str.strip also strips \x1c-\x1f).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def load(export_dir):
    """Returns (manifest, tokenizer) of an export directory."""
    with open(os.path.join(export_dir, "lmbff-export.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    tok = Tokenizer.from_file(os.path.join(export_dir, manifest["tokenizer"]["file"]))
    tok.no_padding()
    tok.no_truncation()
    return manifest, tok


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids if text else []


def shape(raw, part, leading_space):
    s = raw.strip(WHITESPACE)
    if part["drop_last"]:
        s = s[:-1]
    if s and part["case"] == "lower_first":
        s = s[0].lower() + s[1:]
    elif s and part["case"] == "upper_first":
        s = s[0].upper() + s[1:]
    elif part["case"] not in ("keep", "lower_first", "upper_first"):
        raise ValueError(f"unknown case {part['case']!r}")
    if part["space"] and leading_space and s:
        s = " " + s
    return s


def render_pieces(manifest, tok, example, pieces, demo_segment=None):
    """Appends the pieces of one example rendered through the template: as the query,
    or (demo_segment set) as a demonstration: no cls, its label word in place of the
    mask, separators that keep the segment, sentences cut to other_sent_limit."""
    special = manifest["tokenizer"]["special_tokens"]
    leading_space = manifest["tokenizer"]["word_boundary"] == "leading_space"
    trunc = manifest["truncation"]
    demo = demo_segment is not None
    segment = demo_segment if demo else 0

    def word(label):
        # A class's word where the template shows it: its first word's tokens.
        if manifest.get("label_word_tokens") is not None:
            return list(manifest["label_word_tokens"][label])
        return [manifest["label_word_ids"][label]]

    for part in manifest["template"]["parts"]:
        kind = part["kind"]
        if kind == "cls" and demo:
            continue
        if kind == "mask" and demo:
            pieces.append([word(example["label"]), segment, False])
        elif kind in ("cls", "mask", "sep"):
            pieces.append([[special[kind]], segment, False])
            if kind == "sep" and part.get("next_segment") and not demo:
                segment += 1
        elif kind == "text":
            pieces.append([encode(tok, part["text"]), segment, False])
        elif kind == "label_word":
            pieces.append([word(part["label"]), segment, False])
        elif kind == "sentence":
            index = part["index"]
            raw = example.get("text_a") if index == 0 else example.get("text_b")
            if raw is None:
                raise ValueError(f"the template needs sentence {index}, but the example has none")
            ids = encode(tok, shape(raw, part, leading_space))
            controls = {special[k] for k in ("cls", "sep", "mask", "pad")}
            ids = [special["unk"] if i in controls else i for i in ids]
            limit = trunc["first_sent_limit"] if index == 0 and not demo else trunc["other_sent_limit"]
            if limit is not None:
                ids = ids[:limit]
            pieces.append([ids, segment, True])
        else:
            raise ValueError(f"unknown part kind {kind!r}")


def render_one(manifest, tok, example, demos=()):
    """Returns (input_ids, token_type_ids) of one example followed by `demos`."""
    trunc = manifest["truncation"]
    pieces = []  # [ids, segment, is_sentence]
    render_pieces(manifest, tok, example, pieces)
    query_end = len(pieces)
    last = [p for p in pieces if p[0]]
    demo_segment = last[-1][1] if last else 0
    for d in demos:
        render_pieces(manifest, tok, d, pieces, demo_segment)

    max_len = trunc["max_len"]
    fixed_len = sum(len(p[0]) for p in pieces if not p[2])
    if fixed_len >= max_len:
        raise ValueError(f"the template alone takes {fixed_len} tokens, max_len is {max_len}")
    # Cut first: the demonstrations' sentences (format 8's rule), or every sentence.
    first = query_end if trunc.get("demonstrations_first", False) else 0
    total = sum(len(p[0]) for p in pieces)
    while total > max_len:
        candidates = [p for p in pieces[first:] if p[2] and p[0]] or [p for p in pieces if p[2] and p[0]]
        longest = max(candidates, key=lambda p: len(p[0]))  # max() keeps the first on ties
        longest[0].pop()
        total -= 1

    input_ids, token_type_ids = [], []
    for ids, seg, _ in pieces:
        input_ids += ids
        token_type_ids += [seg] * len(ids)
    return input_ids, token_type_ids


def render(manifest, tok, examples):
    """Returns {"input_ids": [...], "token_type_ids": [...]} for a list of examples: per
    example, one rendering per demonstration set (one when there are none). An export
    with similarity-filtered demonstrations, or a multi-label prompt export, raises
    ValueError (not rendered another way)."""
    demos = manifest.get("demonstrations") or {}
    # What this renderer does not do is refused, not rendered another way: filtered
    # demonstrations are chosen per input by the export's own sentence encoder, and a
    # multi-label prompt export reads each input once per label name.
    if demos.get("filter"):
        raise ValueError("similarity-filtered demonstrations are chosen per input by the export's sentence encoder "
                         "(demo-encoder.onnx), which this renderer does not run")
    if manifest.get("task") == "multi-label" and manifest.get("method") == "prompt":
        raise ValueError("a multi-label prompt export reads each input once per label name; this renderer does not")
    sets = demos.get("sets") or [[]]
    out = {"input_ids": [], "token_type_ids": []}
    for ex in examples:
        renderings = [render_one(manifest, tok, ex, demos) for demos in sets]
        out["input_ids"].append([ids for ids, _ in renderings])
        out["token_type_ids"].append([types for _, types in renderings])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir")
    p.add_argument("examples_json")
    a = p.parse_args()
    manifest, tok = load(a.export_dir)
    with open(a.examples_json, encoding="utf-8") as f:
        examples = json.load(f)
    try:
        out = render(manifest, tok, examples)
    except ValueError as e:
        sys.exit(f"render_from_manifest: {e}")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
