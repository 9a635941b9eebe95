"""Builds the test fixtures: random-init tiny BERT, RoBERTa and MPNet masked LMs (HF
transformers, no downloads) with their tokenizers, and reference outputs for parity.

usage: make_fixtures.py OUT_DIR [MINILM_DIR]

OUT_DIR/
  bert/          BertForMaskedLM, WordPiece tokenizer, model.safetensors
  bert-bin/      the same weights as pytorch_model.bin (gelu_new activation)
  roberta/       RobertaForMaskedLM, byte-level BPE tokenizer
  mpnet/         MPNetForMaskedLM, WordPiece tokenizer with <s> </s> <mask>, 144 positions
  */parity.safetensors   input_ids, attention_mask, token_type_ids, logits
  minilm.safetensors     the default MiniLM's encoder outputs on real sentences
  mpnet-real.safetensors the same for all-mpnet-base-v2, when $LMBFF_MPNET_MODEL holds it
                         (scripts/get-mpnet; optional)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import (AutoModel, AutoTokenizer, BertConfig, BertForMaskedLM,
                          BertTokenizerFast, MPNetConfig, MPNetForMaskedLM, MPNetTokenizerFast,
                          RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast)

WORDS = """the a an it was is this that movie film book story plot actor actors great terrible
good bad fun boring slow fast and or but not no yes maybe with without very really too
of to in on for at by from as i you he she we they my your his her our their me him us them
love loved hate hated like liked enjoy enjoyed watch watched read ride ending beginning middle
music score scene scenes characters character dialogue script director direction acting
funny sad dull bright dark long short new old best worst better worse nothing something
everything happens flat lively account deadpan vivid source material fails rise above
? , . ! ' - : ; ( )""".split()

CORPUS = [
    "it was great .", "it was terrible .", "the movie was great and fun .",
    "a terrible , boring film .", "the plot was great but the ending was terrible .",
    "i loved this great book .", "what a terrible waste of time .",
    "nothing happens , and it happens to flat characters .",
    "as lively an account as it is deadpan .", "the acting was great , the script terrible .",
] * 20


def bert_tokenizer(out, specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), cls=BertTokenizerFast):
    os.makedirs(out, exist_ok=True)
    chars = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = list(specials) + sorted(set(WORDS)) + chars + ["##" + c for c in chars]
    seen, uniq = set(), []
    for t in vocab:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    path = os.path.join(out, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(uniq) + "\n")
    tok = cls(vocab={t: i for i, t in enumerate(uniq)}, do_lower_case=True)
    tok.save_pretrained(out)
    save_special(tok, os.path.join(out, "special.json"))
    return tok


def save_special(tok, path):
    """The special-token ids transformers reads from the tokenizer, for the Rust side to match."""
    ids = {k: getattr(tok, f"{k}_token_id") for k in ("cls", "sep", "mask", "pad", "unk")}
    with open(path, "w") as f:
        json.dump(ids, f)


def roberta_tokenizer(out):
    os.makedirs(out, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS + [" ".join(WORDS)] * 5, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(out)
    tok = RobertaTokenizerFast(vocab=os.path.join(out, "vocab.json"), merges=os.path.join(out, "merges.txt"))
    tok.save_pretrained(out)
    save_special(tok, os.path.join(out, "special.json"))
    return tok


def parity_batch(vocab, max_len, pad_id, special_ids, two_segments):
    g = torch.Generator().manual_seed(0)
    lens = [max_len, max_len - 7, 5, max_len // 2]
    b = len(lens)
    ids = torch.full((b, max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((b, max_len), dtype=torch.long)
    types = torch.zeros((b, max_len), dtype=torch.long)
    low = max(special_ids) + 1
    for r, n in enumerate(lens):
        ids[r, :n] = torch.randint(low, vocab, (n,), generator=g)
        mask[r, :n] = 1
        if two_segments and n > 4:
            types[r, n // 2:n] = 1
    return ids, mask, types


def save_parity(model, out, ids, mask, types, use_types):
    model.eval()
    with torch.no_grad():
        kw = dict(input_ids=ids, attention_mask=mask)
        if use_types:
            kw["token_type_ids"] = types
        logits = model(**kw).logits.float().contiguous()
    save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "logits": logits},
              os.path.join(out, "parity.safetensors"))


def widen_activations(m):
    """Scales the weights that feed the GELUs (each layer's intermediate dense, the
    masked-LM head's dense) so their inputs reach |x| of 2 to 4, where erf and tanh GELU
    differ by up to 5e-4: at the default init (|x| < 0.5) they differ by 2e-5, and a
    swapped GELU passed the parity tolerance unseen."""
    with torch.no_grad():
        for name, module in m.named_modules():
            if name.endswith("intermediate.dense") or name.endswith("transform.dense") or name == "lm_head.dense":
                module.weight.normal_(0, 0.5)
            # The layer's output dense carries the GELU's difference into the residual
            # stream at the size of the hidden states, not damped 50-fold.
            elif name.endswith(".output.dense") and ".attention." not in name:
                module.weight.normal_(0, 0.5)


def main():
    out = sys.argv[1]
    minilm = sys.argv[2] if len(sys.argv) > 2 else None
    torch.manual_seed(0)

    # BERT: safetensors, erf GELU, two segments, 64 positions.
    d = os.path.join(out, "bert")
    tok = bert_tokenizer(d)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                     hidden_act="gelu", attn_implementation="eager")
    m = BertForMaskedLM(cfg)
    with torch.no_grad():  # a non-zero decoder bias, so the test sees it
        m.cls.predictions.bias.normal_(0, 0.5)
    m.save_pretrained(d, safe_serialization=True)
    ids, mask, types = parity_batch(len(tok), 64, tok.pad_token_id, tok.all_special_ids, True)
    save_parity(m, d, ids, mask, types, True)

    # BERT again, tanh GELU, saved as pytorch_model.bin.
    d = os.path.join(out, "bert-bin")
    tok = bert_tokenizer(d)
    cfg.hidden_act = "gelu_new"
    m = BertForMaskedLM(cfg)
    widen_activations(m)
    m.save_pretrained(d)
    # transformers 5 writes safetensors only; write the classic torch.save format.
    torch.save(dict(m.state_dict()), os.path.join(d, "pytorch_model.bin"))
    os.remove(os.path.join(d, "model.safetensors"))
    save_parity(m, d, ids, mask, types, True)

    # RoBERTa: byte-level BPE, positions offset by pad_token_id + 1; tanh GELU in the
    # layers while its LM head always uses erf GELU (pins both).
    d = os.path.join(out, "roberta")
    tok = roberta_tokenizer(d)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, hidden_act="gelu_new", attn_implementation="eager")
    m = RobertaForMaskedLM(cfg)
    widen_activations(m)
    with torch.no_grad():
        m.lm_head.bias.normal_(0, 0.5)
    m.save_pretrained(d, safe_serialization=True)
    ids, mask, types = parity_batch(len(tok), 64, tok.pad_token_id, tok.all_special_ids, False)
    save_parity(m, d, ids, mask, types, False)

    # MPNet: WordPiece with RoBERTa's special tokens (and, as in all-mpnet-base-v2's
    # vocabulary, BERT's names as ordinary entries it never uses), positions offset by 2, no token
    # types, a relative-position bias in every layer; 144 positions put pairs past the
    # bucket function's max_distance of 128, so every branch of it is exercised.
    d = os.path.join(out, "mpnet")
    tok = bert_tokenizer(d, ("<s>", "<pad>", "</s>", "<unk>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<mask>"),
                         MPNetTokenizerFast)
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=146, pad_token_id=1,
                      relative_attention_num_buckets=32, hidden_act="gelu", attn_implementation="eager")
    m = MPNetForMaskedLM(cfg)
    with torch.no_grad():
        m.lm_head.bias.normal_(0, 0.5)
        m.mpnet.encoder.relative_attention_bias.weight.normal_(0, 1.0)
    m.save_pretrained(d, safe_serialization=True)
    ids, mask, types = parity_batch(len(tok), 144, tok.pad_token_id, tok.all_special_ids, False)
    save_parity(m, d, ids, mask, types, False)

    # The real models: encoder outputs on real sentences of mixed lengths.
    texts = ["nothing happens , and it happens to flat characters .",
             "A fun ride.", "The drama discloses nothing. It was terrible.",
             "as lively an account as seinfeld is deadpan ."]
    mpnet = os.environ.get("LMBFF_MPNET_MODEL")
    for name, path, mask in [("minilm", minilm, "[MASK]"), ("mpnet-real", mpnet, "<mask>")]:
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            continue
        tok = AutoTokenizer.from_pretrained(path)
        save_special(tok, os.path.join(out, f"{name}-special.json"))
        model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        pairs = [f"It was {mask}.", "Yes", "a second segment here", "ok"]
        enc = tok(texts, pairs, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state.contiguous()
        # MPNet has no segments; ours takes (and ignores) zeros.
        types = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
        save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "token_type_ids": types, "hidden": hidden}, os.path.join(out, f"{name}.safetensors"))


if __name__ == "__main__":
    main()
