//! CUDA paths. Skipped, with a message, where no CUDA device is present (CI); run on the
//! GPU machine (see issue 6; copy the test binaries there with libtorch from its torch).

mod common;

use lmbff::model::{parse_device, MaskedLm};
use lmbff::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use lmbff::tokenize::Tokenizer;
use lmbff::train::{self, Head, Method, TrainParams};
use tch::Device;

fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        eprintln!("SKIPPED: no CUDA device (tch::Cuda::is_available() is false); run this test binary on a CUDA machine");
        None
    }
}

#[test]
fn device_names_parse_and_missing_cuda_is_a_clear_error() {
    assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
    assert!(parse_device("tpu").unwrap_err().to_string().contains("expected cpu, cuda, cuda:N or auto"));
    let n = tch::Cuda::device_count();
    let e = parse_device(&format!("cuda:{n}")).unwrap_err();
    assert!(e.to_string().contains("CUDA device"), "{e}");
    assert_eq!(parse_device("auto").unwrap() == Device::Cpu, n == 0);
}

#[test]
fn cuda_matches_cpu_and_trains() {
    let Some(dev) = cuda() else { return };
    let dir = common::fixtures().join("bert");
    let r = common::read(&dir.join("parity.safetensors"));
    let cpu = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let gpu = MaskedLm::load(&dir, dev).unwrap();
    let on = |t: &tch::Tensor| t.to_device(dev);
    let a = tch::no_grad(|| cpu.mlm_logits(&r["input_ids"], &r["attention_mask"], &r["token_type_ids"]).unwrap());
    let b = tch::no_grad(|| gpu.mlm_logits(&on(&r["input_ids"]), &on(&r["attention_mask"]), &on(&r["token_type_ids"])).unwrap());
    let diff = common::max_abs_diff(&a, &b.to_device(Device::Cpu));
    assert!(diff < 1e-3, "cuda vs cpu logits differ by {diff}");

    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Verbalizer::new(&tok, &[("0".into(), "terrible".into()), ("1".into(), "great".into())]).unwrap();
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation::default()).unwrap();
    let data = vec![Example::single("the movie was fun", Some(1)), Example::single("the movie was boring", Some(0))];
    let params = TrainParams { steps: 100, batch_size: 2, lr: 3e-3, eval_every: 20, ..TrainParams::default() };
    let (rep, head) = train::finetune(&gpu, &tok, &p, Method::Prompt, &data, &data, &params, &mut |_| true).unwrap();
    assert_eq!(rep.best_dev_acc, 1.0, "{:?}", rep.dev_curve);
    assert!(matches!(head, Head::Prompt { .. }));
}

/// A model fine-tuned on the GPU exports (weights copied off the device) and the served
/// ONNX model predicts what the CUDA model predicts.
#[test]
fn cuda_trained_model_exports_and_serves_the_same() {
    let Some(dev) = cuda() else { return };
    use lmbff::export::{export, ExportOptions};
    use lmbff::serve::{Predictor, PredictorOptions};
    let dir = common::fixtures().join("bert");
    let model = MaskedLm::load(&dir, dev).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Verbalizer::new(&tok, &[("0".into(), "terrible".into()), ("1".into(), "great".into())]).unwrap();
    // The tiny fixture has 64 positions: the export checks the length against them.
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 64, ..Truncation::default() }).unwrap();
    let data = vec![Example::single("the movie was fun", Some(1)), Example::single("the movie was boring", Some(0))];
    let params = TrainParams { steps: 30, batch_size: 2, lr: 3e-3, eval_every: 10, ..TrainParams::default() };
    train::finetune(&model, &tok, &p, Method::Prompt, &data, &data, &params, &mut |_| true).unwrap();

    let inputs: Vec<Example> = ["a fun film", "boring and long", "it was [MASK] , really", ""].iter().map(|t| Example::single(*t, None)).collect();
    let want = common::tch_probs(&model, &tok, &p, &inputs);

    let out = common::tempdir("cuda-export").join("export");
    export(&model, &tok, &p, &train::Demos::None, Default::default(), &out, &ExportOptions::default()).unwrap();
    let served = Predictor::open(&out, &PredictorOptions { threads: 1, max_batch: 4, ..Default::default() }).unwrap();
    let got: Vec<Vec<f32>> = served.predict(&inputs).unwrap().into_iter().map(|p| p.probs).collect();
    let diff = common::max_diff(&want, &got);
    println!("cuda-trained export: max |p_onnx - p_cuda| = {diff:.2e} over {} inputs", inputs.len());
    assert!(diff < 1e-4, "served probabilities differ from the CUDA model's by {diff}");
}
