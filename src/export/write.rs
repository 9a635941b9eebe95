//! Writing an export directory from a loaded model and its prompt.

use std::path::{Path, PathBuf};

use super::encoder;
use super::graph::Graph;
use super::manifest::*;
use super::{IR_VERSION, OPSET};
use crate::checkpoint::{fnv1a, fnv1a_file, write_dir_atomic, LinearHead, FNV_OFFSET, METHOD_EMBEDDING, METHOD_PROMPT};
use crate::model::{Arch, MaskedLm};
use crate::prompt::{MultiLabel, Prompt, MULTI_LABEL_THRESHOLD};
use crate::tokenize::Tokenizer;
use crate::train::{DemoEncoder, Demos};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub weights: WeightType,
    /// Store weights in `model.onnx.data` (needed past 2 GiB; chosen automatically then).
    pub external_data: bool,
    /// Also write a Triton model repository under `triton/<name>/`.
    pub triton: Option<String>,
    /// Largest batch Triton may form (its `max_batch_size`).
    pub triton_max_batch: usize,
    /// Export a two-label prompt model as a regression model over this range.
    pub regression: Option<RegressionRange>,
    /// Temperature scaling: the graph divides the class logits by it before the softmax
    /// (fitted on dev: `lmbff train --calibrate`; `export_checkpoint` takes the
    /// checkpoint's when this is None).
    pub temperature: Option<f32>,
    /// Export a yes/no prompt model over pairs (input, label name) as a multi-label model
    /// over these labels (`export_checkpoint` takes the checkpoint's when this is None).
    pub multi_label: Option<Vec<String>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { weights: WeightType::Fp32, external_data: false, triton: None, triton_max_batch: 64, regression: None, temperature: None, multi_label: None }
    }
}

/// The bytes `model`'s weights take in an export of `weights` type, as the graph stores
/// them: fp16 halves matrices only (vectors stay fp32); int8 stores the linear layers'
/// matrices as one byte a weight plus an fp32 scale per output, while embedding tables
/// (and vectors) stay fp32. Decides when the export must use external data.
pub fn stored_weight_bytes(model: &MaskedLm, weights: WeightType) -> i64 {
    model
        .vs
        .variables()
        .iter()
        .map(|(name, t)| {
            let (dims, n) = (t.size(), t.numel() as i64);
            let matrix = dims.len() >= 2;
            let linear = matrix && !name.contains("embeddings") && !name.contains("relative_attention_bias");
            match weights {
                WeightType::Fp32 => 4 * n,
                WeightType::Fp16 if matrix => 2 * n,
                WeightType::Int8 if linear => n + 4 * dims[0],
                _ => 4 * n,
            }
        })
        .sum()
}

/// Exports `model` with `prompt` (and the demonstrations it predicts with, if any) to
/// `out` (written atomically: a failed export leaves what was there). `notes` go into the
/// manifest (training facts). Similarity-filtered demonstrations add the filter's
/// sentence encoder (`demo-encoder.onnx`, fp32) and its tokenizer.
pub fn export(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    demos: &Demos,
    notes: serde_json::Map<String, serde_json::Value>,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportManifest> {
    if let Some(r) = opts.regression {
        if prompt.verbalizer.num_labels() != 2 || !r.is_valid() {
            return Err(Error::InvalidArgument(format!(
                "regression needs two label words (lower pole, upper pole) and a finite range low < high (its span finite too); got {} labels and {}..{}",
                prompt.verbalizer.num_labels(),
                r.low,
                r.high
            )));
        }
        // A regression's probability is its score: a temperature would push every score
        // towards the range's ends (the command line and the task API refuse it first).
        if let Some(t) = opts.temperature {
            return Err(Error::InvalidArgument(format!(
                "a regression export ({}..{}) takes no temperature ({t}): its upper pole's probability is its score",
                r.low, r.high
            )));
        }
    }
    if let Some(names) = &opts.multi_label {
        MultiLabel::new(names)?;
        if prompt.verbalizer.num_labels() != 2 || prompt.template.num_sentences() != 2 || opts.regression.is_some() {
            return Err(Error::InvalidArgument(format!(
                "a multi-label model is a yes/no prompt (two label words: no, yes) whose template reads the input and the label's name (two sentences); got {} labels and {} sentences{}",
                prompt.verbalizer.num_labels(),
                prompt.template.num_sentences(),
                if opts.regression.is_some() { ", and a regression range" } else { "" }
            )));
        }
    }
    let mut manifest = manifest_for(model, tok, prompt, METHOD_PROMPT, notes, opts)?;
    if let Some(names) = &opts.multi_label {
        manifest.task = "multi-label".into();
        manifest.multi_label = Some(MultiLabelSpec { labels: names.clone(), threshold: MULTI_LABEL_THRESHOLD });
    }
    let mut demo_encoder = None;
    match demos {
        Demos::None => {}
        Demos::Fixed(sets) if sets.is_empty() => {}
        Demos::Fixed(sets) => {
            prompt.check_demo_sets(tok, sets)?;
            manifest.demonstrations = Some(Demonstrations { sets: sets.clone(), filter: None });
            manifest.format_version = 2;
        }
        Demos::Similar { pool, encoder, sets } => {
            if opts.triton.is_some() {
                return Err(Error::InvalidArgument(
                    "a Triton repository serves one graph: similarity-filtered demonstrations need their sentence encoder too (export without --triton)".into(),
                ));
            }
            prompt.check_demo_pool(tok, pool.examples())?;
            manifest.demonstrations = Some(Demonstrations {
                sets: Vec::new(),
                filter: Some(DemoFilter {
                    pool: pool.examples().to_vec(),
                    sets: *sets,
                    file: DEMO_ENCODER_FILE.into(),
                    inputs: graph_inputs(encoder.model().arch),
                    tokenizer: TokenizerSpec::of(encoder.tokenizer(), DEMO_TOKENIZER_FILE),
                    max_len: encoder.reader().truncation.max_len,
                }),
            });
            manifest.format_version = 5;
            demo_encoder = Some(encoder.as_ref());
        }
    }
    let label_ids = prompt.verbalizer.token_ids().to_vec();
    let weights = prompt.verbalizer.class_weights();
    manifest.label_word_tokens = prompt.verbalizer.shown_tokens();
    if manifest.label_word_tokens.is_some() {
        manifest.format_version = manifest.format_version.max(4);
    }
    if manifest.multi_label.is_some() {
        manifest.format_version = 6;
    }
    if manifest.demonstrations.is_some() && prompt.truncation.demonstrations_first {
        // A reader that does not know the rule would cut the query where training did not.
        manifest.format_version = 8;
    }
    let mask = tok.special().mask;
    write_export(model, manifest, out, opts, demo_encoder, |g| encoder::build(model, &label_ids, weights.as_deref(), mask, opts.regression, opts.temperature, g))
}

/// Exports a sentence-embedding model (encoder and the linear classifier `head` over its
/// mean-pooled, normalised embeddings) to `out`. Inputs are rendered with `prompt`'s
/// plain reading (`[CLS] text [SEP]`, pairs `[CLS] a [SEP] b [SEP]`) and its truncation;
/// with `opts.multi_label`, `head` holds a yes/no pair of rows per label
/// (`train::train_embedding_multi`) and inputs are read alone.
pub fn export_embedding(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    head: &LinearHead,
    notes: serde_json::Map<String, serde_json::Value>,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportManifest> {
    if opts.regression.is_some() {
        return Err(Error::InvalidArgument("regression exports need a prompt model; this one uses the sentence-embedding method".into()));
    }
    let multi = match &opts.multi_label {
        Some(names) => {
            MultiLabel::new(names)?;
            if prompt.verbalizer.num_labels() != 2 {
                return Err(Error::InvalidArgument(format!(
                    "a multi-label model decides yes or no per label (two classes); got {} classes",
                    prompt.verbalizer.num_labels()
                )));
            }
            Some(names.len())
        }
        None => None,
    };
    // A yes/no head per label side by side, or a row per class.
    head.check(multi.map_or(prompt.verbalizer.num_labels(), |n| 2 * n)).map_err(Error::InvalidArgument)?;
    if head.embedding_width() as i64 != model.config.hidden_size {
        return Err(Error::InvalidArgument(format!(
            "the classifier reads embeddings of {} values; the model's have {}",
            head.embedding_width(),
            model.config.hidden_size
        )));
    }
    if head.word_anchors.is_some() && multi.is_some() {
        return Err(Error::InvalidArgument("word anchors belong to single-label classifiers; this export is multi-label".into()));
    }
    // Multi-label heads read the input alone (`Prompt::input_reader`).
    let reading = if multi.is_some() { prompt.input_reader() } else { prompt.plain() };
    let mut manifest = manifest_for(model, tok, &reading, METHOD_EMBEDDING, notes, opts)?;
    manifest.format_version = 3;
    // Several or multi-token words (the word anchors read each): recorded as a prompt
    // export records them, so the predictor finds the words it was trained with (it
    // refused such an export, finding none in the manifest).
    manifest.label_word_tokens = reading.verbalizer.shown_tokens();
    if manifest.label_word_tokens.is_some() {
        manifest.format_version = 4;
    }
    if let Some(names) = &opts.multi_label {
        manifest.task = "multi-label".into();
        manifest.multi_label = Some(MultiLabelSpec { labels: names.clone(), threshold: MULTI_LABEL_THRESHOLD });
        manifest.format_version = 7;
    }
    write_export(model, manifest, out, opts, None, |g| encoder::build_embedding(model, head, multi, opts.temperature, g))
}

/// Refuses an export whose folder holds its model (`--model out/ckpt --out out`): the
/// export replaces its folder whole, and an earlier export's folder written before the
/// exports listed their files would go with the model in it.
pub fn source_outside(model: &Path, out: &Path) -> Result<()> {
    if crate::checkpoint::is_within(model, out) {
        return Err(Error::InvalidArgument(format!(
            "the model {} is inside the export's folder {}, which an export replaces whole: export to another folder",
            model.display(),
            out.display()
        )));
    }
    Ok(())
}

/// The manifest of an export of `model` whose inputs `prompt` renders (everything but
/// the demonstrations and the model's version, which is the graph's hash).
fn manifest_for(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    method: &str,
    notes: serde_json::Map<String, serde_json::Value>,
    opts: &ExportOptions,
) -> Result<ExportManifest> {
    if let Some(t) = opts.temperature {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::InvalidArgument(format!("temperature {t}: it must be a positive number")));
        }
    }
    if let Some(name) = &opts.triton {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Error::InvalidArgument(format!("Triton model name {name:?}: use letters, digits, '_' and '-'")));
        }
        // Triton reads max_batch_size 0 as "no batch axis", which this graph has.
        if opts.triton_max_batch == 0 {
            return Err(Error::InvalidArgument("Triton max batch 0: the graph's first axis is the batch; give at least 1".into()));
        }
    }
    let c = &model.config;
    if i64::try_from(prompt.truncation.max_len).map_or(true, |m| m > c.max_input_len()) {
        return Err(Error::InvalidArgument(format!(
            "max_len {} is longer than the model's {} positions",
            prompt.truncation.max_len,
            c.max_input_len()
        )));
    }
    // Protobuf caps a file at 2 GiB: big models go to external data whatever was asked.
    let external = opts.external_data || stored_weight_bytes(model, opts.weights) > 1_800_000_000;
    let arch = match model.arch {
        Arch::Bert => "bert",
        Arch::Roberta => "roberta",
        Arch::Mpnet => "mpnet",
    };
    let inputs = graph_inputs(model.arch);
    Ok(ExportManifest {
        format: EXPORT_FORMAT.into(),
        format_version: 1,
        lmbff_version: crate::VERSION.into(),
        task: if opts.regression.is_some() { "regression" } else { "classification" }.into(),
        regression: opts.regression,
        method: method.into(),
        labels: prompt.verbalizer.labels().to_vec(),
        label_words: prompt.verbalizer.words().to_vec(),
        label_word_ids: prompt.verbalizer.token_ids().to_vec(),
        label_word_tokens: None,
        temperature: opts.temperature,
        template: TemplateSpec::of(&prompt.template)?,
        demonstrations: None,
        multi_label: None,
        tokenizer: TokenizerSpec::of(tok, "tokenizer.json"),
        truncation: prompt.truncation,
        model: ModelSpec {
            file: "model.onnx".into(),
            external_data: external.then(|| "model.onnx.data".into()),
            architecture: arch.into(),
            inputs,
            outputs: [OUTPUT_PROBS, OUTPUT_LOGITS].into_iter().chain(opts.regression.map(|_| OUTPUT_SCORE)).map(String::from).collect(),
            opset: OPSET,
            ir_version: IR_VERSION,
            weights: opts.weights,
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            max_positions: c.max_input_len(),
            version: String::new(),
        },
        notes,
    })
}

/// The graph inputs of an architecture's encoder, in order (int64 [batch, sequence]).
fn graph_inputs(arch: Arch) -> Vec<String> {
    let mut inputs = vec!["input_ids".to_string(), "attention_mask".to_string()];
    if arch.reads_token_types() {
        inputs.push("token_type_ids".into());
    }
    inputs
}

/// Writes the export directory: the graph `build` makes, the demonstration filter's
/// sentence encoder when there is one, their hash as the model version, the tokenizers,
/// the manifest and the Triton repository when asked for.
fn write_export(
    model: &MaskedLm,
    mut manifest: ExportManifest,
    out: &Path,
    opts: &ExportOptions,
    demo_encoder: Option<&DemoEncoder>,
    build: impl FnOnce(Graph) -> Result<Graph>,
) -> Result<ExportManifest> {
    let external = manifest.model.external_data.is_some();
    write_dir_atomic(out, super::manifest::EXPORT_MANIFEST, |dir| {
        let graph = build(Graph::new(opts.weights))?;
        let onnx = dir.join("model.onnx");
        let doc = format!(
            "lmbff {} export: {} {} model, labels {:?}",
            crate::VERSION,
            manifest.model.architecture,
            manifest.method,
            manifest.labels
        );
        let meta = [("lmbff_manifest", EXPORT_MANIFEST.to_string()), ("lmbff_version", crate::VERSION.to_string())];
        graph.write(&onnx, OPSET, IR_VERSION, &doc, &meta, external)?;
        // A model's tokenizer as it was loaded (held since), as a saved model has it, but
        // with no prefix space: as training read it (`Tokenizer::from_dir`).
        let write_tokenizer = |m: &MaskedLm, name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            let bytes = m.tokenizer_file("tokenizer.json")?;
            let bytes = crate::tokenize::without_prefix_space(bytes).map_or(std::borrow::Cow::Borrowed(bytes), std::borrow::Cow::Owned);
            std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        };
        let mut files = vec![onnx.clone()];
        files.extend(external.then(|| dir.join("model.onnx.data")));
        if let Some(enc) = demo_encoder {
            let file = dir.join(DEMO_ENCODER_FILE);
            let doc = format!("lmbff {} export: the demonstration filter's sentence encoder ({})", crate::VERSION, enc.dir().display());
            // Written whole (its own external data is not supported): an encoder past
            // 2 GiB is named, with what to do.
            encoder::build_sentence_encoder(enc.model(), Graph::new(WeightType::Fp32))?.write(&file, OPSET, IR_VERSION, &doc, &meta, false).map_err(|e| match e {
                Error::InvalidArgument(m) => Error::InvalidArgument(format!(
                    "{m}: the demonstration filter's encoder ({}) is too large to export; train with a smaller one (demo_filter_model)",
                    enc.dir().display()
                )),
                other => other,
            })?;
            files.push(file);
            files.push(write_tokenizer(enc.model(), DEMO_TOKENIZER_FILE)?);
        }
        files.push(write_tokenizer(model, "tokenizer.json")?);
        // The version covers everything that shapes the predictions: the graphs, the
        // tokenizers and the manifest (template, label words, truncation, demonstration
        // sets, calibration), this field left empty.
        let mut h = FNV_OFFSET;
        for f in &files {
            h = fnv1a_file(f, h)?;
        }
        manifest.model.version = String::new();
        let text = serde_json::to_vec(&manifest).map_err(|e| Error::Internal(format!("the export manifest does not serialise: {e}")))?;
        manifest.model.version = format!("{:016x}", fnv1a(&text, h));
        manifest.write_into(dir)?;
        if let Some(name) = &opts.triton {
            write_triton(dir, name, &manifest, opts.triton_max_batch)?;
        }
        Ok(())
    })?;
    Ok(manifest)
}

/// Exports the trained checkpoint in `dir` (an HF model directory with its lmbff.json)
/// with the prompt it was trained with, by its method; its manifest notes go into the
/// export's.
pub fn export_checkpoint(dir: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportManifest> {
    source_outside(dir, out)?;
    let m = crate::checkpoint::Manifest::read(dir)?;
    let tok = Tokenizer::from_dir(dir)?;
    let prompt = m.prompt(&tok, dir)?;
    // Exports run beside training runs: no draw from their random generator.
    let model = MaskedLm::load_without_rng(dir, tch::Device::Cpu)?;
    let from_checkpoint = ExportOptions {
        temperature: opts.temperature.or(m.temperature.map(|t| t as f32)),
        multi_label: opts.multi_label.clone().or(m.multi_label.clone()),
        regression: opts.regression.or(m.regression.map(|(low, high)| RegressionRange { low, high })),
        ..opts.clone()
    };
    let opts = &from_checkpoint;
    if m.method == METHOD_EMBEDDING {
        let head = m.embedding_classifier(dir)?;
        return export_embedding(&model, &tok, &prompt, head, m.notes.clone(), out, opts);
    }
    if model.load_report().head_initialised {
        // A prompt model predicts through its masked-LM head; one made up here would
        // answer nothing the checkpoint learned.
        return Err(Error::MissingWeight {
            name: "of the masked-LM head (a prompt-method checkpoint predicts its label words with it)".into(),
            file: model.load_report().file.clone(),
        });
    }
    let demos = Demos::of_checkpoint(&m, &prompt, tch::Device::Cpu)?;
    export(&model, &tok, &prompt, &demos, m.notes, out, opts)
}

/// A Triton model repository: `triton/<name>/config.pbtxt` and `triton/<name>/1/` holding
/// the model files. Triton receives token ids: the host renders and tokenizes as the
/// manifest says.
fn write_triton(dir: &Path, name: &str, m: &ExportManifest, max_batch: usize) -> Result<()> {
    let model_dir = dir.join("triton").join(name);
    let version_dir = model_dir.join("1");
    std::fs::create_dir_all(&version_dir).map_err(|e| Error::io(&version_dir, e))?;
    for f in std::iter::once(&m.model.file).chain(m.model.external_data.iter()) {
        let (from, to) = (dir.join(f), version_dir.join(f));
        // A hard link where the file system allows it (no second copy of the weights).
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    let tensor = |n: &str, ty: &str, dims: &str| format!("  {{\n    name: \"{n}\"\n    data_type: {ty}\n    dims: [ {dims} ]\n  }}");
    let inputs: Vec<String> = m.model.inputs.iter().map(|n| tensor(n, "TYPE_INT64", "-1")).collect();
    // With max_batch_size set, dims leave out the batch axis: [labels], or [1] for score.
    let outputs: Vec<String> = m.model.outputs.iter().map(|n| tensor(n, "TYPE_FP32", &m.output_width(n).to_string())).collect();
    let text = format!(
        "# Written by lmbff {}. Inputs are token ids rendered as ../../lmbff-export.json says.\n\
         name: \"{name}\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: {max_batch}\n\
         input [\n{}\n]\noutput [\n{}\n]\ndynamic_batching {{ }}\n",
        crate::VERSION,
        inputs.join(",\n"),
        outputs.join(",\n")
    );
    let path = model_dir.join("config.pbtxt");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}
