//! Loading errors are named errors, never panics: unsupported architectures, missing
//! files, shape mismatches, corrupt files, partial heads; and a headless checkpoint gets
//! a new tied head.

mod common;

use std::path::{Path, PathBuf};

use lmbff::model::MaskedLm;
use lmbff::Error;
use tch::{Device, Tensor};

fn copy_fixture(name: &str, test: &str) -> PathBuf {
    let src = common::fixtures().join(name);
    let dst = common::tempdir(test);
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

fn rewrite_weights(dir: &Path, keep: impl Fn(&str) -> bool) {
    let file = dir.join("model.safetensors");
    let t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file).unwrap().into_iter().filter(|(n, _)| keep(n)).collect();
    Tensor::write_safetensors(&t, &file).unwrap();
}

fn load(dir: &Path) -> lmbff::Result<MaskedLm> {
    common::one_thread();
    MaskedLm::load(dir, Device::Cpu)
}

#[test]
fn unsupported_architecture() {
    let d = copy_fixture("bert", "arch");
    edit_config(&d, |v| v["model_type"] = "gpt2".into());
    let e = load(&d).err().unwrap();
    assert!(matches!(&e, Error::UnsupportedArchitecture(a) if a == "gpt2"), "{e}");
    assert!(e.to_string().contains("BERT, RoBERTa and MPNet"), "{e}");
}

#[test]
fn missing_files() {
    let d = copy_fixture("bert", "missing");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = load(&d).err().unwrap();
    assert!(matches!(&e, Error::MissingFile { what: "weights", .. }), "{e}");
    std::fs::remove_file(d.join("config.json")).unwrap();
    let e = load(&d).err().unwrap();
    assert!(matches!(&e, Error::MissingFile { what: "model config", .. }), "{e}");
    let e = load(Path::new("/nonexistent/model")).err().unwrap();
    assert!(e.to_string().contains("config.json"), "{e}");
    // Only a slow tokenizer's files: the error says how to write tokenizer.json.
    let d = copy_fixture("bert", "slow-tokenizer");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let e = lmbff::tokenize::Tokenizer::from_dir(&d).err().unwrap().to_string();
    assert!(e.contains("it has vocab.txt, a slow tokenizer's file") && e.contains(".save_pretrained("), "{e}");
}

#[test]
fn shape_mismatch_names_the_weight() {
    let d = copy_fixture("bert", "shape");
    edit_config(&d, |v| v["intermediate_size"] = 48.into());
    let e = load(&d).err().unwrap();
    match &e {
        Error::WeightShape { name, expected, found, .. } => {
            assert!(name.contains("intermediate.dense"), "{name}");
            assert_eq!((expected[0], found[0]), (48, 64), "{name}: {expected:?} vs {found:?}");
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn bad_config_values() {
    let d = copy_fixture("bert", "cfg");
    edit_config(&d, |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("model_type").unwrap();
        o.remove("architectures");
    });
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("no model_type")));
    // A config older than model_type names its class: the type is read from it.
    edit_config(&d, |v| v["architectures"] = serde_json::json!(["BertForMaskedLM"]));
    assert!(load(&d).is_ok(), "the type read from architectures");
    edit_config(&d, |v| v["architectures"] = serde_json::json!(["GPT2LMHeadModel"]));
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("no model_type, and no architectures naming")));
    // Values the model cannot run with are named when the config is read (a zero
    // layer_norm_eps gave NaN outputs; a dropout of 1.5 failed at the first step).
    for (key, value, named) in [("layer_norm_eps", 0.0, "layer_norm_eps must be positive"), ("hidden_dropout_prob", 1.5, "hidden_dropout_prob is a dropout probability")] {
        edit_config(&d, |v| {
            v["model_type"] = "bert".into();
            v[key] = value.into();
        });
        assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains(named)), "{key}");
        edit_config(&d, |v| v[key] = if key == "layer_norm_eps" { 1e-12.into() } else { 0.1.into() });
    }
    edit_config(&d, |v| {
        v["model_type"] = "bert".into();
        // null where HF reads it as unset: the default.
        v["pad_token_id"] = serde_json::Value::Null;
        v["position_embedding_type"] = serde_json::Value::Null;
        v["hidden_act"] = "quick_gelu".into();
    });
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("quick_gelu")));
    edit_config(&d, |v| v["hidden_act"] = "gelu".into());
    edit_config(&d, |v| v["num_attention_heads"] = 5.into());
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("multiple")));
    std::fs::write(d.join("config.json"), "{not json").unwrap();
    assert!(matches!(load(&d).err().unwrap(), Error::Json { .. }));
    // HF's MPNet counts positions from index 1 whatever the config says: refuse another.
    let d = copy_fixture("mpnet", "cfg-mpnet");
    edit_config(&d, |v| v["pad_token_id"] = 0.into());
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("pad_token_id 1")));
    // It also buckets relative positions into 32 whatever the config says.
    edit_config(&d, |v| {
        v["pad_token_id"] = 1.into();
        v["relative_attention_num_buckets"] = 64.into();
    });
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("relative_attention_num_buckets 32")));
    // RoBERTa counts positions from pad_token_id + 1: a padding id past the table
    // failed inside the first forward pass.
    let d = copy_fixture("roberta", "cfg-roberta");
    edit_config(&d, |v| v["pad_token_id"] = 600.into());
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("pad_token_id 600 leaves no position")));
    // A decoder config (causal attention in transformers) is not what lmbff runs.
    let d = copy_fixture("bert", "cfg-decoder");
    edit_config(&d, |v| v["is_decoder"] = true.into());
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("is_decoder")));
    // A checkpoint with more layers than its config: the extra ones were dropped
    // without a word.
    let d = copy_fixture("bert", "cfg-layers");
    let mut layers = 0;
    edit_config(&d, |v| {
        layers = v["num_hidden_layers"].as_i64().unwrap();
        v["num_hidden_layers"] = (layers - 1).into();
    });
    let err = load(&d).err().unwrap();
    assert!(matches!(&err, Error::Config(m) if m.contains(&format!("layer.{}.", layers - 1)) && m.contains("num_hidden_layers")), "{err}");
}

/// lmbff's decoder is the word embeddings. A stored decoder that is a copy of them loads
/// (whatever tie_word_embeddings says; a save says it is tied, and that its weights are
/// fp32 whatever the source's dtype); one that
/// differs is refused by name (it was silently replaced).
#[test]
fn a_stored_decoder_must_be_the_word_embeddings() {
    let d = copy_fixture("bert", "untied");
    let file = d.join("model.safetensors");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file).unwrap();
    let words = t.iter().find(|(n, _)| n.ends_with("word_embeddings.weight")).unwrap().1.copy();
    t.push(("cls.predictions.decoder.weight".into(), words.copy()));
    Tensor::write_safetensors(&t, &file).unwrap();
    edit_config(&d, |v| {
        v["tie_word_embeddings"] = false.into();
        v["dtype"] = "bfloat16".into(); // a half-precision source: lmbff trains and saves fp32
    });
    let m = load(&d).unwrap();
    let out = common::tempdir("untied-saved");
    m.save_pretrained(&out).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!((&saved["tie_word_embeddings"], &saved["dtype"]), (&true.into(), &"float32".into()));
    t.pop();
    t.push(("cls.predictions.decoder.weight".into(), words.randn_like()));
    Tensor::write_safetensors(&t, &file).unwrap();
    let e = load(&d).err().unwrap().to_string();
    assert!(e.contains("cls.predictions.decoder.weight is not tied to the word embeddings (it differs from them by up to"), "{e}");
}

/// A config.json without pad_token_id takes its own architecture's default (RoBERTa's
/// 1, which its positions count from; it used to get BERT's 0); a key of the wrong type
/// is named; the tokenizer must fit the config (padding id, ids within vocab_size).
#[test]
fn config_defaults_and_the_tokenizer_fit_the_architecture() {
    let d = copy_fixture("roberta", "cfg-roberta-defaults");
    edit_config(&d, |v| {
        v.as_object_mut().unwrap().remove("pad_token_id");
    });
    assert_eq!(lmbff::model::Config::from_dir(&d).unwrap().0.pad_token_id, 1);
    assert!(load(&d).is_ok());
    assert!(lmbff::tokenize::Tokenizer::from_dir(&d).is_ok());
    edit_config(&d, |v| v["layer_norm_eps"] = serde_json::Value::Null);
    assert!(matches!(load(&d).err().unwrap(), Error::Config(m) if m.contains("layer_norm_eps")));
    // RoBERTa with BERT's padding id: positions would be counted from the wrong token.
    edit_config(&d, |v| {
        v["layer_norm_eps"] = 1e-5.into();
        v["pad_token_id"] = 0.into();
    });
    let e = lmbff::tokenize::Tokenizer::from_dir(&d).err().unwrap().to_string();
    assert!(e.contains("pads with id 1") && e.contains("pad_token_id is 0"), "{e}");
    // A tokenizer with ids past the embedding table.
    let d = copy_fixture("bert", "cfg-vocab");
    let vocab = lmbff::tokenize::Tokenizer::from_dir(&d).unwrap().vocab_size() as i64;
    edit_config(&d, |v| v["vocab_size"] = (vocab - 1).into());
    let e = lmbff::tokenize::Tokenizer::from_dir(&d).err().unwrap().to_string();
    assert!(e.contains(&format!("id {}", vocab - 1)) && e.contains("vocab_size"), "{e}");
}

/// A sentence-transformers MPNet folder (all-mpnet-base-v2's layout): bare `MPNetModel`
/// names, a pooler, no head. It loads, reports the pooler unused, and encodes as the
/// prefixed checkpoint does.
#[test]
fn headless_mpnet_loads_like_sentence_transformers_saves_it() {
    let d = copy_fixture("mpnet", "headless-mpnet");
    let file = d.join("model.safetensors");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with("mpnet."))
        .map(|(n, t)| (n.trim_start_matches("mpnet.").to_string(), t))
        .collect();
    t.push(("pooler.dense.weight".into(), Tensor::zeros([32, 32], (tch::Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&t, &file).unwrap();
    let m = load(&d).unwrap();
    assert!(m.load_report().head_initialised);
    assert_eq!(m.load_report().unused, ["pooler.dense.weight"]);
    let full = load(&common::fixtures().join("mpnet")).unwrap();
    let r = common::read(&common::fixtures().join("mpnet/parity.safetensors"));
    let (ids, mask, types) = (&r["input_ids"], &r["attention_mask"], &r["token_type_ids"]);
    let a = tch::no_grad(|| m.encode(ids, mask, types, false).unwrap());
    let b = tch::no_grad(|| full.encode(ids, mask, types, false).unwrap());
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

#[test]
fn corrupt_weights() {
    let d = copy_fixture("bert", "corrupt");
    let file = d.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load(&d).err().unwrap(), Error::CorruptWeights { .. }));
    std::fs::write(&file, b"garbage, not a safetensors file").unwrap();
    assert!(matches!(load(&d).err().unwrap(), Error::CorruptWeights { .. }));
    let bin = copy_fixture("bert-bin", "corrupt-bin");
    std::fs::write(bin.join("pytorch_model.bin"), b"garbage").unwrap();
    let e = load(&bin).err().unwrap();
    assert!(matches!(e, Error::CorruptWeights { .. }) && !e.to_string().contains("frame #"), "{e}");
    // An OrderedDict, as transformers' state_dict() is (most .bin files): libtorch's
    // assertion and C++ backtrace become one line naming the case and the conversion.
    let file = bin.join("pytorch_model.bin");
    let made = std::process::Command::new(common::python())
        .args(["-c", "import sys, collections, torch; torch.save(collections.OrderedDict(w=torch.zeros(2)), sys.argv[1])"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let e = load(&bin).err().unwrap().to_string();
    assert!(e.contains("it holds a Python OrderedDict") && e.contains("s.save_file(") && !e.contains("frame #"), "{e}");
    // transformers' sharded .bin layout is named with its conversion (it was "no weights").
    std::fs::rename(&file, bin.join("pytorch_model-00001-of-00001.bin")).unwrap();
    std::fs::write(bin.join("pytorch_model.bin.index.json"), r#"{"weight_map": {}}"#).unwrap();
    let e = load(&bin).err().unwrap().to_string();
    assert!(e.contains("sharded pytorch_model-*.bin files") && e.contains("safe_serialization=True"), "{e}");
}

/// The decoder bias stored under both of its names loads when the two agree, and is
/// named when they do not (one of them was taken).
#[test]
fn decoder_bias_under_both_names() {
    let d = copy_fixture("bert", "bias-twice");
    let file = d.join("model.safetensors");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file).unwrap();
    let bias = t.iter().find(|(n, _)| n == "cls.predictions.bias").expect("the fixture has a head").1.copy();
    t.push(("cls.predictions.decoder.bias".into(), bias.copy()));
    Tensor::write_safetensors(&t, &file).unwrap();
    load(&d).unwrap();
    t.pop();
    t.push(("cls.predictions.decoder.bias".into(), bias + 1.0));
    Tensor::write_safetensors(&t, &file).unwrap();
    let e = load(&d).err().unwrap().to_string();
    assert!(e.contains("are both the model's `cls.predictions.bias`, with different values"), "{e}");
}

#[test]
fn missing_encoder_weight_and_partial_head() {
    let d = copy_fixture("bert", "partial");
    rewrite_weights(&d, |n| n != "bert.encoder.layer.1.output.dense.weight");
    let e = load(&d).err().unwrap();
    assert!(matches!(&e, Error::MissingWeight { name, .. } if name == "bert.encoder.layer.1.output.dense.weight"), "{e}");
    let d = copy_fixture("bert", "partial-head");
    rewrite_weights(&d, |n| n != "cls.predictions.transform.dense.weight");
    let e = load(&d).err().unwrap();
    assert!(matches!(&e, Error::MissingWeight { name, .. } if name == "cls.predictions.transform.dense.weight"), "{e}");
}

#[test]
fn headless_checkpoint_gets_a_tied_head() {
    // A BertModel checkpoint: no `bert.` prefix, no head.
    let d = copy_fixture("bert", "headless");
    let file = d.join("model.safetensors");
    let t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with("bert."))
        .map(|(n, t)| (n.trim_start_matches("bert.").to_string(), t))
        .collect();
    Tensor::write_safetensors(&t, &file).unwrap();
    let m = load(&d).unwrap();
    assert!(m.load_report().head_initialised);
    assert_eq!(m.head().bias.abs().sum(tch::Kind::Float).double_value(&[]), 0.0, "new bias starts at zero");
    // The decoder is the checkpoint's word-embedding matrix: logits = transform(h) E^T + b.
    let r = common::read(&common::fixtures().join("bert/parity.safetensors"));
    let (ids, mask, types) = (&r["input_ids"], &r["attention_mask"], &r["token_type_ids"]);
    let logits = tch::no_grad(|| m.mlm_logits(ids, mask, types).unwrap());
    let e = t.iter().find(|(n, _)| n == "embeddings.word_embeddings.weight").unwrap().1.shallow_clone();
    let h = tch::no_grad(|| m.head().transform(&m.encode(ids, mask, types, false).unwrap()).unwrap());
    let manual = h.matmul(&e.tr()) + &m.head().bias;
    assert!(common::max_abs_diff(&logits, &manual) < 1e-5);
}

#[test]
fn a_new_head_is_saved_only_once_trained() {
    // A checkpoint without a head, saved again as it loaded (what the sentence-embedding
    // method does): the save leaves the untrained head out, so the saved model loads as
    // headless again (it loaded as one with a head, and the method choice and the
    // "no masked-LM head" warnings took a random head for a real one).
    let d = copy_fixture("bert", "head-saved-once-trained");
    rewrite_weights(&d, |n| !n.starts_with("cls."));
    let m = load(&d).unwrap();
    assert!(m.load_report().head_initialised);
    let out = common::tempdir("head-saved-once-trained-out");
    m.save_pretrained(&out).unwrap();
    let names: Vec<String> = Tensor::read_safetensors(out.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n.starts_with("cls.")), "{names:?}");
    assert!(load(&out).unwrap().load_report().head_initialised);
    // Once training moves the head (adaptation, prompt fine-tuning), a save writes it and
    // the saved model loads with that head.
    m.mark_head_trained();
    let trained = common::tempdir("head-saved-once-trained-trained");
    m.save_pretrained(&trained).unwrap();
    let again = load(&trained).unwrap();
    assert!(!again.load_report().head_initialised);
    let dense = |m: &MaskedLm| m.vs.variables()["cls.predictions.transform.dense.weight"].shallow_clone();
    assert_eq!(common::max_abs_diff(&dense(&again), &dense(&m)), 0.0);
    // A checkpoint that came with its head keeps it.
    let whole = load(&common::fixtures().join("bert")).unwrap();
    let kept = common::tempdir("head-saved-once-trained-kept");
    whole.save_pretrained(&kept).unwrap();
    assert!(!load(&kept).unwrap().load_report().head_initialised);
}

#[test]
fn plain_fine_tuning_starts_from_a_bert_checkpoints_pooler() {
    // LM-BFF's plain baseline is BertForSequenceClassification: pooler (pretrained dense,
    // tanh) -> dropout -> a new linear layer. A BERT checkpoint with a pooler gives the
    // [CLS] head its dense layer; the model's eval logits are then
    // out(tanh(pooler(h[CLS]))).
    let d = copy_fixture("bert", "pooler");
    let file = d.join("model.safetensors");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&file).unwrap();
    tch::manual_seed(7);
    let (pw, pb) = (Tensor::randn([32, 32], (tch::Kind::Float, Device::Cpu)) * 0.1, Tensor::randn([32], (tch::Kind::Float, Device::Cpu)) * 0.1);
    t.push(("bert.pooler.dense.weight".into(), pw.shallow_clone()));
    t.push(("bert.pooler.dense.bias".into(), pb.shallow_clone()));
    Tensor::write_safetensors(&t, &file).unwrap();
    let m = load(&d).unwrap();
    let head = m.new_cls_head(3).unwrap();
    let vars = m.vs.variables();
    assert_eq!(common::max_abs_diff(&vars["classifier.dense.weight"], &pw), 0.0);
    assert_eq!(common::max_abs_diff(&vars["classifier.dense.bias"], &pb), 0.0);
    let r = common::read(&common::fixtures().join("bert/parity.safetensors"));
    let h = tch::no_grad(|| m.encode(&r["input_ids"], &r["attention_mask"], &r["token_type_ids"], false).unwrap());
    let logits = tch::no_grad(|| head.forward(&h, false).unwrap());
    let pooled = h.select(1, 0).linear(&pw, Some(&pb)).tanh();
    let manual = pooled.linear(&vars["classifier.out_proj.weight"], Some(&vars["classifier.out_proj.bias"]));
    assert!(common::max_abs_diff(&logits, &manual) < 1e-6);
    // Half a pooler is named; a checkpoint without one keeps a new dense layer.
    let half = copy_fixture("bert", "pooler-half");
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(half.join("model.safetensors")).unwrap();
    t.push(("bert.pooler.dense.weight".into(), pw.shallow_clone()));
    Tensor::write_safetensors(&t, half.join("model.safetensors")).unwrap();
    // (The model loads: only plain fine-tuning reads the pooler.)
    let m = load(&half).unwrap();
    match m.new_cls_head(3) {
        Err(Error::MissingWeight { name, .. }) => assert_eq!(name, "bert.pooler.dense.bias"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let plain = load(&common::fixtures().join("bert")).unwrap();
    plain.new_cls_head(3).unwrap();
    assert!(plain.vs.variables()["classifier.dense.bias"].abs().sum(tch::Kind::Float).double_value(&[]) == 0.0, "a new dense layer");
    // The default model, a sentence-transformers BertModel, has one: its baseline reads it.
    let minilm = common::default_model();
    let stored = Tensor::read_safetensors(minilm.join("model.safetensors")).unwrap();
    let m = load(&minilm).unwrap();
    m.new_cls_head(2).unwrap();
    let pooler = &stored.iter().find(|(n, _)| n == "pooler.dense.weight").expect("MiniLM holds a pooler").1;
    assert_eq!(common::max_abs_diff(&m.vs.variables()["classifier.dense.weight"], pooler), 0.0);
}
