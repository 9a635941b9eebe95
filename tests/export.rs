//! Export and serving: the ONNX graph lmbff writes passes onnx's full checker, predicts
//! what the tch model predicts (BERT and RoBERTa tiny random models, the real MiniLM
//! encoder), with fp16 weights and external data too; a Python reimplementation renders
//! the same ids from the manifest alone; the Triton config matches the model; bad
//! export directories and inputs get clear errors.

mod common;

use common::{max_diff, tch_probs};
use std::path::{Path, PathBuf};
use std::process::Command;

use lmbff::checkpoint::{write_dir_atomic, Manifest};
use lmbff::export::{export, export_checkpoint, export_embedding, ExportManifest, ExportOptions, RegressionRange, WeightType, EXPORT_MANIFEST};
use lmbff::model::MaskedLm;
use lmbff::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use lmbff::serve::{Predictor, PredictorOptions};
use lmbff::tokenize::Tokenizer;
use lmbff::train::{self, Demos, Method};
use lmbff::Error;
use tch::Device;

/// Real sentences of mixed lengths (the project's demo data), some over the length limit,
/// one holding the mask token's text, one empty.
fn texts(n: usize) -> Vec<Example> {
    let raw = std::fs::read_to_string(common::root().join("data/reviews/test.tsv")).unwrap();
    let mut out: Vec<Example> = raw.lines().skip(1).take(n).map(|l| Example::single(l.split('\t').next().unwrap(), None)).collect();
    let long = out.iter().take(6).map(|e| e.text_a.clone()).collect::<Vec<_>>().join(" ");
    out.push(Example::single(long, None));
    out.push(Example::single("it was [MASK] and <mask> , really . [SEP] [CLS] </s> [PAD]", None));
    out.push(Example::single("", None));
    out
}

fn prompt(tok: &Tokenizer, template: &str, max_len: usize) -> Prompt {
    let pairs = vec![("0".to_string(), "terrible".to_string()), ("1".to_string(), "great".to_string())];
    let v = Verbalizer::new(tok, &pairs).unwrap();
    Prompt::new(Template::parse(template).unwrap(), v, Truncation { max_len, ..Truncation::default() }).unwrap()
}


fn check_export(dir: &Path, triton: bool) -> serde_json::Value {
    let mut cmd = Command::new(common::python());
    cmd.arg(common::root().join("tests/python/check_export.py")).arg(dir);
    if triton {
        cmd.arg("--triton").arg(dir.join("triton"));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "check_export.py failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Case {
    model: MaskedLm,
    tok: Tokenizer,
    prompt: Prompt,
}

fn case(dir: &Path, template: &str, max_len: usize) -> Case {
    common::one_thread();
    tch::manual_seed(11);
    let tok = Tokenizer::from_dir(dir).unwrap();
    let prompt = prompt(&tok, template, max_len);
    Case { model: MaskedLm::load(dir, Device::Cpu).unwrap(), tok, prompt }
}

fn export_to(c: &Case, name: &str, opts: &ExportOptions) -> PathBuf {
    let out = common::tempdir(name).join("export");
    export(&c.model, &c.tok, &c.prompt, &Demos::None, Default::default(), &out, opts).unwrap();
    out
}

/// A damaged or hand-edited lmbff.json (a copy of `ckpt`'s) is a format error that says
/// what is wrong: not UTF-8 (it was an I/O error), a newer format (it named "line 1"),
/// labels without their words (the class was dropped without a word).
fn manifest_damage_is_named(ckpt: &Path) {
    let copy = ckpt.parent().unwrap().join("damaged");
    std::fs::create_dir_all(&copy).unwrap();
    let text = std::fs::read_to_string(ckpt.join(lmbff::checkpoint::MANIFEST_FILE)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let named = |bytes: Vec<u8>, want: &str| {
        std::fs::write(copy.join(lmbff::checkpoint::MANIFEST_FILE), bytes).unwrap();
        let e = Manifest::read(&copy).unwrap_err();
        assert!(matches!(e, lmbff::Error::Format { .. }) && e.to_string().contains(want), "{e}");
    };
    named(b"{\"format\": \"\xff\"}".to_vec(), "not UTF-8 text");
    let mut newer = json.clone();
    newer["format_version"] = serde_json::json!(1000);
    named(newer.to_string().into_bytes(), "reads versions up to");
    json["label_words"].as_array_mut().unwrap().pop();
    named(json.to_string().into_bytes(), "label words: a hand-edited manifest");
    std::fs::remove_dir_all(&copy).unwrap();
}

fn open(dir: &Path) -> Predictor {
    Predictor::open(dir, &PredictorOptions { threads: 1, max_batch: 4, ..Default::default() }).unwrap()
}

/// Saves `model` with `manifest` as a checkpoint in a fresh folder named `name`, exports
/// it and checks the file with onnx; returns the export directory.
fn checkpoint_and_export(name: &str, model: &MaskedLm, manifest: &Manifest) -> PathBuf {
    let ckpt = common::tempdir(name).join("ckpt");
    write_dir_atomic(&ckpt, lmbff::checkpoint::MANIFEST_FILE, |d| {
        model.save_pretrained(d)?;
        manifest.write_into(d)
    })
    .unwrap();
    assert_eq!(&Manifest::read(&ckpt).unwrap(), manifest);
    manifest_damage_is_named(&ckpt);
    let out = ckpt.parent().unwrap().join("export");
    export_checkpoint(&ckpt, &out, &ExportOptions::default()).unwrap();
    check_export(&out, false);
    out
}

/// The Python renderer gives, from the export's manifest and tokenizer alone, the ids the
/// predictor feeds for every input and demonstration set.
fn assert_python_renders(out: &Path, p: &Predictor, ex: &[Example], what: &str) {
    let json: Vec<serde_json::Value> = ex.iter().map(|e| serde_json::json!({"text_a": e.text_a, "text_b": e.text_b})).collect();
    let file = out.parent().unwrap().join("examples.json");
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    let res = Command::new(common::python()).arg(common::root().join("tests/python/render_from_manifest.py")).arg(out).arg(&file).output().unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let rendered: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    for (i, e) in ex.iter().enumerate() {
        for (k, ours) in p.encode(e).unwrap().iter().enumerate() {
            let ids: Vec<u32> = serde_json::from_value(rendered["input_ids"][i][k].clone()).unwrap();
            assert_eq!(ids, ours.input_ids, "{what}: input {i} set {k}");
        }
    }
}

/// Exports, checks the file with onnx (and Triton's config), and compares predictions.
fn parity(c: &Case, name: &str, opts: &ExportOptions, tol: f32) -> PathBuf {
    let dir = export_to(c, name, opts);
    let summary = check_export(&dir, opts.triton.is_some());
    assert_eq!(summary["opset"], 17);
    assert_eq!(summary["external_data"], opts.external_data);
    let ex = texts(40);
    let want = tch_probs(&c.model, &c.tok, &c.prompt, &ex);
    let p = open(&dir);
    let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
    let d = max_diff(&want, &got);
    println!("{name}: max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
    assert!(d <= tol, "{name}: max diff {d} > {tol}");
    // The same rows come out whatever the batching (int8 within its tolerance: its
    // activation scales are per batch).
    let one_by_one: Vec<Vec<f32>> = ex.iter().map(|e| p.predict(std::slice::from_ref(e)).unwrap()[0].probs.clone()).collect();
    assert!(max_diff(&got, &one_by_one) <= tol.max(1e-5));
    dir
}

#[test]
fn bert_export_matches_tch_and_passes_the_checker() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let opts = ExportOptions { triton: Some("tiny_bert".into()), triton_max_batch: 16, ..Default::default() };
    let dir = parity(&c, "bert", &opts, 1e-5);
    let m = ExportManifest::read(&dir).unwrap();
    assert_eq!(m.model.inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(m.model.version.len(), 16);
    // The version names what the export predicts: the same export again has it, the same
    // weights read through another template do not.
    let again = ExportManifest::read(&export_to(&c, "bert-again", &opts)).unwrap();
    assert_eq!(again.model.version, m.model.version);
    let other = Case { prompt: prompt(&c.tok, "{text} It is {mask}.", 40), ..c };
    let other = ExportManifest::read(&export_to(&other, "bert-other-template", &opts)).unwrap();
    assert_ne!(other.model.version, m.model.version);
}

/// A template with more separators than BERT has token types: the third segment reads
/// the last type row, in training and in the graph alike.
#[test]
fn segments_past_the_last_token_type_read_the_last_row() {
    let c = case(&common::fixtures().join("bert"), "*cls**sent_0**sep+*It_was*sep+**mask*.*sep+*", 40);
    let e = c.prompt.encode(&c.tok, &Example::single("fine", None)).unwrap();
    assert_eq!(e.segment_ids[e.mask_pos], 2, "the mask's segment is the third");
    assert_eq!(c.model.config.type_vocab_size, 2);
    parity(&c, "bert-three-segments", &ExportOptions::default(), 1e-5);
}

/// A model whose weights hold NaN (trained before divergence was refused, or edited)
/// gives an error naming the input, never NaN probabilities a host would read as a
/// certain answer (entropy 0).
#[test]
fn a_diverged_model_predicts_an_error_not_nan() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    tch::no_grad(|| {
        let vars = c.model.vs.variables();
        let (_, bias) = vars.iter().find(|(n, _)| n.ends_with("predictions.bias")).expect("the head's bias");
        let _ = bias.shallow_clone().fill_(f64::NAN);
    });
    let dir = export_to(&c, "diverged", &ExportOptions::default());
    let err = open(&dir).predict(&texts(3)).expect_err("NaN probabilities are refused");
    assert!(matches!(&err, Error::Input { index: 0, source } if matches!(**source, Error::Format { .. })), "{err}");
    assert!(err.to_string().contains("input 0: ") && err.to_string().contains("a probability that is not a number"), "{err}");
    assert!(err.renumbered(2048).to_string().contains("input 2048: "), "a caller that split its list names its own index");
}

/// The graph finds the mask by its id, so template text may not hold the mask token;
/// and Triton's max_batch_size 0 (no batch axis) does not fit the graph.
#[test]
fn a_second_mask_and_a_batchless_triton_config_are_refused() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("bert")).unwrap();
    let p = prompt(&tok, "{text} [MASK] means {mask}.", 40);
    let e = p.encode(&tok, &Example::single("fine", None)).unwrap_err().to_string();
    assert!(e.contains("holds the mask token"), "{e}");
    // Nor a separator, [CLS] or padding token typed as text (they rendered as themselves:
    // a separator that starts no segment, a padding id inside the sequence).
    for typed in ["[SEP]", "[CLS]", "[PAD]"] {
        let p = prompt(&tok, &format!("{{text}} {typed} It was {{mask}}."), 40);
        let e = p.encode(&tok, &Example::single("fine", None)).unwrap_err().to_string();
        assert!(e.contains("holds a separator, [CLS] or padding token"), "{typed}: {e}");
    }
    // In LM-BFF's syntax the error points at the text as written (its spaces are `_`);
    // it named byte 0.
    let p = prompt(&tok, "*cls**sent_0*_It_was_[SEP]*mask*.*sep+*", 40);
    let e = p.encode(&tok, &Example::single("fine", None)).unwrap_err().to_string();
    assert!(e.contains("at byte 14: its text"), "{e}");
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let opts = ExportOptions { triton: Some("t".into()), triton_max_batch: 0, ..Default::default() };
    let e = export(&c.model, &c.tok, &c.prompt, &Demos::None, Default::default(), &common::tempdir("triton0").join("x"), &opts).unwrap_err();
    assert!(e.to_string().contains("Triton max batch 0"), "{e}");
}

#[test]
fn roberta_export_matches_tch() {
    let c = case(&common::fixtures().join("roberta"), "*cls**sent_0*_It_was*mask*.*sep+*", 40);
    let dir = parity(&c, "roberta", &ExportOptions { triton: Some("tiny_roberta".into()), ..Default::default() }, 1e-5);
    assert_eq!(ExportManifest::read(&dir).unwrap().model.inputs, ["input_ids", "attention_mask"]);
}

#[test]
fn mpnet_export_matches_tch() {
    // Inputs up to the 144-position limit: the relative-position bias table of the graph is
    // sliced to each batch's length, past the bucket function's 128-token range.
    let c = case(&common::fixtures().join("mpnet"), "*cls**sent_0*_It_was*mask*.*sep+*", 144);
    let dir = parity(&c, "mpnet", &ExportOptions::default(), 1e-5);
    let m = ExportManifest::read(&dir).unwrap();
    assert_eq!((m.model.architecture.as_str(), m.model.max_positions), ("mpnet", 144));
    assert_eq!(m.model.inputs, ["input_ids", "attention_mask"]);
    parity(&c, "mpnet-fp16", &ExportOptions { weights: WeightType::Fp16, ..Default::default() }, 2e-4);
}

/// A process holds one ONNX Runtime: a predictor naming another library than the one
/// loaded gets the loaded one, with a warning (it used to be silent).
#[test]
fn a_second_onnx_runtime_path_is_named_in_a_warning() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let dir = export_to(&c, "second-ort", &ExportOptions::default());
    open(&dir);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    lmbff::log::set_sink(Some(lmbff::log::Sink {
        max: lmbff::log::Level::Warn,
        write: Box::new(move |_, m| sink.lock().unwrap().push(m.to_string())),
    }));
    // Any existing file will do: it is never loaded.
    let other = dir.join("tokenizer.json");
    let opened = Predictor::open(&dir, &PredictorOptions { threads: 1, ort_library: Some(other.clone()), ..Default::default() });
    lmbff::log::set_sink(None);
    assert!(opened.is_ok(), "the loaded runtime serves it");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|m| m.contains("already loaded") && m.contains(other.to_str().unwrap())), "{seen:?}");
}

#[test]
fn minilm_export_matches_tch() {
    // The real encoder (its new masked-LM head is seeded): real weights, real vocabulary.
    let c = case(&common::default_model(), "{text} It was {mask}.", 128);
    parity(&c, "minilm", &ExportOptions::default(), 1e-5);
    // The size estimate that decides on external data (protobuf's 2 GiB) is what the
    // weights take: the external data file holds every initializer over 1 KiB. The
    // int8 estimate used to count every weight at one byte, embeddings included (they
    // stay fp32): about 23 MB for MiniLM, whose int8 weights take 58.9 MB.
    for weights in [WeightType::Fp32, WeightType::Fp16, WeightType::Int8] {
        let dir = export_to(&c, &format!("minilm-size-{weights:?}"), &ExportOptions { weights, external_data: true, ..Default::default() });
        let stored = std::fs::metadata(dir.join("model.onnx.data")).unwrap().len() as f64;
        let estimate = lmbff::export::stored_weight_bytes(&c.model, weights) as f64;
        println!("{weights:?}: estimate {estimate} bytes, external data {stored}");
        assert!((estimate - stored).abs() / stored < 0.02, "{weights:?}: estimate {estimate} against {stored} stored");
    }
}

/// The adapted MiniLM (made by docs/adaptation.md, not in CI): set LMBFF_ADAPTED_MODEL.
#[test]
fn adapted_minilm_export_matches_tch() {
    let Some(dir) = std::env::var_os("LMBFF_ADAPTED_MODEL") else {
        println!("SKIPPED: set LMBFF_ADAPTED_MODEL=runs/adapt/minilm-sst2-500 (docs/adaptation.md makes it) to check it");
        return;
    };
    let c = case(Path::new(&dir), "{text} It was {mask}.", 128);
    parity(&c, "adapted-minilm", &ExportOptions::default(), 1e-5);
}

#[test]
fn fp16_weights_and_external_data() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let full = export_to(&c, "fp32", &ExportOptions::default());
    let half = parity(&c, "fp16", &ExportOptions { weights: WeightType::Fp16, ..Default::default() }, 2e-4);
    let size = |d: &Path| std::fs::metadata(d.join("model.onnx")).unwrap().len();
    assert!(size(&half) * 10 < size(&full) * 6, "fp16 file {} vs fp32 {}", size(&half), size(&full));
    let ext = parity(&c, "external", &ExportOptions { external_data: true, ..Default::default() }, 1e-5);
    assert!(ext.join("model.onnx.data").is_file());
    assert!(size(&ext) < 20_000, "weights left model.onnx ({} bytes)", size(&ext));
    assert_eq!(ExportManifest::read(&ext).unwrap().model.external_data.as_deref(), Some("model.onnx.data"));
    // Copied without its weights file, the export names that file (ONNX Runtime's load
    // failure read as a malformed model.onnx).
    std::fs::rename(ext.join("model.onnx.data"), ext.join("elsewhere.data")).unwrap();
    match Predictor::open(&ext, &PredictorOptions { threads: 1, ..Default::default() }) {
        Err(lmbff::Error::MissingFile { looked_for, .. }) => assert_eq!(looked_for, "model.onnx.data"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened without its weights"),
    }
    std::fs::rename(ext.join("elsewhere.data"), ext.join("model.onnx.data")).unwrap();
}

/// Regression (two pole words): the graph's score is low + (high - low) * p(upper), and
/// the Triton config declares it.
#[test]
fn regression_export_scores() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let opts = ExportOptions { regression: Some(RegressionRange { low: 0.0, high: 5.0 }), triton: Some("sts".into()), ..Default::default() };
    let dir = parity(&c, "regression", &opts, 1e-5);
    let m = ExportManifest::read(&dir).unwrap();
    assert_eq!((m.task.as_str(), m.model.outputs.len()), ("regression", 3));
    let preds = open(&dir).predict(&texts(5)).unwrap();
    for p in &preds {
        assert!((p.score.unwrap() - 5.0 * p.probs[1]).abs() < 1e-5);
    }
    // `lmbff predict` with gold scores in the label column reports their Pearson
    // correlation with the predicted scores (it printed an accuracy of 0 against labels).
    let gold = [4.5, 0.5, 3.0, 1.0, 2.5];
    let file = dir.parent().unwrap().join("scored.tsv");
    let rows: String = texts(5).iter().zip(gold).map(|(e, g)| format!("{}\t{g}\n", e.text_a.replace('\t', " "))).collect();
    std::fs::write(&file, format!("sentence\tlabel\n{rows}")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lmbff")).args(["predict", "--threads", "1", "--export"]).arg(&dir).arg("--input").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let (x, y): (Vec<f64>, Vec<f64>) = preds.iter().zip(gold).map(|(p, g)| (p.score.unwrap() as f64, g)).unzip();
    let want = format!("Pearson {:.4} (the score against the gold column, 5 of 5 rows numeric)", lmbff::metrics::pearson(&x, &y));
    assert!(o.status.success() && err.contains(&want) && !err.contains("accuracy"), "{want}: {err}");
    let three = Case { prompt: Prompt::new(Template::parse("{text} It was {mask}.").unwrap(),
        Verbalizer::new(&c.tok, &[("a".into(), "terrible".into()), ("b".into(), "great".into()), ("c".into(), "fun".into())]).unwrap(),
        Truncation { max_len: 40, ..Truncation::default() }).unwrap(), ..c };
    let e = export(&three.model, &three.tok, &three.prompt, &Demos::None, Default::default(), &common::tempdir("reg3").join("x"), &opts).unwrap_err();
    assert!(e.to_string().contains("two label words"), "{e}");
}

/// A version records how its prompt rendered when it was saved: a later lmbff that
/// renders it otherwise (a template or tokenizer rule changed) refuses to export it,
/// where it would have fed the model ids it was not trained on.
#[test]
fn a_version_saved_with_another_rendering_is_not_exported() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let fingerprint = lmbff::checkpoint::rendering_fingerprint(&c.prompt, &c.tok);
    assert!(fingerprint.starts_with("fnv1a:") && fingerprint.len() == 22, "{fingerprint}");
    // What the model reads moves it: another template, another label word, the same
    // prompt made again does not.
    let other = |template: &str, words: [&str; 2]| {
        let v = Verbalizer::new(&c.tok, &[("0".into(), words[0].into()), ("1".into(), words[1].into())]).unwrap();
        lmbff::checkpoint::rendering_fingerprint(&Prompt::new(Template::parse(template).unwrap(), v, c.prompt.truncation).unwrap(), &c.tok)
    };
    assert_eq!(other("{text} It was {mask}.", ["terrible", "great"]), fingerprint);
    assert_ne!(other("{text} It was {mask}!", ["terrible", "great"]), fingerprint);
    assert_ne!(other("{text} It was {mask}.", ["bad", "great"]), fingerprint);
    let manifest = Manifest::for_prompt(&c.prompt, &[], serde_json::json!({})).with_rendering(&c.prompt, &c.tok);
    let ckpt = common::tempdir("rendering").join("ckpt");
    write_dir_atomic(&ckpt, lmbff::checkpoint::MANIFEST_FILE, |d| {
        c.model.save_pretrained(d)?;
        manifest.write_into(d)
    })
    .unwrap();
    export_checkpoint(&ckpt, &ckpt.parent().unwrap().join("export"), &ExportOptions::default()).unwrap();
    // The same version as an lmbff that rendered it otherwise would have saved it.
    let path = ckpt.join(lmbff::checkpoint::MANIFEST_FILE);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["rendering"], fingerprint);
    json["rendering"] = "fnv1a:0123456789abcdef".into();
    std::fs::write(&path, json.to_string()).unwrap();
    let e = export_checkpoint(&ckpt, &ckpt.parent().unwrap().join("export-2"), &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, lmbff::Error::Format { .. }) && e.to_string().contains("renders the saved prompt otherwise"), "{e}");
    // A version saved before fingerprints is read unchecked.
    json.as_object_mut().unwrap().remove("rendering");
    std::fs::write(&path, json.to_string()).unwrap();
    export_checkpoint(&ckpt, &ckpt.parent().unwrap().join("export-3"), &ExportOptions::default()).unwrap();
}

/// Dynamic int8 quantisation: a standard-op graph the checker accepts, close to fp32.
#[test]
fn int8_export_stays_close() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let full = export_to(&c, "int8-ref", &ExportOptions::default());
    let q = parity(&c, "int8", &ExportOptions { weights: WeightType::Int8, ..Default::default() }, 1e-2);
    let summary = check_export(&q, false);
    let ops = summary["ops"].clone();
    assert!(ops.as_array().unwrap().iter().any(|o| o == "MatMulInteger"), "{ops}");
    // 7-bit weights: ONNX Runtime's uint8 x int8 kernel on CPUs without VNNI saturates
    // with full-range ones (most products of a random matrix wrong on an AVX2 CPU).
    assert_eq!(summary["int8_abs_max"], lmbff::export::INT8_WEIGHT_MAX as i64, "{summary}");
    let size = |d: &Path| std::fs::metadata(d.join("model.onnx")).unwrap().len();
    assert!(size(&q) < size(&full), "int8 {} vs fp32 {}", size(&q), size(&full));
}

/// A host in another language renders the same ids from the manifest and tokenizer.json.
#[test]
fn python_renders_the_same_ids_from_the_manifest() {
    for (fixture, template, max_len, with_demos) in [
        ("bert", "{text_a} ? {mask} , {text_b:lower} !", 24, false),
        ("roberta", "*cls**sent-_0*?*mask*,*+sentl_1**sep+*", 24, false),
        ("bert", "*cls**sent_0*_It_was*mask*.*sep+*", 20, false),
        ("bert", "*cls**sent_0*_It_was*mask*.*sep+*", 40, true),
        ("roberta", "*cls**sent_0**sep+**+sentl_1*_?*mask*.*sep+*", 48, true),
        ("roberta-prefix-space", "*cls**sent_0*_It_was*mask*.*sep+*", 24, false),
    ] {
        let dir = match fixture {
            "roberta-prefix-space" => {
                // Exported without the prefix space training did without (a host's
                // tokenizer would read "." after the mask as " .").
                let dir = common::prefix_space_roberta();
                let out = common::tempdir("render-prefix").join("export");
                let c = case(&dir, template, max_len);
                export(&c.model, &c.tok, &c.prompt, &Demos::None, Default::default(), &out, &ExportOptions::default()).unwrap();
                let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).unwrap()).unwrap();
                assert_eq!(written["pre_tokenizer"]["add_prefix_space"], false, "{}", written["pre_tokenizer"]);
                dir
            }
            _ => common::fixtures().join(fixture),
        };
        let c = case(&dir, template, max_len);
        let pair = c.prompt.template.num_sentences() > 1;
        let sets = if with_demos { Demos::Fixed(demo_sets(pair)) } else { Demos::None };
        let out = common::tempdir(&format!("render-{fixture}-{max_len}")).join("export");
        export(&c.model, &c.tok, &c.prompt, &sets, Default::default(), &out, &ExportOptions::default()).unwrap();
        let ex: Vec<Example> = texts(12)
            .into_iter()
            .enumerate()
            .map(|(i, e)| Example { text_b: pair.then(|| format!("The Movie [MASK] {i}")), ..e })
            .collect();
        let compare = |what: &str| -> Vec<Vec<u32>> {
            let json: Vec<serde_json::Value> = ex.iter().map(|e| serde_json::json!({"text_a": e.text_a, "text_b": e.text_b})).collect();
            let file = out.parent().unwrap().join("examples.json");
            std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
            let res = Command::new(common::python()).arg(common::root().join("tests/python/render_from_manifest.py")).arg(&out).arg(&file).output().unwrap();
            assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
            let got: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
            let p = open(&out);
            let sets = p.demo_sets().len().max(1);
            assert_eq!(sets, if with_demos { 2 } else { 1 });
            let mut all = Vec::new();
            for (i, e) in ex.iter().enumerate() {
                let ours = p.encode(e).unwrap();
                assert_eq!(ours.len(), sets);
                for (k, ours) in ours.iter().enumerate() {
                    let ids: Vec<u32> = serde_json::from_value(got["input_ids"][i][k].clone()).unwrap();
                    let types: Vec<u32> = serde_json::from_value(got["token_type_ids"][i][k].clone()).unwrap();
                    assert_eq!(ids, ours.input_ids, "{what}: {fixture} {template:?} input {i} set {k}");
                    assert_eq!(types, ours.segment_ids, "{what}: {fixture} {template:?} input {i} set {k}");
                    assert!(ours.input_ids.len() <= max_len);
                    assert_eq!(ours.input_ids[ours.mask_pos], c.tok.special().mask, "the mask survives truncation");
                    assert_eq!(ours.input_ids.iter().filter(|&&t| t == c.tok.special().mask).count(), 1, "one mask only");
                    all.push(ours.input_ids.clone());
                }
            }
            all
        };
        let now = compare("demonstrations first");
        if with_demos {
            // An export written before the rule (format 7, no `demonstrations_first`)
            // keeps longest-first over every sentence, in Rust and in Python alike.
            let path = out.join(lmbff::export::EXPORT_MANIFEST);
            let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!((m["format_version"].as_u64(), m["truncation"]["demonstrations_first"].as_bool()), (Some(8), Some(true)));
            m["truncation"].as_object_mut().unwrap().remove("demonstrations_first");
            m["format_version"] = 7.into();
            std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
            let before = compare("longest first (format 7)");
            assert_ne!(now, before, "{fixture} {template:?}: the two rules cut the same ids, so neither is tested");
        }
    }
}

/// Demonstration sets of a few labelled examples (pairs for two-sentence templates).
fn demo_sets(pair: bool) -> Vec<Vec<Example>> {
    let ex = |t: &str, b: &str, l: usize| Example { text_a: t.into(), text_b: pair.then(|| b.into()), label: Some(l) };
    vec![
        vec![ex("A dull, lifeless film.", "Nothing works.", 0), ex("A warm and funny film.", "It works.", 1)],
        vec![ex("Tedious from start to finish, and far too long for what it has to say.", "No.", 0), ex("Great fun.", "Yes!", 1)],
    ]
}

/// A model trained with demonstrations predicts the same after export: the fixed sets
/// travel in the checkpoint's and the export's manifests (format version 2), and the
/// predictor averages the label logits over them as training-time evaluation does.
#[test]
fn demonstrations_travel_with_the_export_and_predict_the_same() {
    let c = case(&common::fixtures().join("bert"), "*cls**sent_0*_It_was*mask*.*sep+*", 48);
    let train_ex: Vec<Example> = demo_sets(false).concat();
    let tp = train::TrainParams { steps: 6, batch_size: 2, lr: 1e-3, eval_every: 0, demonstrations: true, demo_sets: 2, ..Default::default() };
    let (rep, head) = train::finetune(&c.model, &c.tok, &c.prompt, Method::Prompt, &train_ex, &[], &tp, &mut |_| true).unwrap();
    assert_eq!(rep.demos.fixed().len(), 2);
    let manifest = Manifest::for_prompt(&c.prompt, rep.demos.fixed(), serde_json::json!({"steps": 6}));
    // Demonstrations cut before the query: a version older readers refuse.
    assert_eq!(manifest.format_version, 9);
    let out = checkpoint_and_export("demos", &c.model, &manifest);
    let m = ExportManifest::read(&out).unwrap();
    assert_eq!(m.format_version, 8);
    assert!(m.truncation.demonstrations_first);
    assert_eq!(m.demonstrations.as_ref().unwrap().sets, rep.demos.fixed());
    let ex = texts(30);
    let want = train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &ex, &rep.demos, 5).unwrap());
    let got: Vec<Vec<f32>> = open(&out).predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
    let d = max_diff(&want, &got);
    println!("demonstrations (2 sets): max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
    assert!(d <= 1e-5, "max diff {d}");
    // The demonstrations change what the model sees: predictions without them differ.
    let bare = train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &ex, &Demos::None, 5).unwrap());
    let apart = max_diff(&bare, &got);
    println!("without demonstrations: max diff {apart:.2e}");
    assert!(apart > 100.0 * d.max(1e-7), "{apart}");
    // A manifest whose demonstrations do not render is refused at open, by name.
    let mut bad = m.clone();
    bad.demonstrations.as_mut().unwrap().sets[0][0].label = Some(5);
    bad.write_into(&out).unwrap();
    let err = Predictor::open(&out, &PredictorOptions::default()).err().unwrap();
    assert!(err.to_string().contains("demonstration set 0"), "{err}");
}

/// Similarity-filtered demonstrations (LM-BFF's demo_filter) travel with the export: the
/// checkpoint records the pool and the encoder (format 5), the export carries the encoder
/// as demo-encoder.onnx (here a RoBERTa encoder choosing for a BERT model: another
/// tokenizer and architecture), and the predictor picks each input's sets exactly as
/// training-time evaluation does and predicts the same probabilities.
#[test]
fn filtered_demonstrations_travel_with_the_export_and_predict_the_same() {
    let c = case(&common::fixtures().join("bert"), "*cls**sent_0*_It_was*mask*.*sep+*", 48);
    let encoder = common::fixtures().join("roberta");
    let mut train_ex: Vec<Example> = demo_sets(false).concat();
    train_ex.extend(texts(8).into_iter().take(8).enumerate().map(|(i, e)| Example { label: Some(i % 2), ..e }));
    let tp = train::TrainParams {
        steps: 6,
        batch_size: 2,
        lr: 1e-3,
        eval_every: 0,
        demonstrations: true,
        demo_sets: 2,
        demo_filter: Some(encoder.clone()),
        ..Default::default()
    };
    let (rep, head) = train::finetune(&c.model, &c.tok, &c.prompt, Method::Prompt, &train_ex, &[], &tp, &mut |_| true).unwrap();
    assert_eq!((rep.demos.sets_per_input(), rep.demos.filter_dir()), (2, Some(encoder.clone())));
    let mut manifest = Manifest::for_prompt(&c.prompt, &[], serde_json::json!({}));
    rep.demos.record(&mut manifest);
    manifest.format_version = manifest.needed_version();
    assert_eq!(manifest.format_version, 9);
    assert_eq!(manifest.demo_filter.as_ref().unwrap().pool, train_ex);
    let out = checkpoint_and_export("filter", &c.model, &manifest);
    let summary = check_export(&out, false);
    assert_eq!(summary["demo_encoder"]["outputs"][0]["name"], "embedding", "{summary}");
    let m = ExportManifest::read(&out).unwrap();
    assert_eq!(m.format_version, 8);
    let f = m.demonstrations.as_ref().unwrap().filter.as_ref().unwrap();
    assert_eq!((f.sets, f.pool.len(), f.inputs.len()), (2, train_ex.len(), 2), "RoBERTa reads no token types");

    let ex = texts(24);
    let p = open(&out);
    let ours = rep.demos.sets_for(&ex).unwrap().unwrap();
    let served = p.sets_for(&ex).unwrap().unwrap();
    assert_eq!(ours, served, "the predictor picks the demonstrations training picked");
    let distinct: std::collections::BTreeSet<String> = served.iter().map(|s| format!("{s:?}")).collect();
    assert!(distinct.len() > 1, "inputs get their own demonstrations");
    for (e, sets) in ex.iter().zip(&served) {
        assert_ne!(sets[0], sets[1], "{:?}: two sets, not one twice", e.text_a);
    }
    let want = train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &ex, &rep.demos, 5).unwrap());
    let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
    let d = max_diff(&want, &got);
    println!("filtered demonstrations (2 sets each): max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
    assert!(d <= 1e-5, "max diff {d}");
    // Filtered sets are not the fixed ones: predicting with fixed sets differs.
    let fixed = train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &ex, &Demos::Fixed(demo_sets(false)), 5).unwrap());
    assert!(max_diff(&fixed, &got) > 100.0 * d.max(1e-7));
    // With several sessions (the sentence encoder gets as many as the model), threads
    // predicting at once get what one caller gets.
    let pool = Predictor::open(&out, &PredictorOptions { threads: 1, max_batch: 4, sessions: 3, ..Default::default() }).unwrap();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4).map(|_| s.spawn(|| pool.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect::<Vec<_>>())).collect();
        for r in runs {
            assert!(max_diff(&r.join().unwrap(), &got) <= 1e-6);
        }
    });

    // A Triton repository holds one graph: refused, by name.
    let opts = ExportOptions { triton: Some("m".into()), ..Default::default() };
    let err = export(&c.model, &c.tok, &c.prompt, &rep.demos, Default::default(), &common::tempdir("filter-triton").join("x"), &opts).unwrap_err();
    assert!(err.to_string().contains("sentence encoder"), "{err}");
    // An export missing its encoder is refused at open, naming the file.
    std::fs::remove_file(out.join("demo-encoder.onnx")).unwrap();
    let err = Predictor::open(&out, &PredictorOptions::default()).err().unwrap();
    assert!(err.to_string().contains("demo-encoder.onnx"), "{err}");
}

/// The predictor over the multi-label export `out` says it is multi-label with `names`,
/// gives `want` (each label's P(yes) per input of `ex`) within 1e-5, applies the labels at
/// or over the threshold, and refuses pairs.
fn serves_multi_label(out: &Path, names: &[String], ex: &[Example], want: &[Vec<f32>], what: &str) -> (Predictor, Vec<lmbff::serve::Prediction>) {
    let p = open(out);
    assert!(p.is_multi_label());
    assert_eq!(p.labels(), names);
    let preds = p.predict(ex).unwrap();
    let got: Vec<Vec<f32>> = preds.iter().map(|r| r.probs.clone()).collect();
    let d = max_diff(want, &got);
    println!("{what}: max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
    assert!(d <= 1e-5, "{what}: max diff {d}");
    for r in &preds {
        assert_eq!(r.labels, lmbff::prompt::applied(&r.probs), "labels at or over the threshold");
    }
    // Pairs are refused, naming the host's input (not an (input, label) pair's index).
    let mixed = [Example::single("a", None), Example::single("b", None), Example { text_b: Some("x".into()), ..Example::single("c", None) }];
    assert!(matches!(p.predict(&mixed), Err(Error::Input { index: 2, .. })), "pairs are refused");
    // A threshold that is no probability strictly between 0 and 1 is refused at open.
    let bad = common::tempdir("bad-threshold").join("export");
    std::fs::create_dir_all(&bad).unwrap();
    for e in std::fs::read_dir(out).unwrap().map(Result::unwrap).filter(|e| e.path().is_file()) {
        std::fs::copy(e.path(), bad.join(e.file_name())).unwrap();
    }
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bad.join(EXPORT_MANIFEST)).unwrap()).unwrap();
    v["multi_label"]["threshold"] = 1.5.into();
    std::fs::write(bad.join(EXPORT_MANIFEST), v.to_string()).unwrap();
    let e = Predictor::open(&bad, &PredictorOptions { threads: 1, ..Default::default() }).err().expect("a threshold of 1.5 is refused").to_string();
    assert!(e.contains("multi_label.threshold is 1.5"), "{e}");
    (p, preds)
}

/// A multi-label model (one yes/no prompt per label over pairs (input, label name))
/// exports as such (format 6): the predictor reads each input once per label and gives
/// each label's P(yes), the probabilities training-time evaluation gives the pairs; the
/// C ABI says it is multi-label and which labels apply.
#[test]
fn multi_label_models_export_and_predict_the_same() {
    let mut c = case(&common::fixtures().join("bert"), "*cls**sent_0*_Is_it_about*+sentl_1*?*mask*.*sep+*", 48);
    let pairs = vec![("no".to_string(), "no".to_string()), ("yes".to_string(), "yes".to_string())];
    c.prompt.verbalizer = Verbalizer::new(&c.tok, &pairs).unwrap();
    let names: Vec<String> = ["sports", "money", "travel"].iter().map(|s| s.to_string()).collect();
    let multi = lmbff::prompt::MultiLabel::new(&names).unwrap();
    let inputs: Vec<Example> = texts(10).into_iter().take(10).collect();
    let sets: Vec<Vec<usize>> = (0..inputs.len()).map(|i| (0..3).filter(|l| (i + l) % 3 != 0).collect()).collect();
    let train_ex = multi.expand(&inputs, Some(&sets)).unwrap();
    let tp = train::TrainParams { steps: 6, batch_size: 4, lr: 1e-3, eval_every: 0, dev_metric: train::DevMetric::MultiLabelF1, ..Default::default() };
    let (rep, head) = train::finetune(&c.model, &c.tok, &c.prompt, Method::Prompt, &train_ex, &[], &tp, &mut |_| true).unwrap();
    let mut manifest = Manifest::for_prompt(&c.prompt, rep.demos.fixed(), serde_json::json!({}));
    manifest.multi_label = Some(names.clone());
    manifest.format_version = manifest.needed_version();
    assert_eq!(manifest.format_version, 6);
    let out = checkpoint_and_export("multi", &c.model, &manifest);
    let m = ExportManifest::read(&out).unwrap();
    assert_eq!((m.format_version, m.task.as_str()), (6, "multi-label"));
    assert_eq!(m.multi_label.as_ref().unwrap().labels, names);

    let ex = texts(14);
    let pairs = multi.expand(&ex, None).unwrap();
    let want = multi.gather(&train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &pairs, &Demos::None, 5).unwrap())).unwrap();
    let (p, preds) = serves_multi_label(&out, &names, &ex, &want, "multi-label (3 labels)");
    // A document-long text (27 MB: its three readings would copy it three times at once)
    // is read a few labels at a time, and predicts as its head does (the template keeps
    // 48 tokens of either); the short inputs beside it predict as before.
    let long = "a great ride and a dull game. ".repeat(900_000);
    let head = long[..30_000].to_string();
    let batch = |middle: String| p.predict(&[ex[0].clone(), Example::single(middle, None), ex[1].clone()]).unwrap();
    let probs = |r: Vec<lmbff::serve::Prediction>| r.into_iter().map(|x| x.probs).collect::<Vec<_>>();
    let (with_long, with_head) = (probs(batch(long)), probs(batch(head)));
    assert!(max_diff(&with_long, &with_head) <= 1e-5, "{with_long:?} against {with_head:?}");
    assert!(max_diff(&[with_long[0].clone(), with_long[2].clone()], &want[..2]) <= 1e-5);
    // `encode` renders what the model reads: the input once per label (it used to render
    // the bare input, which this two-sentence template refuses).
    let readings = p.encode(&ex[0]).unwrap();
    let want_ids: Vec<Vec<u32>> = pairs[..3].iter().map(|e| c.prompt.encode(&c.tok, e).unwrap().input_ids).collect();
    assert_eq!(readings.iter().map(|r| r.input_ids.clone()).collect::<Vec<_>>(), want_ids);

    // Through the C ABI.
    unsafe {
        use lmbff::ffi::*;
        let dir = std::ffi::CString::new(out.to_str().unwrap()).unwrap();
        let mut pred = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), std::ptr::null(), &mut pred), lmbff_status::LMBFF_OK);
        assert!(lmbff_predictor_multi_label(pred));
        assert_eq!(lmbff_predictor_num_labels(pred), 3);
        let text = std::ffi::CString::new(ex[0].text_a.as_str()).unwrap();
        let mut r = std::ptr::null_mut();
        assert_eq!(lmbff_predict(pred, &text.as_ptr(), std::ptr::null(), 1, &mut r), lmbff_status::LMBFF_OK);
        for l in 0..3 {
            let mut applies = false;
            assert_eq!(lmbff_predictions_applies(r, 0, l, &mut applies), lmbff_status::LMBFF_OK);
            assert_eq!(applies, preds[0].labels.contains(&l));
        }
        let mut applies = false;
        assert_eq!(lmbff_predictions_applies(r, 0, 3, &mut applies), lmbff_status::LMBFF_ERR_INVALID_ARGUMENT);
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);
    }
    // A classification prompt cannot be exported as multi-label.
    let plain = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let opts = ExportOptions { multi_label: Some(names), ..Default::default() };
    let err = export(&plain.model, &plain.tok, &plain.prompt, &Demos::None, Default::default(), &common::tempdir("multi-bad").join("x"), &opts).unwrap_err();
    assert!(err.to_string().contains("yes/no prompt"), "{err}");
}

/// A multi-label sentence-embedding model (a yes/no logistic head per label on the
/// input's embedding) exports as such (format 7; onnx's checker passes; Triton's config
/// gives `probs` a column per label and `label_logits` a pair per label): the predictor
/// reads each input once and gives each label's P(yes) as training computes it, the
/// logits side by side as the classifier's, and the Python renderer reads the input
/// alone; heads that do not match the labels are refused.
#[test]
fn multi_label_sentence_embedding_models_export_and_predict_the_same() {
    let mut c = case(&common::fixtures().join("bert"), "*cls**sent_0*_Is_it_about*+sentl_1*?*mask*.*sep+*", 48);
    let words = vec![("no".to_string(), "no".to_string()), ("yes".to_string(), "yes".to_string())];
    c.prompt.verbalizer = Verbalizer::new(&c.tok, &words).unwrap();
    let reader = c.prompt.input_reader();
    let names: Vec<String> = ["sports", "money", "travel"].iter().map(|s| s.to_string()).collect();
    let multi = lmbff::prompt::MultiLabel::new(&names).unwrap();
    let inputs: Vec<Example> = texts(12);
    // Alike (sharing a label, or both empty) and unlike partners for every input.
    let sets: Vec<Vec<usize>> = (0..inputs.len()).map(|i| [vec![0], vec![1, 2], vec![2], vec![]][i % 4].clone()).collect();
    // Label anchors: each name joins the pairs as a text of its label alone, twice; the
    // heads are still fitted on the 12 inputs (their rows are the registered examples').
    let anchored = train::EmbedParams { iterations: 2, batch_size: 4, lr: 1e-3, seed: 5, anchor_repeats: 2, ..Default::default() };
    let (h, rep) = train::train_embedding_multi(&c.model, &c.tok, &reader, &inputs, &sets, &names, &anchored, &mut |_| true).unwrap();
    assert_eq!((h.weight.len(), rep.pairs, rep.anchors.clone()), (6, 2 * 2 * (inputs.len() + 2 * 3), names.clone()));
    let ep = train::EmbedParams { anchor_repeats: 0, ..anchored };
    let (head, rep) = train::train_embedding_multi(&c.model, &c.tok, &reader, &inputs, &sets, &names, &ep, &mut |_| true).unwrap();
    assert_eq!((head.weight.len(), rep.pairs, rep.anchors.len()), (6, 2 * 2 * inputs.len(), 0));
    assert!(train::train_embedding_multi(&c.model, &c.tok, &reader, &inputs, &sets, &names[..2], &ep, &mut |_| true).is_err(), "a set names label 2 of 2");
    let manifest = Manifest::for_embedding(&c.prompt, head.clone(), Some(&names), serde_json::json!({}));
    assert_eq!(manifest.format_version, 7);
    let out = checkpoint_and_export("multi-embedding", &c.model, &manifest);
    let m = ExportManifest::read(&out).unwrap();
    assert_eq!((m.format_version, m.task.as_str(), m.method.as_str()), (7, "multi-label", "sentence-embedding"));
    assert_eq!(m.multi_label.as_ref().unwrap().labels, names);

    let ex = texts(20);
    let logits = train::embedding_logits(&c.model, &c.tok, &reader, &head, &ex, 5).unwrap();
    let want = multi.gather(&train::softmax_rows(&multi.split_heads(&logits).unwrap())).unwrap();
    let (p, _) = serves_multi_label(&out, &names, &ex, &want, "multi-label sentence-embedding (3 labels)");
    let encoded: Vec<_> = ex.iter().map(|e| p.encode(e).unwrap().remove(0)).collect();
    assert!(max_diff(&p.logits_encoded(&encoded).unwrap(), &logits) <= 1e-4, "label_logits are the heads side by side");
    assert_python_renders(&out, &p, &ex, "multi-label sentence-embedding");

    // Triton's config sizes each output.
    let ckpt = out.parent().unwrap().join("ckpt");
    let tri = out.parent().unwrap().join("triton-export");
    export_checkpoint(&ckpt, &tri, &ExportOptions { triton: Some("multi".into()), ..Default::default() }).unwrap();
    let config = std::fs::read_to_string(tri.join("triton/multi/config.pbtxt")).unwrap();
    assert!(config.contains("name: \"probs\"\n    data_type: TYPE_FP32\n    dims: [ 3 ]"), "{config}");
    assert!(config.contains("name: \"label_logits\"\n    data_type: TYPE_FP32\n    dims: [ 6 ]"), "{config}");
    // A head per label: two labels cannot take three heads.
    let opts = ExportOptions { multi_label: Some(names[..2].to_vec()), ..Default::default() };
    let err = export_embedding(&c.model, &c.tok, &c.prompt, &head, Default::default(), &common::tempdir("multi-embedding-bad").join("x"), &opts).unwrap_err();
    assert!(err.to_string().contains("6 rows and 6 biases for 4 labels"), "{err}");
}

#[test]
fn bad_export_dirs_and_inputs() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let dir = export_to(&c, "bad", &ExportOptions::default());
    let opts = PredictorOptions { threads: 1, ..Default::default() };
    let err = |d: &Path| Predictor::open(d, &opts).err().expect("opening fails").to_string();

    assert!(err(&dir.join("nope")).contains("does not exist"));
    // A manifest that no longer matches the tokenizer.
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let d = common::tempdir("bad-edit").join("export");
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
            }
        }
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join(EXPORT_MANIFEST)).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(d.join(EXPORT_MANIFEST), v.to_string()).unwrap();
        d
    };
    assert!(err(&edit(&|v| v["label_word_ids"][0] = 5.into())).contains("label words encode to other ids"));
    assert!(err(&edit(&|v| v["format_version"] = 99.into())).contains("format version 99"));
    // A length past i64 (it wrapped negative and passed the check).
    let e = err(&edit(&|v| v["truncation"]["max_len"] = (1u64 << 63).into()));
    assert!(e.contains("max_len 9223372036854775808 does not fit the model's"), "{e}");
    assert!(err(&edit(&|v| v["model"]["inputs"] = serde_json::json!(["input_ids", "attention_mask"]))).contains("model.onnx has inputs"));
    // The word-boundary rule a host renders by must be the tokenizer's.
    let e = err(&edit(&|v| v["tokenizer"]["word_boundary"] = "leading_space".into()));
    assert!(e.contains("marks word starts as \"ignored\", the manifest says \"leading_space\""), "{e}");
    // More fixed demonstration sets than training allows (each a forward pass an input).
    let e = err(&edit(&|v| {
        let set = serde_json::json!([{"text_a": "a dull ride", "text_b": null, "label": 0}, {"text_a": "a great ride", "text_b": null, "label": 1}]);
        v["demonstrations"] = serde_json::json!({"sets": vec![set; lmbff::prompt::MAX_DEMO_SETS + 1]});
    }));
    assert!(e.contains(&format!("{} fixed demonstration sets: at most {}", lmbff::prompt::MAX_DEMO_SETS + 1, lmbff::prompt::MAX_DEMO_SETS)), "{e}");
    // A regression range that is no range.
    let e = err(&edit(&|v| {
        v["task"] = "regression".into();
        v["regression"] = serde_json::json!({"low": 5.0, "high": 0.0});
    }));
    assert!(e.contains("finite range low < high"), "{e}");
    // Both ends finite, the span not: every score would be infinite (NaN at p = 0).
    let e = err(&edit(&|v| {
        v["task"] = "regression".into();
        v["regression"] = serde_json::json!({"low": -3e38, "high": 3e38});
    }));
    assert!(e.contains("its span finite too"), "{e}");
    // A graph with a column more than the manifest's labels is refused at open, not at
    // the first prediction.
    let words = [("0", "terrible"), ("1", "okay"), ("2", "great")].map(|(l, w)| (l.to_string(), w.to_string()));
    let three = Prompt::new(c.prompt.template.clone(), Verbalizer::new(&c.tok, &words).unwrap(), c.prompt.truncation).unwrap();
    let dir3 = export_to(&Case { prompt: three, ..case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40) }, "bad-3", &ExportOptions::default());
    let wide = edit(&|_| {});
    std::fs::copy(dir3.join("model.onnx"), wide.join("model.onnx")).unwrap();
    let e = err(&wide);
    assert!(e.contains("output \"probs\" has 3 columns") && e.contains("call for 2"), "{e}");
    // A graph without the output predictions read fails at open, naming it (it used to
    // open, then panic at the first prediction).
    let no_probs = edit(&|v| v["model"]["outputs"] = serde_json::json!(["label_logits"]));
    let strip = "import onnx, sys\nm = onnx.load(sys.argv[1])\nkeep = [o for o in m.graph.output if o.name != 'probs']\ndel m.graph.output[:]\nm.graph.output.extend(keep)\nonnx.save(m, sys.argv[1])";
    let res = std::process::Command::new(common::python()).args(["-c", strip]).arg(no_probs.join("model.onnx")).output().unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let e = err(&no_probs);
    assert!(e.contains("no output \"probs\", which predictions read"), "{e}");
    let no_model = edit(&|_| {});
    std::fs::remove_file(no_model.join("model.onnx")).unwrap();
    assert!(err(&no_model).contains("model.onnx"));
    let no_manifest = edit(&|_| {});
    std::fs::remove_file(no_manifest.join(EXPORT_MANIFEST)).unwrap();
    assert!(err(&no_manifest).contains("export manifest"));

    let p = Predictor::open(&dir, &opts).unwrap();
    assert!(p.predict(&[]).unwrap().is_empty(), "an empty batch gives an empty result");
    let r = p.predict(&[Example::single("", None)]).unwrap();
    assert!((r[0].probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "an empty text is predicted like any other");
    // A pair template needs text_b: the error names the input.
    let pair = Case { prompt: prompt(&c.tok, "{text_a} ? {mask} , {text_b}", 40), ..c };
    let pdir = export_to(&pair, "bad-pair", &ExportOptions::default());
    let e = Predictor::open(&pdir, &opts).unwrap().predict(&[Example::single("a", None)]).unwrap_err();
    assert!(matches!(e, Error::Input { index: 0, .. }) && e.to_string().starts_with("invalid argument: input 0: "), "{e}");
    assert_eq!(e.to_string().matches("invalid argument").count(), 1, "said once: {e}");
    // A one-sentence template refuses a second text rather than ignore it.
    let with_b = [Example::single("fine", None), Example { text_b: Some("x".into()), ..Example::single("a", None) }];
    let e = p.predict(&with_b).unwrap_err();
    assert!(matches!(e, Error::Input { index: 1, .. }) && e.to_string().contains("input 1") && e.to_string().contains("reads one sentence"), "{e}");
    // A long call is read a window of batches at a time (here 2 x 8 inputs): an error in
    // a later window names the input by its place in the call, and the rows are those
    // of the inputs read one by one.
    let small = Predictor::open(&dir, &PredictorOptions { max_batch: 2, ..opts }).unwrap();
    let mut long: Vec<Example> = (0..40).map(|i| Example::single(format!("input number {i} of a long call"), None)).collect();
    let rows: Vec<Vec<f32>> = small.predict(&long).unwrap().into_iter().map(|r| r.probs).collect();
    let alone: Vec<Vec<f32>> = long.iter().map(|e| p.predict(std::slice::from_ref(e)).unwrap()[0].probs.clone()).collect();
    assert!(max_diff(&rows, &alone) <= 1e-5);
    long[37].text_b = Some("x".into());
    let e = small.predict(&long).unwrap_err();
    assert!(matches!(e, Error::Input { index: 37, .. }) && e.to_string().contains("input 37: "), "{e}");
    // An input that fails as it renders, in the fifth window, is named as the call's.
    let pairs = Predictor::open(&pdir, &PredictorOptions { max_batch: 2, ..PredictorOptions::default() }).unwrap();
    let mut long: Vec<Example> = (0..40).map(|i| Example { text_b: Some("and another".into()), ..Example::single(format!("input {i}"), None) }).collect();
    assert_eq!(pairs.predict(&long).unwrap().len(), 40);
    long[37].text_b = None;
    let e = pairs.predict(&long).unwrap_err();
    assert!(matches!(e, Error::Input { index: 37, .. }) && e.to_string().contains("input 37: "), "{e}");
}

/// One predictor shared by threads gives each caller its own, correct rows.
#[test]
fn a_predictor_is_shared_across_threads() {
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 40);
    let dir = export_to(&c, "threads", &ExportOptions::default());
    let p = Predictor::open(&dir, &PredictorOptions { threads: 1, sessions: 2, max_batch: 8, ..Default::default() }).unwrap();
    let ex = texts(30);
    let want = p.predict(&ex).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|k| s.spawn({
            let (p, ex) = (&p, &ex);
            move || {
                let mine: Vec<Example> = ex.iter().skip(k).step_by(4).cloned().collect();
                (k, p.predict(&mine).unwrap())
            }
        })).collect();
        for h in handles {
            let (k, got) = h.join().unwrap();
            for (j, g) in got.iter().enumerate() {
                let w = &want[k + 4 * j];
                assert!(max_diff(std::slice::from_ref(&g.probs), std::slice::from_ref(&w.probs)) < 1e-5);
            }
        }
    });
}

/// The sentence-embedding method end to end: a model trained by it (contrastive
/// fine-tuning, then the logistic head) is saved as a checkpoint (manifest format 3, its
/// classifier inside), exported (mean pooling, normalisation and the classifier in the
/// graph; onnx's checker passes), and served with the probabilities training computes,
/// for BERT and RoBERTa, single sentences and pairs; the Python renderer reads the plain
/// template from the manifest alone.
#[test]
fn sentence_embedding_models_export_and_predict_the_same() {
    for (fixture, pair) in [("bert", false), ("roberta", true), ("mpnet", false), ("mpnet", true)] {
        let template = if pair { "*cls**sent_0*?*mask*,*+sentl_1**sep+*" } else { "*cls**sent_0*_It_was*mask*.*sep+*" };
        let c = case(&common::fixtures().join(fixture), template, 32);
        let mut train_ex: Vec<Example> = demo_sets(pair).concat();
        train_ex.extend(demo_sets(pair).concat().into_iter().map(|e| Example { text_a: format!("{} Really.", e.text_a), ..e }));
        let ep = train::EmbedParams { iterations: 2, batch_size: 4, lr: 1e-3, seed: 5, anchor_repeats: 4, ..Default::default() };
        let (head, rep) = train::train_embedding(&c.model, &c.tok, &c.prompt, &train_ex, &ep, &mut |_| true).unwrap();
        // A single sentence's template gives two label anchors, each 4 more examples of its
        // class in the pairs; a pair template gives none.
        let anchors = if pair { 0 } else { 2 };
        assert_eq!(rep.anchors.len(), anchors, "{:?}", rep.anchors);
        assert_eq!(rep.pairs, 2 * 2 * (train_ex.len() + 4 * anchors));
        // Word anchors (the default) need the anchors' texts: single sentences only.
        let hidden = c.model.config.hidden_size as usize;
        match &head.word_anchors {
            Some(w) => {
                assert!(!pair);
                assert_eq!((w.vectors.len(), head.features()), (2, hidden + 4 * 2));
            }
            None => assert!(pair, "{fixture}: a single sentence's classifier reads word anchors"),
        }
        let manifest = Manifest::for_embedding(&c.prompt, head.clone(), None, serde_json::json!({"method": "sentence-embedding"}));
        assert_eq!(manifest.format_version, if pair { 3 } else { 8 });
        let out = checkpoint_and_export(&format!("embedding-{fixture}"), &c.model, &manifest);
        let m = ExportManifest::read(&out).unwrap();
        assert_eq!((m.format_version, m.method.as_str()), (3, "sentence-embedding"));
        assert!(m.template.parts.iter().all(|p| !matches!(p, lmbff::export::PartSpec::Mask)), "the plain reading has no mask");
        // Short inputs too: one of no token of its own (word anchors then read [CLS] and
        // [SEP]) and one of fewer tokens than the top 3 the features average.
        let short = [Example::single("", None), Example::single("Fine", None)];
        let ex: Vec<Example> = texts(30)
            .into_iter()
            .chain(short)
            .enumerate()
            .map(|(i, e)| Example { text_b: pair.then(|| format!("Second part {i}.")), ..e })
            .collect();
        let want = train::softmax_rows(&train::embedding_logits(&c.model, &c.tok, &c.prompt, &head, &ex, 5).unwrap());
        let p = open(&out);
        let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
        let d = max_diff(&want, &got);
        let what = if pair { format!("{fixture} (pairs)") } else { fixture.to_string() };
        println!("sentence-embedding {what}: max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
        assert!(d <= 1e-5, "{fixture}: max diff {d}");
        assert_python_renders(&out, &p, &ex, fixture);
        for e in &ex {
            assert_eq!(p.encode(e).unwrap()[0].input_ids[0], c.tok.special().cls);
        }
        // A regression export needs a prompt model.
        let ckpt = out.parent().unwrap().join("ckpt");
        let e = export_checkpoint(&ckpt, &ckpt.parent().unwrap().join("reg"), &ExportOptions { regression: Some(RegressionRange { low: 0.0, high: 1.0 }), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("prompt model"), "{e}");
    }
}

/// A sentence-embedding model whose classes have several words, one of several tokens
/// (the word anchors read each), exports with the words' tokens in its manifest
/// (format 4) and serves what training computes; the predictor refused such an export.
#[test]
fn sentence_embedding_with_several_label_words_serves() {
    let mut c = case(&common::fixtures().join("bert"), "*cls**sent_0*_It_was*mask*.*sep+*", 32);
    let pairs = vec![("0".to_string(), "superb|terrible".to_string()), ("1".to_string(), "great|marvellous".to_string())];
    c.prompt.verbalizer = Verbalizer::new(&c.tok, &pairs).unwrap();
    assert!(!c.prompt.verbalizer.is_simple() && c.prompt.verbalizer.word_tokens(0).unwrap().len() > 1);
    let train_ex: Vec<Example> = demo_sets(false).concat();
    let ep = train::EmbedParams { iterations: 2, batch_size: 4, lr: 1e-3, seed: 5, ..Default::default() };
    let (head, _) = train::train_embedding(&c.model, &c.tok, &c.prompt, &train_ex, &ep, &mut |_| true).unwrap();
    assert!(head.word_anchors.is_some());
    let manifest = Manifest::for_embedding(&c.prompt, head.clone(), None, serde_json::json!({"method": "sentence-embedding"}));
    let out = checkpoint_and_export("embedding-words", &c.model, &manifest);
    let m = ExportManifest::read(&out).unwrap();
    assert_eq!((m.format_version, m.label_word_tokens), (4, c.prompt.verbalizer.shown_tokens()));
    let ex = texts(12);
    let want = train::softmax_rows(&train::embedding_logits(&c.model, &c.tok, &c.prompt, &head, &ex, 5).unwrap());
    let p = open(&out);
    let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
    let d = max_diff(&want, &got);
    assert!(d <= 1e-5, "max diff {d}");
    assert_python_renders(&out, &p, &ex, "embedding, several words");
    // An export into a folder holding its model (or into the model's own) is refused.
    let ckpt = out.parent().unwrap().join("ckpt");
    for into in [out.parent().unwrap(), ckpt.as_path()] {
        let e = export_checkpoint(&ckpt, into, &ExportOptions::default()).unwrap_err().to_string();
        assert!(e.contains("is inside the export's folder"), "{e}");
    }
    assert!(ckpt.join("lmbff.json").is_file());
}

/// Several words per class and multi-token words (the tiny vocabularies split "superb"
/// into pieces): trained with demonstrations, saved, exported (export format 4: the class
/// weights in the graph, `label_word_tokens` in the manifest) and served with the
/// probabilities training computes; the Python renderer shows a class by its first word.
#[test]
fn several_and_multi_token_label_words_export_and_predict_the_same() {
    for fixture in ["bert", "roberta"] {
        let mut c = case(&common::fixtures().join(fixture), "*cls**sent_0*_It_was*mask*.*sep+*", 64);
        let pairs = vec![("0".to_string(), "superb|terrible".to_string()), ("1".to_string(), "great|marvellous".to_string())];
        c.prompt.verbalizer = Verbalizer::new(&c.tok, &pairs).unwrap();
        assert!(!c.prompt.verbalizer.is_simple());
        assert!(c.prompt.verbalizer.word_tokens(0).unwrap().len() > 1, "{fixture}: superb splits");
        let train_ex: Vec<Example> = demo_sets(false).concat();
        let tp = train::TrainParams { steps: 6, batch_size: 2, lr: 1e-3, eval_every: 0, demonstrations: true, demo_sets: 2, ..Default::default() };
        let (rep, head) = train::finetune(&c.model, &c.tok, &c.prompt, Method::Prompt, &train_ex, &[], &tp, &mut |_| true).unwrap();
        let manifest = Manifest::for_prompt(&c.prompt, rep.demos.fixed(), serde_json::json!({}));
        let out = checkpoint_and_export(&format!("words-{fixture}"), &c.model, &manifest);
        let m = ExportManifest::read(&out).unwrap();
        assert_eq!(m.format_version, 8, "label_word_tokens (4), demonstrations cut first (8)");
        assert_eq!(m.label_word_tokens.as_ref().unwrap()[0], c.prompt.verbalizer.word_tokens(0).unwrap());
        let ex = texts(20);
        let want = train::softmax_rows(&train::predict_examples(&c.model, &c.tok, &c.prompt, Method::Prompt, &head, &ex, &rep.demos, 5).unwrap());
        let p = open(&out);
        let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
        let d = max_diff(&want, &got);
        println!("several/multi-token words {fixture}: max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
        assert!(d <= 1e-5, "{fixture}: {d}");
        assert_python_renders(&out, &p, &ex, fixture);
    }
}

/// Asserts that each class's word-anchor vector is the mean state of its label word's
/// tokens (the verbalizer's) in its anchor text, normalised.
fn assert_word_anchors_are_word_states(c: &Case, what: &str) {
    let got = train::word_anchor_vectors(&c.model, &c.tok, &c.prompt, &[]).unwrap().unwrap();
    let anchors = c.prompt.anchor_texts().unwrap();
    assert_eq!(got.len(), anchors.len());
    for (class, text) in anchors {
        let enc = c.prompt.plain().encode(&c.tok, &Example::single(text.clone(), None)).unwrap();
        let word = c.prompt.verbalizer.word_tokens(class).unwrap();
        let at = enc.input_ids.windows(word.len()).position(|w| w == word).unwrap_or_else(|| panic!("{what}: {word:?} in {text:?}"));
        let b = c.model.batch(&[&enc], c.tok.special().pad).unwrap();
        let h = c.model.encode(&b.input_ids, &b.attention_mask, &b.token_type_ids, false).unwrap().get(0);
        let v = h.narrow(0, at as i64, word.len() as i64).mean_dim([0i64].as_slice(), false, tch::Kind::Float);
        let v = &v / v.norm();
        let want = Vec::<f32>::try_from(&v).unwrap();
        let d = want.iter().zip(&got[class]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d < 1e-5, "{what} class {class} ({text:?}): {d}");
    }
}

/// A word anchor is the tuned encoder's state of the label word in its anchor text: for
/// "It was great." the mean of the states of "great"'s tokens, found here by the
/// verbalizer's tokens of the word (the library finds them by what the anchor does not
/// share with the template's frame, "It was."), normalised; BERT and RoBERTa, whose
/// tokenizers mark words differently; and words that share a sub-token (MiniLM's "un" of
/// un ##watch ##able and un ##lika ##ble), which comparing the anchors with each other
/// left out of both words.
#[test]
fn word_anchor_vectors_are_the_label_words_states() {
    for fixture in ["bert", "roberta"] {
        let c = case(&common::fixtures().join(fixture), "*cls**sent_0*_It_was*mask*.*sep+*", 32);
        assert_word_anchors_are_word_states(&c, fixture);
        // A prompt that reads two sentences has no anchors, so no word anchors.
        let pair = case(&common::fixtures().join(fixture), "*cls**sent_0*?*mask*,*+sentl_1**sep+*", 32);
        assert!(train::word_anchor_vectors(&pair.model, &pair.tok, &pair.prompt, &[]).unwrap().is_none());
    }
    let dir = common::default_model();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let words = [("0".to_string(), "unwatchable".to_string()), ("1".to_string(), "unlikable".to_string())];
    let v = Verbalizer::new(&tok, &words).unwrap();
    assert_eq!((v.word_tokens(0).unwrap().len(), v.word_tokens(1).unwrap().len()), (3, 3));
    assert_eq!(v.word_tokens(0).unwrap()[0], v.word_tokens(1).unwrap()[0], "the words share their first sub-token");
    let prompt = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 32, ..Truncation::default() }).unwrap();
    let c = Case { model: MaskedLm::load(&dir, Device::Cpu).unwrap(), tok, prompt };
    assert_word_anchors_are_word_states(&c, "MiniLM un-words");
}

/// The word anchors' zero-shot classifier (no training, no example): an input's logit
/// for a class is 20 times the mean of the 3 highest cosines between its own tokens
/// (not [CLS], not [SEP]) and the class's word vector, computed here token by token
/// from the encoder's states; the classifier exports and serves as a sentence-embedding
/// model with the same probabilities; a pair template has no zero-shot words.
#[test]
fn word_anchor_zero_shot_scores_the_closest_tokens_and_exports() {
    let c = case(&common::fixtures().join("bert"), "*cls**sent_0*_It_was*mask*.*sep+*", 32);
    let head = train::word_anchor_zero_shot(&c.model, &c.tok, &c.prompt, &[]).unwrap();
    let vectors = train::word_anchor_vectors(&c.model, &c.tok, &c.prompt, &[]).unwrap().unwrap();
    assert_eq!(head.word_anchors.as_ref().unwrap().vectors, vectors);
    // Further templates read the words in more phrasings, as the trained method's do.
    let more = [Template::parse("{text} So {mask}.").unwrap()];
    let wide = train::word_anchor_zero_shot(&c.model, &c.tok, &c.prompt, &more).unwrap();
    assert_eq!(wide.word_anchors.unwrap().vectors, train::word_anchor_vectors(&c.model, &c.tok, &c.prompt, &more).unwrap().unwrap());
    let ex: Vec<Example> = texts(12).into_iter().filter(|e| e.text_a.split_whitespace().count() >= 3).collect();
    assert!(ex.len() >= 8);
    let logits = train::embedding_logits(&c.model, &c.tok, &c.prompt, &head, &ex, 4).unwrap();
    for (e, got) in ex.iter().zip(&logits) {
        let enc = c.prompt.plain().encode(&c.tok, e).unwrap();
        let b = c.model.batch(&[&enc], c.tok.special().pad).unwrap();
        let h = c.model.encode(&b.input_ids, &b.attention_mask, &b.token_type_ids, false).unwrap().get(0);
        let n = enc.input_ids.len() as i64;
        let states: Vec<Vec<f32>> = (1..n - 1).map(|t| Vec::<f32>::try_from(&h.get(t)).unwrap()).collect();
        for (class, w) in vectors.iter().enumerate() {
            let mut cos: Vec<f32> = states
                .iter()
                .map(|s| s.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() / s.iter().map(|a| a * a).sum::<f32>().sqrt())
                .collect();
            cos.sort_by(|a, b| b.total_cmp(a));
            let want = train::ZERO_SHOT_WORDS_LOGIT_SCALE * cos[..3].iter().sum::<f32>() / 3.0;
            assert!((got[class] - want).abs() < 1e-4, "{:?} class {class}: {} against {want}", e.text_a, got[class]);
        }
    }
    let manifest = Manifest::for_embedding(&c.prompt, head.clone(), None, serde_json::json!({"method": "zero-shot-words"}));
    let out = checkpoint_and_export("zero-shot-words", &c.model, &manifest);
    let want = train::softmax_rows(&logits);
    let got: Vec<Vec<f32>> = open(&out).predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
    let d = max_diff(&want, &got);
    println!("zero-shot words: max |p_onnx - p_tch| = {d:.2e} over {} inputs", ex.len());
    assert!(d <= 1e-5, "{d}");
    let pair = case(&common::fixtures().join("bert"), "*cls**sent_0*?*mask*,*+sentl_1**sep+*", 32);
    let err = train::word_anchor_zero_shot(&pair.model, &pair.tok, &pair.prompt, &[]).unwrap_err().to_string();
    assert!(err.contains("zero-shot-words") && err.contains("reads two sentences"), "{err}");
}

/// A predictor opened while a new version is exported into its folder (the folder
/// replaced by a rename) never mixes the two versions' files: its manifest and every
/// session are one version's. The two versions here differ in their label words'
/// order, so a manifest of one with the other's graph predicts the classes swapped.
/// (The predictor read the manifest, the tokenizer and each session's graph by path, one
/// after the other.)
#[test]
fn a_predictor_opened_during_an_export_is_one_version() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let c = case(&common::fixtures().join("bert"), "{text} It was {mask}.", 32);
    let swapped = {
        let pairs = vec![("0".to_string(), "great".to_string()), ("1".to_string(), "terrible".to_string())];
        let v = Verbalizer::new(&c.tok, &pairs).unwrap();
        Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 32, ..Truncation::default() }).unwrap()
    };
    let root = common::tempdir("export-race");
    let versions = [root.join("a"), root.join("b")];
    for (dir, p) in versions.iter().zip([&c.prompt, &swapped]) {
        export(&c.model, &c.tok, p, &Demos::None, Default::default(), dir, &ExportOptions::default()).unwrap();
    }
    let ex = texts(4);
    let reference: Vec<(Vec<String>, Vec<Vec<f32>>)> = versions
        .iter()
        .map(|d| {
            let p = open(d);
            (p.manifest().label_words.clone(), p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect())
        })
        .collect();
    assert_ne!(reference[0].1, reference[1].1, "the versions predict apart");
    let live = root.join("live");
    let copy_of = |from: &Path| {
        write_dir_atomic(&live, EXPORT_MANIFEST, |d| {
            for e in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
                std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
            }
            Ok(())
        })
        .unwrap()
    };
    copy_of(&versions[0]);
    let stop = AtomicBool::new(false);
    let (mut opened, mut replaced) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in 1usize.. {
                if stop.load(SeqCst) {
                    break;
                }
                copy_of(&versions[k % 2]);
                std::thread::sleep(std::time::Duration::from_millis((k as u64 * 37) % 90));
            }
        });
        // The swapping thread stops whatever happens here (a failed check would leave it
        // running, and the scope waiting for it).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let _stop = Stop(&stop);
        // Until 10 predictors opened (the swaps come at a fixed pace, and a slow machine's
        // opens are refused more often: a share of them would measure its speed).
        for _ in 0..400 {
            if opened == 10 {
                break;
            }
            let p = match Predictor::open(&live, &PredictorOptions { threads: 1, sessions: 2, max_batch: 4, ..Default::default() }) {
                Ok(p) => p,
                // Replaced at every try: named, never a mixed predictor.
                Err(Error::Conflict(m)) if m.contains("replaced while it was read") => {
                    replaced += 1;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            opened += 1;
            let (_, want) = reference.iter().find(|(words, _)| *words == p.manifest().label_words).expect("one of the versions' manifests");
            // Calls at once take both sessions: each answers as the manifest says.
            std::thread::scope(|calls| {
                for _ in 0..4 {
                    calls.spawn(|| {
                        for _ in 0..3 {
                            let got: Vec<Vec<f32>> = p.predict(&ex).unwrap().into_iter().map(|p| p.probs).collect();
                            assert!(max_diff(want, &got) < 1e-6, "a session predicts another version than the manifest {:?} says", p.manifest().label_words);
                        }
                    });
                }
            });
        }
    });
    assert!(opened > 0, "{opened} opened, {replaced} refused as replaced");
}
