//! Prompt-based fine-tuning through the Rust API, on any HF BERT/RoBERTa directory.
//!
//! usage: cargo run --release --example quickstart -- MODEL_DIR [STEPS]
//! (MODEL_DIR: a checkpoint with a masked-LM head, e.g. an adapted model from `lmbff adapt`
//! or the one `bash scripts/demo` caches under .cache/adapted/; $LMBFF_DEFAULT_MODEL has
//! none, and the prompt then reads a new, untrained head: it runs, near chance)

use std::path::PathBuf;

use lmbff::model::MaskedLm;
use lmbff::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use lmbff::tokenize::Tokenizer;
use lmbff::train::{self, Method, TrainParams};

fn main() -> lmbff::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: quickstart MODEL_DIR [STEPS]"));
    let steps = args.next().map(|s| s.parse().expect("STEPS is a number")).unwrap_or(60);

    let tok = Tokenizer::from_dir(&dir)?;
    let words = [("negative".to_string(), "terrible".to_string()), ("positive".to_string(), "great".to_string())];
    let prompt = Prompt::new(Template::parse("{text} It was {mask}.")?, Verbalizer::new(&tok, &words)?, Truncation::default())?;
    let model = MaskedLm::load(&dir, tch::Device::cuda_if_available())?;
    if model.load_report().head_initialised {
        eprintln!(
            "note: {} has no masked-LM head: the prompt reads a new, untrained one, so expect answers near chance \
             (adapt the model first: `lmbff adapt`, docs/adaptation.md)",
            dir.display()
        );
    }

    let train_set = [
        ("The battery lasts all week and the screen is gorgeous.", 1),
        ("Friendly staff and the room was spotless.", 1),
        ("It broke on the second day.", 0),
        ("The soup was cold and the waiter ignored us.", 0),
    ]
    .map(|(t, l)| Example::single(t, Some(l)));
    let params = TrainParams { steps, batch_size: 4, lr: 2e-5, eval_every: 0, ..TrainParams::default() };
    let (report, head) = train::finetune(&model, &tok, &prompt, Method::Prompt, &train_set, &train_set, &params, &mut |_| true)?;
    println!("trained {} steps at {:.1} steps/s", report.steps, report.steps_per_sec);

    let pool = ["Absolutely loved it, would buy again.", "Waste of money."].map(|t| Example::single(t, None));
    let enc = train::encode_all(&tok, &prompt, Method::Prompt, &pool)?;
    let probs = train::softmax_rows(&train::predict_logits(&model, &head, &enc, tok.special().pad, 32)?);
    for (ex, p) in pool.iter().zip(probs) {
        println!("{:<40} {:?}", ex.text_a, prompt.verbalizer.labels().iter().zip(p).collect::<Vec<_>>());
    }
    Ok(())
}
