//! The `lmbff` binary end to end on the tiny BERT fixture: train, save, eval; bad input
//! gives a named error and exit code 1.

mod common;

use std::process::Command;
use std::io::Write;

fn lmbff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmbff"));
    c.env("OMP_NUM_THREADS", "1");
    c
}

fn write_toy(dir: &std::path::Path) -> std::path::PathBuf {
    let f = dir.join("toy.tsv");
    std::fs::write(&f, "sentence\tlabel\nthe movie was fun\t1\nthe movie was boring\t0\ni loved this book\t1\ni hated this book\t0\n").unwrap();
    f
}

#[test]
fn train_save_and_eval() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli");
    let toy = write_toy(&dir);
    let out = dir.join("trained");
    let o = lmbff()
        .args(["train", "--method", "prompt", "--device", "cpu", "--threads", "1", "--steps", "100", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "20"])
        .args(["--template", "*cls**sent_0*_This_is*mask*.*sep+*", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
        .arg("--model").arg(&model).arg("--train").arg(&toy).arg("--dev").arg(&toy).arg("--test").arg(&toy).arg("--out").arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["test_acc"], 1.0, "{report}");
    assert!(out.join("lmbff.json").is_file() && out.join("model.safetensors").is_file());
    // eval reads template and labels from the saved manifest.
    // --threads 0 is all cores, as predict's (it was refused here).
    let o = lmbff().args(["eval", "--device", "cpu", "--threads", "0"]).arg("--model").arg(&out).arg("--test").arg(&toy).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["acc"], 1.0);
    assert_eq!(r["template"], "*cls**sent_0*_This_is*mask*.*sep+*", "template from the manifest");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!(m["label_words"], serde_json::json!(["bad", "good"]));
    assert_eq!(m["truncation"]["max_len"], 24);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("renders the saved prompt otherwise"));
    // A copy as an lmbff that rendered its prompt otherwise would have saved it: eval
    // warns, export refuses (its predictions would read ids it was not trained on).
    let other = dir.join("other-rendering");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&out).unwrap().flatten().filter(|f| f.path().is_file()) {
        std::fs::copy(f.path(), other.join(f.file_name())).unwrap();
    }
    let mut changed = m.clone();
    changed["rendering"] = "fnv1a:0123456789abcdef".into();
    std::fs::write(other.join("lmbff.json"), changed.to_string()).unwrap();
    let o = lmbff().args(["eval", "--device", "cpu", "--threads", "1"]).arg("--model").arg(&other).arg("--test").arg(&toy).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("warning: ") && String::from_utf8_lossy(&o.stderr).contains("renders the saved prompt otherwise"),
        "{}", String::from_utf8_lossy(&o.stderr));
    let o = lmbff().arg("export").arg("--model").arg(&other).arg("--out").arg(dir.join("never-exported")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("renders the saved prompt otherwise"), "{}", String::from_utf8_lossy(&o.stderr));

    // export and predict: the exported model labels the toy set as the checkpoint did.
    let exp = dir.join("exported");
    let o = lmbff().arg("export").arg("--model").arg(&out).arg("--out").arg(&exp).arg("--int8").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&toy).arg("--export").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("accuracy 1.0000 (4/4)"), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["label"], "1");
    // Label Studio's shape, texts from stdin.
    let mut child = lmbff()
        .args(["predict", "--threads", "1", "--label-studio", "sentiment,text", "--export"])
        .arg(&exp)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"i loved this book\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ls["result"][0]["value"]["choices"][0], "1");
    assert_eq!(ls["result"][0]["to_name"], "text");
    // A single-sentence export reads a line with a tab as one text (it used to be cut at
    // the tab, the rest dropped): a tab is whitespace to the tokenizer, so the same
    // probabilities as the line with a space.
    let tabbed = dir.join("tabbed.txt");
    std::fs::write(&tabbed, "i loved\tthis book\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&tabbed).arg("--export").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut child = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exp).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"i loved this book\n").unwrap();
    let whole: serde_json::Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    let mut cut = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exp).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut cut.stdin.take().unwrap(), b"i loved\n").unwrap();
    let cut: serde_json::Value = serde_json::from_slice(&cut.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(got["probs"], whole["probs"]);
    assert_ne!(got["probs"], cut["probs"], "the text after the tab is read");
    // Stdin is streamed: a host that writes a line and waits gets its answer before it
    // writes the next (predict used to read to the end of input first), in order.
    let mut child = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exp).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            tx.send(line.unwrap()).unwrap();
        }
    });
    for (i, text) in ["i loved this book", "i loved"].iter().enumerate() {
        writeln!(stdin, "{text}").unwrap();
        let answer = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("an answer while stdin stays open");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["index"], i);
        assert_eq!(answer["probs"], [&whole, &cut][i]["probs"]);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(rx.recv().is_err(), "nothing more after the two answers");
    let o = lmbff().args(["predict", "--label-studio", "only-one", "--export"]).arg(&exp).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("FROM,TO"));
    // A TSV of texts without labels predicts them (no accuracy).
    let unlabelled = dir.join("texts.tsv");
    // Each answer names its row's line: blank lines and the header are no inputs.
    std::fs::write(&unlabelled, "\nsentence\ni loved this book\n\nthe movie was boring\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&unlabelled).arg("--export").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // (An int8 export in a batch of two: its inputs are quantized per batch, docs/export.md,
    // and the probabilities move by a few 1e-4.)
    let close = |a: &serde_json::Value, b: &serde_json::Value| a.as_object().unwrap().iter().all(|(k, v)| (v.as_f64().unwrap() - b[k].as_f64().unwrap()).abs() < 5e-3);
    assert!(close(&got[0]["probs"], &whole["probs"]), "{} against {}", got[0]["probs"], whole["probs"]);
    assert_eq!([&got[0]["index"], &got[0]["line"], &got[1]["index"], &got[1]["line"]], [0, 3, 1, 5]);
    // A line that is not UTF-8 gets an error record naming its line, in its place; the
    // lines after it are still answered (predict used to stop there), from a file and
    // from stdin, and the exit status says some line was not read.
    let bad = dir.join("bad.txt");
    let bytes = b"i loved this book\nnot \xff utf-8\ni loved\nnul\x00inside\n";
    std::fs::write(&bad, bytes).unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&bad).arg("--export").arg(&exp).output().unwrap();
    let mut piped = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exp).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut piped.stdin.take().unwrap(), bytes).unwrap();
    let piped = piped.wait_with_output().unwrap();
    // The readable lines alone, in one batch as in the file's run (an int8 export's
    // probabilities move with the batch, so stdin's, batched as lines arrive, are not
    // compared).
    let good = dir.join("good.txt");
    std::fs::write(&good, "i loved this book\ni loved\n").unwrap();
    let g = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&good).arg("--export").arg(&exp).output().unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let reference: Vec<serde_json::Value> = String::from_utf8_lossy(&g.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (o, name) in [(&o, bad.display().to_string()), (&piped, "stdin".to_string())] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(&format!("{name}, line 2: not UTF-8 text, and 2 of 4 lines could not be predicted")), "{err}");
        let got: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        for (k, why) in [(1, "line 2: not UTF-8 text"), (3, "line 4: holds a NUL byte")] {
            assert_eq!((&got[k]["index"], &got[k]["line"], got[k].get("label")), (&serde_json::json!(k), &serde_json::json!(k + 1), None), "{got:?}");
            assert!(got[k]["error"].as_str().unwrap().starts_with(why), "{got:?}");
        }
        assert!(got[0]["probs"].is_object() && got[2]["probs"].is_object() && got[2]["index"] == 2, "{got:?}");
        if name != "stdin" {
            assert_eq!([&got[0]["probs"], &got[2]["probs"]], [&reference[0]["probs"], &reference[1]["probs"]]);
        }
    }
    // A UTF-16 file is named as a whole (its lines after the first were valid UTF-8 with
    // NULs between the letters).
    let utf16 = dir.join("utf16.txt");
    std::fs::write(&utf16, [&[0xffu8, 0xfe][..], &"good\n".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>()].concat()).unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&utf16).arg("--export").arg(&exp).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.stdout.is_empty() && err.contains("line 1: UTF-16 text (its byte-order mark): save the file as UTF-8"), "{err}");
    // LM-BFF's `label,sentence` CSV is read as train and eval read it, and scored (it was
    // predicted as text, labels and all).
    let csv = dir.join("toy.csv");
    std::fs::write(&csv, "1,the movie was fun\n0,the movie was boring\n1,\"i loved this book, really\"\n0,i hated this book\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&csv).arg("--export").arg(&exp).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("accuracy 1.0000 (4/4)"), "{err}");
    let last: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["line"], 4);
    let o = lmbff().args(["eval", "--device", "cpu", "--threads", "1"]).arg("--model").arg(&out).arg("--test").arg(&csv).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A pair file against a one-sentence export is named as eval names it.
    let pairs = dir.join("pairs.tsv");
    std::fs::write(&pairs, "sentence1\tsentence2\tlabel\na\tb\t1\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&pairs).arg("--export").arg(&exp).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pairs.tsv has a second sentence column"), "{err}");
    // A header-only test file is refused, not scored as null.
    let empty = dir.join("empty.tsv");
    std::fs::write(&empty, "sentence\tlabel\n").unwrap();
    let o = lmbff().args(["eval", "--device", "cpu", "--threads", "1"]).arg("--model").arg(&out).arg("--test").arg(&empty).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("empty.tsv holds no examples"), "{err}");
    // An earlier output that now holds a user's file is not replaced.
    std::fs::write(exp.join("NOTES.md"), "mine").unwrap();
    let o = lmbff().arg("export").arg("--model").arg(&out).arg("--out").arg(&exp).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("(NOTES.md)"), "{err}");
    assert!(exp.join("NOTES.md").is_file());
}

#[test]
fn bad_input_is_a_named_error() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-bad");
    let toy = write_toy(&dir);
    let cases: [(&[&str], &str); 5] = [
        (&["--template", "{text} It was good."], "no mask"),
        (&["--labels", "0=great,1=Great"], "also a word of label"),
        (&["--device", "cuda:7"], "cuda:7"),
        (&["--labels", "=bad,1=good"], "the label's name is empty"),
        (&["--labels", "0=bad=x,1=good"], "one '=' between the label and its word"),
    ];
    for (extra, needle) in cases {
        let o = lmbff().args(["eval"]).arg("--model").arg(&model).arg("--test").arg(&toy).args(extra).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error:") && err.contains(needle), "{extra:?}: {err}");
    }
    let o = lmbff().args(["eval", "--model", "/nonexistent", "--test"]).arg(&toy).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent does not exist"));
}

#[test]
fn quickstart_example_runs() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_lmbff")).parent().unwrap().join("examples/quickstart");
    assert!(exe.is_file(), "cargo test builds examples: {} is missing", exe.display());
    let o = Command::new(exe).arg(common::fixtures().join("bert")).arg("5").env("OMP_NUM_THREADS", "1").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("trained 5 steps") && out.contains("Waste of money."), "{out}");
}

/// `train --calibrate` fits a temperature on dev, reports the ECE before and after, saves
/// it with the model (manifest format 4), and the export divides the logits by it: its
/// probabilities are the softmax of the uncalibrated export's logits over T. The
/// sentence-embedding method trains and saves through the same command.
#[test]
fn train_chooses_the_method_as_the_library_does() {
    // The default MiniLM ships no masked-LM head: --method auto (the default) takes the
    // sentence-embedding method, and says why (the command line trained a prompt on the
    // new, random head).
    let dir = common::tempdir("cli-auto");
    let toy = write_toy(&dir);
    let train = |model: &std::path::Path, extra: &[&str]| {
        lmbff()
            .args(["train", "--device", "cpu", "--threads", "1", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
            .args(extra)
            .arg("--model").arg(model).arg("--train").arg(&toy).arg("--dev").arg(&toy)
            .output()
            .unwrap()
    };
    let out = dir.join("auto");
    let o = train(&common::default_model(), &["--embedding-max-steps", "2", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("method sentence-embedding (--method auto): the checkpoint has no masked-LM head"), "{err}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!(m["method"], "sentence-embedding", "{m}");
    // The reason is in the notes (as the task API's versions have it), and the report
    // names the method at its top, whichever it is.
    assert_eq!(m["notes"]["method_reason"], "the checkpoint has no masked-LM head", "{m}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["method"], "sentence-embedding", "{report}");
    assert!(!err.contains("no --out"), "{err}");
    // A prompt-method flag refused by the method auto chose says auto chose it.
    let o = train(&common::default_model(), &["--steps", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("(--method auto chose it for this model: give --method prompt or plain"), "{err}");
    // A checkpoint with a head: the zero-shot test on the --train examples decides, and
    // the reason gives its counts. Without --out, a note says the model is not saved.
    let o = train(&common::fixtures().join("bert"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("(--method auto): zero-shot ") && err.contains("right on the examples"), "{err}");
    assert!(err.contains("note: no --out: the model is scored, and not saved"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(["prompt", "sentence-embedding"].contains(&report["method"].as_str().unwrap_or("")), "{report}");
    // With --demos the prompt method, which they belong to.
    let o = train(&common::fixtures().join("bert"), &["--demos", "--steps", "2", "--batch-size", "2", "--eval-every", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("method prompt (--method auto): demonstrations were asked for"), "{err}");
}

/// The `--demo-filter` encoder is recorded by its absolute path (commands that read the
/// saved model may run from another folder), and `--out` may not be that encoder.
#[test]
fn the_demo_filter_encoder_is_recorded_absolute_and_never_overwritten() {
    let fixtures = common::fixtures();
    let dir = common::tempdir("cli-demo-filter");
    let toy = write_toy(&dir);
    let train = |encoder: &std::path::Path, out: &std::path::Path| {
        lmbff()
            .current_dir(fixtures)
            .args(["train", "--device", "cpu", "--threads", "1", "--method", "prompt", "--demos", "--steps", "2", "--batch-size", "2", "--eval-every", "1"])
            .args(["--labels", "{'0':'bad','1':'good'}", "--max-len", "32", "--model", "bert", "--demo-filter"])
            .arg(encoder).arg("--train").arg(&toy).arg("--dev").arg(&toy).arg("--out").arg(out)
            .output()
            .unwrap()
    };
    let out = dir.join("filtered");
    let o = train(std::path::Path::new("bert"), &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!(m["demo_filter"]["encoder"], fixtures.join("bert").to_str().unwrap(), "{}", m["demo_filter"]["encoder"]);
    // The earlier output as the encoder and as --out: refused before training, kept.
    let before = std::fs::read(out.join("lmbff.json")).unwrap();
    let o = train(&out, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is the --demo-filter encoder"), "{err}");
    assert_eq!(std::fs::read(out.join("lmbff.json")).unwrap(), before);
}

#[test]
fn calibrated_training_and_the_sentence_embedding_method() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-calibrate");
    let toy = write_toy(&dir);
    // A dev set the model cannot get all right (one text with the other label), so that
    // a temperature fits inside the search's bounds and is applied.
    let dev = dir.join("dev.tsv");
    std::fs::write(&dev, format!("{}the movie was fun\t0\n", std::fs::read_to_string(&toy).unwrap())).unwrap();
    let train_on = |method: &str, dev: &std::path::Path, out: &std::path::Path| {
        let o = lmbff()
            .args(["train", "--device", "cpu", "--threads", "1", "--lr", "3e-3", "--calibrate"])
            // The prompt method's schedule (sentence-embedding refuses these: it follows SetFit's).
            .args(if method == "prompt" { &["--steps", "30", "--batch-size", "4", "--eval-every", "10"][..] } else { &[][..] })
            .args(["--method", method, "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
            .arg("--model").arg(&model).arg("--train").arg(&toy).arg("--dev").arg(dev).arg("--test").arg(&toy).arg("--out").arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (report, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // A dev set the model gets all right bounds no temperature: reported, not saved.
    let unbounded = dir.join("trained-unbounded");
    let (report, err) = train_on("prompt", &toy, &unbounded);
    assert_eq!(report["calibration"]["applied"], false, "{report}");
    assert!(err.contains("not applied"), "{err}");
    // Its ECE "after" is the saved model's, the same as before.
    let c = &report["calibration"];
    assert!(c["dev_ece_after"] == c["dev_ece_before"] && c["test_ece_after"] == c["test_ece_before"], "{report}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(unbounded.join("lmbff.json")).unwrap()).unwrap();
    assert!(m.get("temperature").is_none_or(|t| t.is_null()), "{m}");
    let train = |method: &str, out: &std::path::Path| train_on(method, &dev, out).0;
    for method in ["prompt", "sentence-embedding"] {
        let out = dir.join(format!("trained-{method}"));
        let report = train(method, &out);
        let c = &report["calibration"];
        let t = c["temperature"].as_f64().unwrap();
        assert!(t > 0.05 && t < 20.0 && c["applied"] == true && c["dev_ece_after"].is_number(), "{report}");
        assert!(c["test_ece_after"].is_number(), "{report}");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
        // The sentence-embedding classifier reads word anchors (manifest version 8).
        let version = if method == "prompt" { 4 } else { 8 };
        assert_eq!((m["format_version"].as_u64(), m["method"].as_str(), m["temperature"].as_f64()), (Some(version), Some(method), Some(t)));
        let exp = dir.join(format!("exported-{method}"));
        let o = lmbff().arg("export").arg("--model").arg(&out).arg("--out").arg(&exp).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(exp.join("lmbff-export.json")).unwrap()).unwrap();
        assert!((e["temperature"].as_f64().unwrap() - t).abs() < 1e-6 * t.max(1.0), "{e}");
        // The served probabilities are softmax(logits / T) of the same model uncalibrated.
        let mut m2 = m.clone();
        m2.as_object_mut().unwrap().remove("temperature");
        m2["format_version"] = if method == "prompt" { 1 } else { 8 }.into();
        std::fs::write(out.join("lmbff.json"), m2.to_string()).unwrap();
        let raw = dir.join(format!("raw-{method}"));
        assert!(lmbff().arg("export").arg("--model").arg(&out).arg("--out").arg(&raw).output().unwrap().status.success());
        let predict = |e: &std::path::Path| -> Vec<Vec<f64>> {
            let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&toy).arg("--export").arg(e).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                vec![v["probs"]["0"].as_f64().unwrap(), v["probs"]["1"].as_f64().unwrap()]
            }).collect()
        };
        for (cal, unc) in predict(&exp).iter().zip(predict(&raw)) {
            // p1 / p0 = exp((z1 - z0) / T): the log-odds shrink by T.
            let (lc, lu) = ((cal[1] / cal[0]).ln(), (unc[1] / unc[0]).ln());
            assert!((lc - lu / t).abs() < 1e-3 * lu.abs().max(1.0), "{method}: {lc} vs {lu} / {t}");
        }
    }
}

/// `train --anchor-template` adds a template's texts to the sentence-embedding method's
/// label anchors (saved in the model's notes); with `--no-anchors`, with another method
/// or with a two-sentence template it is refused by name, before training.
#[test]
fn anchor_templates_on_the_command_line() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-anchor-templates");
    let toy = write_toy(&dir);
    let train = |extra: &[&str], out: &std::path::Path| {
        lmbff()
            .args(["train", "--device", "cpu", "--threads", "1", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
            .args(extra)
            .arg("--model").arg(&model).arg("--train").arg(&toy).arg("--dev").arg(&toy).arg("--out").arg(out)
            .output()
            .unwrap()
    };
    let out = dir.join("trained");
    let o = train(&["--method", "sentence-embedding", "--anchor-template", "{text} So {mask}."], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!(m["notes"]["label_anchors"], serde_json::json!(["It was bad.", "It was good.", "So bad.", "So good."]), "{m}");
    assert!(m["notes"]["steps_capped_from"].is_null(), "a toy task's schedule is under the default cap: {m}");
    // --embedding-max-steps caps the contrastive steps; the notes give the whole schedule's.
    let capped = dir.join("capped");
    // Settings of the prompt method's schedule are refused by name, not ignored.
    let o = train(&["--method", "sentence-embedding", "--steps", "5"], &dir.join("steps"));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--steps sets the prompt and plain methods' training"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train(&["--method", "sentence-embedding", "--embedding-max-steps", "2"], &capped);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(capped.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!(m["notes"]["steps"].as_u64(), Some(2), "{m}");
    assert!(m["notes"]["steps_capped_from"].as_u64().is_some_and(|n| n > 2), "{m}");
    for (args, want) in [
        (&["--method", "sentence-embedding", "--no-anchors", "--anchor-template", "{text} So {mask}."][..], "--no-anchors"),
        (&["--method", "prompt", "--anchor-template", "{text} So {mask}."][..], "--method sentence-embedding"),
        (&["--method", "prompt", "--embedding-max-steps", "5"][..], "--embedding-max-steps is for --method sentence-embedding"),
        (&["--method", "prompt", "--no-anchors"][..], "--no-anchors is for --method sentence-embedding"),
        (&["--method", "prompt", "--demo-sets", "4"][..], "--demos"),
        (&["--method", "sentence-embedding", "--anchor-template", "{text_a} ? {mask} , {text_b}"][..], "reads two sentences"),
    ] {
        let o = train(args, &dir.join("refused"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!dir.join("refused").exists(), "nothing saved");
    }
}

/// `train --method zero-shot-words` trains nothing and needs no example: it scores dev
/// and test, calibrates on dev, and saves a sentence-embedding model whose export serves
/// the accuracy it reported. What it cannot use is refused by name, before anything is
/// saved; the other methods still need --train and --dev.
#[test]
fn zero_shot_words_on_the_command_line() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-zero-shot-words");
    let toy = write_toy(&dir);
    let run = |extra: &[&str], out: &std::path::Path| {
        lmbff()
            .args(["train", "--device", "cpu", "--threads", "1", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
            .args(["--method", "zero-shot-words"])
            .args(extra)
            .arg("--model").arg(&model).arg("--out").arg(out)
            .output()
            .unwrap()
    };
    let out = dir.join("zero-shot");
    let toy_s = toy.to_str().unwrap();
    let o = run(&["--dev", toy_s, "--test", toy_s, "--calibrate", "--anchor-template", "{text} So {mask}."], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let test_acc = report["test_acc"].as_f64().unwrap();
    assert_eq!(report["dev_acc"].as_f64(), Some(test_acc), "the same file: {report}");
    assert!(report["calibration"]["temperature"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["label_anchors"], serde_json::json!(["It was bad.", "It was good.", "So bad.", "So good."]), "{report}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("lmbff.json")).unwrap()).unwrap();
    assert_eq!((m["method"].as_str(), m["notes"]["method"].as_str()), (Some("sentence-embedding"), Some("zero-shot-words")), "{m}");
    let exp = dir.join("exported");
    let o = lmbff().arg("export").arg("--model").arg(&out).arg("--out").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = lmbff().args(["predict", "--threads", "1", "--input"]).arg(&toy).arg("--export").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gold = [1.0, 0.0, 1.0, 0.0];
    let served: Vec<f64> = o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        if v["probs"]["1"].as_f64().unwrap() > v["probs"]["0"].as_f64().unwrap() { 1.0 } else { 0.0 }
    }).collect();
    let served_acc = served.iter().zip(gold).filter(|(p, g)| **p == *g).count() as f64 / gold.len() as f64;
    assert_eq!(served_acc, test_acc, "served {served:?}");
    // No dev, no test: still a model.
    let o = run(&[], &dir.join("bare"));
    assert!(o.status.success() && dir.join("bare/lmbff.json").is_file(), "{}", String::from_utf8_lossy(&o.stderr));
    for (args, want) in [
        (&["--train", toy_s][..], "takes no --train"),
        (&["--calibrate"][..], "--calibrate without --dev"),
        (&["--no-anchors"][..], "--no-anchors"),
        (&["--demos"][..], "--demos"),
        (&["--embedding-max-steps", "5"][..], "--embedding-max-steps"),
        (&["--lr", "1e-3"][..], "takes no --lr, --steps, --batch-size or --eval-every"),
        (&["--template", "*cls**sent_0*?*mask*,*+sentl_1**sep+*"][..], "reads two sentences"),
    ] {
        let o = run(args, &dir.join("refused"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!dir.join("refused").exists(), "nothing saved");
    }
    let o = lmbff().args(["train", "--device", "cpu", "--method", "sentence-embedding", "--dev", toy_s]).arg("--model").arg(&model).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--train") && err.contains("give both"), "{err}");
    // A train file with a header and no rows: refused before any training (the anchors
    // alone used to tune the encoder, then the classifier failed on no rows).
    let empty = dir.join("empty.tsv");
    std::fs::write(&empty, "sentence\tlabel\n").unwrap();
    let o = lmbff().args(["train", "--device", "cpu", "--method", "sentence-embedding", "--dev", toy_s, "--train"]).arg(&empty).arg("--model").arg(&model).arg("--out").arg(dir.join("empty-out")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("empty.tsv holds no examples") && !err.contains("train 1/"), "{err}");
}

/// Mistakes a user makes on the command line are named before any long work, and none
/// loses a model: an `--out` that is the model read, a test file that is not there, a
/// huge `--threads`, a `--max-len` the model cannot hold, a missing seed of a `compare`
/// grid (each run with a step budget that would take hours if it started), a harness
/// `--out` among a user's files, labels a file does not share with the export. `eval`
/// scores a sentence-embedding model with its own classifier, as training did.
#[test]
fn mistakes_are_named_before_the_work() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-mistakes");
    let toy = write_toy(&dir);
    let fails_with = |cmd: &mut Command, needle: &str| {
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{needle}: {err}");
        assert!(err.contains(needle), "wanted {needle:?}: {err}");
        assert!(o.stdout.is_empty(), "nothing reported as done: {}", String::from_utf8_lossy(&o.stdout));
    };
    let train = |extra: &[&str]| {
        let mut c = lmbff();
        c.args(["train", "--device", "cpu", "--threads", "1", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
            .arg("--train").arg(&toy).arg("--dev").arg(&toy).args(extra);
        c
    };
    let trained = dir.join("trained");
    let o = train(&["--method", "sentence-embedding", "--embedding-max-steps", "20"]).arg("--model").arg(&model).arg("--out").arg(&trained).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = lmbff().args(["eval", "--device", "cpu", "--threads", "1", "--model"]).arg(&trained).arg("--test").arg(&toy).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((eval["method"].as_str(), eval["acc"].as_f64()), (Some("sentence-embedding"), report["dev_acc"].as_f64()), "eval {eval}, train {report}");
    fails_with(lmbff().args(["eval", "--device", "cpu", "--labels", "0=bad,1=good", "--model"]).arg(&trained).arg("--test").arg(&toy), "--labels does not apply");
    fails_with(lmbff().args(["eval", "--device", "cpu", "--template", "{text} So {mask}.", "--model"]).arg(&trained).arg("--test").arg(&toy), "--template does not apply");
    fails_with(lmbff().args(["eval", "--device", "cpu", "--first-sent-limit", "8", "--model"]).arg(&trained).arg("--test").arg(&toy), "--first-sent-limit does not apply");
    let pairs = dir.join("pairs.tsv");
    std::fs::write(&pairs, "sentence1\tsentence2\tlabel\nfun\tyes\t1\n").unwrap();
    fails_with(lmbff().args(["eval", "--device", "cpu", "--model"]).arg(&trained).arg("--test").arg(&pairs), "reads one sentence");

    // The model read is never the output; a copy of it stays byte for byte.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&trained).unwrap().map(Result::unwrap) {
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let weights = std::fs::read(copy.join("model.safetensors")).unwrap();
    fails_with(train(&["--method", "sentence-embedding"]).arg("--model").arg(&copy).arg("--out").arg(&copy), "is the model this command reads");
    assert_eq!(std::fs::read(copy.join("model.safetensors")).unwrap(), weights);
    // Nor the folder that holds it (the output replaces that folder).
    fails_with(train(&["--method", "sentence-embedding"]).arg("--model").arg(&copy).arg("--out").arg(&dir), "holds the model this command reads");
    fails_with(lmbff().args(["adapt", "--device", "cpu", "--steps", "100000", "--texts"]).arg(&toy).arg("--model").arg(&copy).arg("--out").arg(&dir), "holds the model this command reads");
    assert_eq!(std::fs::read(copy.join("model.safetensors")).unwrap(), weights);
    // Named before 100,000 steps.
    fails_with(train(&["--steps", "100000", "--test", "/nonexistent/test.tsv"]).arg("--model").arg(&model).arg("--out").arg(dir.join("never")), "/nonexistent/test.tsv");
    std::fs::write(dir.join("user.txt"), "mine").unwrap();
    fails_with(train(&["--steps", "100000"]).arg("--model").arg(&model).arg("--out").arg(&dir), "is not an earlier output");
    assert!(!dir.join("never").exists() && std::fs::read_to_string(dir.join("user.txt")).unwrap() == "mine");
    // Nor inside a task's versions: a deleted version's name would come back, another model.
    let task_dir = dir.join("a-task");
    std::fs::create_dir_all(task_dir.join("models")).unwrap();
    std::fs::write(task_dir.join("task.json"), "{}").unwrap();
    fails_with(train(&["--steps", "100000"]).arg("--model").arg(&model).arg("--out").arg(task_dir.join("models/v2")), "is a task's version folder or inside one");
    assert!(!task_dir.join("models/v2").exists());
    // The demo's --out too: checked before its adaptation, not at the end of the run.
    let demo = |out: &std::path::Path| {
        let mut c = lmbff();
        c.args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "100000", "--data"]).arg(common::root().join("data/reviews")).arg("--model").arg(&copy).arg("--out").arg(out);
        c
    };
    fails_with(&mut demo(&copy), "is the model this command reads");
    // Its --cache, where the adapted model goes, before the adaptation.
    let mut cached = lmbff();
    cached.args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "100000", "--data"]).arg(common::root().join("data/reviews"));
    cached.arg("--model").arg(&model).arg("--out").arg(dir.join("demo-cache-out")).args(["--cache", "/proc/lmbff-cache"]);
    fails_with(&mut cached, "--cache /proc/lmbff-cache");
    // A cache inside the output, which the demo replaces whole at the end of the run.
    let inside = dir.join("demo-in-out");
    let mut in_out = lmbff();
    in_out.args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "100000", "--data"]).arg(common::root().join("data/reviews"));
    in_out.arg("--model").arg(&model).arg("--out").arg(&inside).arg("--cache").arg(inside.join("cache"));
    fails_with(&mut in_out, "which the demo replaces whole");
    assert!(!inside.exists(), "nothing was made before the refusal");
    fails_with(&mut demo(&dir), "holds the model this command reads");
    let user = dir.join("user-folder");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("notes.txt"), "mine").unwrap();
    fails_with(&mut demo(&user), "is not an earlier output");
    // A folder an older demo wrote its labels into among other files (it kept no list) is
    // not replaced whole.
    let older = dir.join("older-demo");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::write(older.join("labels.jsonl"), "{}\n").unwrap();
    std::fs::write(older.join("notes.txt"), "mine").unwrap();
    fails_with(&mut demo(&older), "holds an older demo's labels.jsonl among other files (notes.txt)");
    assert_eq!(std::fs::read_to_string(older.join("notes.txt")).unwrap(), "mine");
    // It starts from a pretrained model: a trained one's labels (its order) would be
    // read against the demo's data wrongly.
    fails_with(&mut demo(&dir.join("demo-out")), "is a trained lmbff model");
    // An empty split is named before the adaptation (its NaN accuracies compared false:
    // the first setting was "chosen on dev").
    let empty_dev = dir.join("reviews-empty-dev");
    std::fs::create_dir_all(&empty_dev).unwrap();
    for f in ["train.tsv", "test.tsv", "unlabeled.txt"] {
        std::fs::copy(common::root().join("data/reviews").join(f), empty_dev.join(f)).unwrap();
    }
    std::fs::write(empty_dev.join("dev.tsv"), "sentence\tlabel\n").unwrap();
    fails_with(
        lmbff().args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "100000", "--labels", "0=bad,1=good", "--data"]).arg(&empty_dev)
            .arg("--model").arg(&model).arg("--out").arg(dir.join("demo-empty")),
        "dev.tsv holds no examples",
    );
    // A whole run on the tiny model (no adaptation, two steps): its labels and report are
    // one output, written whole, and a second run replaces it.
    let demo_out = dir.join("demo-whole");
    for _ in 0..2 {
        let o = lmbff()
            .args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "0", "--steps", "2", "--lrs", "1e-3", "--labels", "0=bad,1=good", "--data"])
            .arg(common::root().join("data/reviews")).arg("--model").arg(&model).arg("--out").arg(&demo_out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let pool = std::fs::read_to_string(common::root().join("data/reviews/unlabeled.txt")).unwrap().lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(std::fs::read_to_string(demo_out.join("labels.jsonl")).unwrap().lines().count(), pool);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(demo_out.join("report.json")).unwrap()).unwrap();
    assert!(report["sentence_embedding"]["test_acc"].is_number() && demo_out.join(".lmbff-output").is_file(), "{report}");
    // So is a two-sentence template over its one-sentence sets (named after the
    // adaptation, minutes in).
    fails_with(
        lmbff().args(["demo", "--device", "cpu", "--threads", "1", "--adapt-steps", "100000", "--labels", "0=bad,1=good", "--template", "{text_a} ? {mask} , {text_b}", "--data"])
            .arg(common::root().join("data/reviews")).arg("--model").arg(&model).arg("--out").arg(dir.join("demo-pairs")),
        "has one sentence a row",
    );
    assert_eq!(std::fs::read(copy.join("model.safetensors")).unwrap(), weights);
    let zero_shot = |setting: [&str; 2]| {
        let mut c = lmbff();
        c.args(["train", "--device", "cpu", "--method", "zero-shot-words", "--labels", "0=bad,1=good"]).args(setting).arg("--model").arg(&model);
        c
    };
    fails_with(&mut zero_shot(["--threads", "1000000"]), "--threads is 1000000: give 1 to ");
    fails_with(&mut zero_shot(["--max-len", "100000"]), "--max-len 100000 is longer than the model's");
    let splits = dir.join("splits");
    std::fs::create_dir_all(splits.join("16-13")).unwrap();
    for part in ["train", "dev", "test"] {
        std::fs::copy(&toy, splits.join("16-13").join(format!("{part}.tsv"))).unwrap();
    }
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13,99", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits),
        "seed 99's train split is not there",
    );
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13,13", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits),
        "--seeds names 13 twice",
    );
    // A later seed's bad row is named before the first seed's grid runs (it was read
    // only once the earlier seeds had trained).
    std::fs::create_dir_all(splits.join("16-21")).unwrap();
    for part in ["train", "dev", "test"] {
        std::fs::copy(&toy, splits.join("16-21").join(format!("{part}.tsv"))).unwrap();
    }
    std::fs::write(splits.join("16-21/dev.tsv"), "sentence\tlabel\nfine\tmaybe\n").unwrap();
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13,21", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits),
        "16-21/dev.tsv",
    );
    // A pair split under a one-sentence template is named, as train names it (the grid
    // ran on the first sentences alone).
    std::fs::write(splits.join("16-21/dev.tsv"), "sentence1\tsentence2\tlabel\na\tb\t1\n").unwrap();
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13,21", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits),
        "16-21/dev.tsv has a second sentence column",
    );
    fails_with(lmbff().args(["adapt", "--device", "cpu", "--steps", "0", "--texts"]).arg(&toy).arg("--model").arg(&model).arg("--out").arg(dir.join("adapted")), "adaptation: steps is 0");
    fails_with(
        lmbff().args(["adapt", "--device", "cpu", "--trainable", "top99", "--texts"]).arg(&toy).arg("--model").arg(&model).arg("--out").arg(dir.join("adapted")),
        "trainable top99: the model has 2 encoder layers",
    );
    // adapt's --state is replaced as the run goes and removed at its end: the output, the
    // model or a user's folder is refused before anything (a run of fewer steps than
    // --save-every deleted whatever --state named).
    let adapt = |state: &std::path::Path| {
        let mut c = lmbff();
        c.args(["adapt", "--device", "cpu", "--steps", "100000", "--texts"]).arg(&toy).arg("--model").arg(&model).arg("--out").arg(dir.join("adapted")).arg("--state").arg(state);
        c
    };
    fails_with(&mut adapt(&dir.join("adapted")), "--state");
    fails_with(&mut adapt(&dir.join("adapted/state")), "one holds the other");
    fails_with(&mut adapt(&dir.join("adapted/..")), "one holds the other");
    fails_with(&mut adapt(&model), "is the model this command reads");
    fails_with(&mut adapt(&dir), "one holds the other");
    let mine = dir.join("my-notes");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    fails_with(&mut adapt(&mine), "is not an earlier output");
    assert!(std::fs::read_to_string(mine.join("notes.txt")).unwrap() == "mine" && model.join("config.json").is_file());
    fails_with(lmbff().args(["adapt", "--device", "cpu", "--lr", "inf", "--texts"]).arg(&toy).arg("--model").arg(&model).arg("--out").arg(dir.join("adapted")), "learning rate is inf");
    // The demo's fine-tuning settings, before its adaptation (100,000 steps here).
    fails_with(demo(&dir.join("demo-lrs")).args(["--lrs", "0"]), "--lrs [0.0]: give one or more positive learning rates");
    // compare: a --plain-model that is no model, before the grid.
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "100000", "--methods", "prompt,plain", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits).arg("--plain-model").arg(dir.join("no-model")),
        "is not a model folder",
    );
    // compare's --report under a file: named before the grid, not after it.
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits).arg("--report").arg(dir.join("user.txt/report.json")),
        "user.txt is a file, not a folder",
    );
    // ... and a file that is not an earlier report (it overwrote a split) is kept.
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits).arg("--report").arg(dir.join("user.txt")),
        "is not an earlier compare report",
    );
    assert_eq!(std::fs::read_to_string(dir.join("user.txt")).unwrap(), "mine");
    // ... and one in a folder nothing can be written in; `cls` is `plain` named twice.
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "100000", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits).args(["--report", "/proc/report.json"]),
        "--report /proc/report.json: nothing can be written in /proc",
    );
    fails_with(
        lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "100000", "--methods", "plain,cls", "--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&splits),
        "--methods names plain twice",
    );
    // compare reads LM-BFF's headerless CSV splits (mr, cr, ...) as well as TSV ones.
    let csv_splits = dir.join("csv-splits");
    std::fs::create_dir_all(csv_splits.join("16-13")).unwrap();
    for part in ["train", "dev", "test"] {
        std::fs::write(csv_splits.join(format!("16-13/{part}.csv")), "1,the movie was fun\n0,the movie was boring\n1,\"i loved this book, really\"\n0,i hated this book\n").unwrap();
    }
    let o = lmbff().args(["compare", "--device", "cpu", "--threads", "1", "--seeds", "13", "--steps", "1", "--batch-size", "2", "--eval-every", "1", "--methods", "plain"])
        .args(["--labels", "0=bad,1=good", "--model"]).arg(&model).arg("--splits").arg(&csv_splits).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("| plain | mean |"), "{}", String::from_utf8_lossy(&o.stderr));
    // harness --out naming a file, or under one.
    fails_with(lmbff().args(["harness", "--data"]).arg(&splits).arg("--model").arg(&model).arg("--out").arg(dir.join("user.txt")), "is a file: give a new or empty folder");
    // train --out under a file, named before training.
    fails_with(train(&["--steps", "100000"]).arg("--model").arg(&model).arg("--out").arg(dir.join("user.txt/model")), "user.txt is a file, not a folder");
    // Export runs on the CPU, but a device named that is not there is still named.
    fails_with(lmbff().args(["export", "--device", "cuda:99", "--model"]).arg(&trained).arg("--out").arg(dir.join("never-export")), "device \"cuda:99\" is not available");
    // An export folder given as a model is named as one; lengths too small for any input,
    // a two-sentence template over one-sentence rows, and counts of zero are refused by
    // their flags.
    let export_dir = dir.join("an-export");
    std::fs::create_dir_all(&export_dir).unwrap();
    std::fs::write(export_dir.join("lmbff-export.json"), "{}").unwrap();
    fails_with(lmbff().args(["eval", "--device", "cpu", "--model"]).arg(&export_dir).arg("--test").arg(&toy), "is an ONNX export");
    fails_with(lmbff().args(["eval", "--device", "cpu", "--max-len", "2", "--model"]).arg(&model).arg("--test").arg(&toy), "--max-len 2 is too small");
    fails_with(train(&["--method", "prompt", "--template", "{text_a} ? {mask} , {text_b}"]).arg("--model").arg(&model), "has one sentence a row");
    for cmd in [&["eval", "--first-sent-limit", "0"][..], &["bench-step", "--steps", "0"][..], &["bench-predict", "--n", "0"][..], &["train", "--steps", "0"][..], &["train", "--batch-size", "0"][..]] {
        let o = lmbff().args(cmd).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(2) && err.contains("give 1 or more"), "{cmd:?}: {err}");
    }
    // bench-step's inputs are random ids of --seq-len tokens: a task's length limits
    // are refused, not ignored, and before the model loads.
    for flag in ["--max-len", "--first-sent-limit", "--other-sent-limit"] {
        fails_with(lmbff().args(["bench-step", flag, "64", "--model"]).arg(dir.join("no-model")), &format!("{flag} does not apply (give --seq-len)"));
    }
    // train's rate and demonstration sets are named by their flags before any work
    // (they failed after the model loaded, without the flag).
    for (cmd, named) in [(&["train", "--lr", "0"][..], "'--lr <LR>': give a positive number"), (&["train", "--demos", "--demo-sets", "65"][..], "'--demo-sets <DEMO_SETS>': give 1 to 64")] {
        let o = lmbff().args(cmd).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(2) && err.contains(named), "{cmd:?}: {err}");
    }
    // A class without a training example is named (training goes on).
    let one_class = dir.join("one-class.tsv");
    std::fs::write(&one_class, "sentence\tlabel\nthe movie was fun\t1\ni loved this book\t1\n").unwrap();
    let o = lmbff().args(["train", "--device", "cpu", "--threads", "1", "--method", "prompt", "--steps", "1", "--batch-size", "2", "--eval-every", "1"])
        .args(["--labels", "0=bad,1=good", "--max-len", "24", "--model"]).arg(&model).arg("--train").arg(&one_class).arg("--dev").arg(&toy).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("has no training example of class [\"0\"]"), "{err}");
    // A regression range may start below zero (clap took "-1,1" for a flag).
    fails_with(lmbff().args(["export", "--regression", "-1,1", "--model"]).arg(dir.join("no-model")).arg("--out").arg(dir.join("never-export")), "does not exist");
    // Nor in export: the manifest took the words given, which the graph never reads.
    fails_with(lmbff().args(["export", "--labels", "0=good,1=bad", "--model"]).arg(&trained).arg("--out").arg(dir.join("never-export")), "--labels does not apply");
    fails_with(lmbff().args(["export", "--template", "{text} Wow {mask}!", "--model"]).arg(&trained).arg("--out").arg(dir.join("never-export")), "--template does not apply");

    // The harness writes only into its own folder, a new or an empty one.
    let user = dir.join("user-folder");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("notes.txt"), "mine").unwrap();
    fails_with(
        lmbff().args(["harness", "--device", "cpu", "--tasks", "SST-2", "--seeds", "13", "--methods", "majority", "--model"]).arg(&model).arg("--data").arg(&dir).arg("--out").arg(&user),
        "is not a harness folder",
    );
    assert_eq!(std::fs::read_dir(&user).unwrap().count(), 1, "nothing was added to the user's folder");


    // predict scores a labelled file only against the export's own labels.
    let exported = dir.join("exported");
    assert!(lmbff().arg("export").arg("--model").arg(&trained).arg("--out").arg(&exported).output().unwrap().status.success());
    let other = dir.join("other-labels.tsv");
    std::fs::write(&other, "sentence\tlabel\nfun\tpos\nboring\tneg\n").unwrap();
    fails_with(lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&other), "no row's label is one of the export's labels");
    // Rows of labels it does not know (SNLI's "-") are predicted, not scored.
    let some = dir.join("some-labels.tsv");
    std::fs::write(&some, "sentence\tlabel\nfun\t1\nmeh\t-\nboring\t0\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&some).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("1 of 3 rows have labels the export does not know"), "{err}");
    assert!(err.contains("/2)") && o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() == 3, "{err}");
    // A blank label is a row not labelled yet: predicted, not scored, and never a reason
    // to refuse the file (a spreadsheet's empty label column stopped the command).
    let blank = dir.join("blank-labels.tsv");
    std::fs::write(&blank, "sentence\tlabel\nfun\t\nboring\t\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&blank).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("the label column is empty") && !err.contains("accuracy"), "{err}");
    assert_eq!(o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), 2, "{err}");
    std::fs::write(&blank, "sentence\tlabel\nfun\t1\nmeh\t\nboring\t0\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&blank).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("1 of 3 rows have no label") && err.contains("/2)"), "{err}");
    // The extension in any case (a .TSV was read as text: its header predicted as an input).
    let upper = dir.join("SOME-LABELS.TSV");
    std::fs::copy(&some, &upper).unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&upper).output().unwrap();
    assert!(o.status.success() && o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() == 3, "{}", String::from_utf8_lossy(&o.stderr));
    // A reader that stops early (`| head -1`) ends the command without an error message,
    // with the status of a closed pipe (it printed "error: ... Broken pipe").
    let many = dir.join("many.txt");
    std::fs::write(&many, "a fine ride\n".repeat(20_000)).unwrap();
    let mut child = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&many)
        .stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with("{\"index\":0"), "{first}");
    assert_eq!(o.status.code(), Some(141), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("error"), "{}", String::from_utf8_lossy(&o.stderr));
    // bench-predict's --threads is named, not handed to libtorch (0 panicked there
    // once; it is all cores now, as everywhere).
    fails_with(lmbff().args(["bench-predict", "--threads", "1000000", "--export"]).arg(&exported).arg("--texts").arg(&many), "--threads is 1000000: give 1 to");
    // ONNX Runtime named by a relative path is found from the current directory (ort
    // looked beside the executable, and the loader searched its path for a bare name); a
    // variable set to something that is not a file is named, not passed over.
    let ort = std::path::PathBuf::from(std::env::var("LMBFF_ORT_LIB").expect("scripts/env.sh sets LMBFF_ORT_LIB"));
    let o = lmbff().env_remove("LMBFF_ORT_LIB").env_remove("ORT_DYLIB_PATH").current_dir(ort.parent().unwrap())
        .args(["predict", "--threads", "1", "--ort-lib"]).arg(ort.file_name().unwrap()).arg("--export").arg(&exported).arg("--input").arg(&upper)
        .output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fails_with(lmbff().env("LMBFF_ORT_LIB", dir.join("no-such-ort.so")).args(["predict", "--export"]).arg(&exported).arg("--input").arg(&upper), "LMBFF_ORT_LIB is set to");
    // predict's --batch-size 0 is named by its flag (the predictor's own check said max_batch).
    let o = lmbff().args(["predict", "--batch-size", "0", "--export"]).arg(&exported).arg("--input").arg(&many).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(2) && err.contains("'--batch-size <BATCH_SIZE>'") && o.stdout.is_empty(), "{err}");
    // A CSV with a header row (names in any case): its rows, by their file lines.
    let headed = dir.join("headed.csv");
    std::fs::write(&headed, "Text,Label\r\nthe movie was fun,1\r\nthe movie was boring,0\r\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&headed).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("accuracy"), "its label column is scored");
    // A text file whose lines end in a carriage return alone is named, not one input.
    let mac = dir.join("mac.txt");
    std::fs::write(&mac, "fun\rboring\r").unwrap();
    fails_with(lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&mac), "carriage return alone");
    // A missing input file, or a folder, is named by its flag.
    fails_with(lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(dir.join("no-such.txt")), "no-such.txt: no such file (give a file, or - for stdin)");
    fails_with(lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&dir), "this is a folder; give a file, or - for stdin");
    // A plain-text line with a tab is one text for a one-sentence model, and said so once.
    let tabbed = dir.join("tabbed.txt");
    std::fs::write(&tabbed, "fun\t1\nboring\t0\nmeh\n").unwrap();
    let o = lmbff().args(["predict", "--threads", "1", "--export"]).arg(&exported).arg("--input").arg(&tabbed).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.matches("holds a tab").count() == 1 && err.contains("line 1:"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
}

/// A report that cannot be written to stdout (a full disk here; a reader gone is the same
/// error) fails the command with status 1 and a message naming stdout, never a panic,
/// and the model was saved before it.
#[test]
fn a_failed_write_to_stdout_keeps_the_model() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("cli-stdout-full");
    let toy = write_toy(&dir);
    let out = dir.join("trained");
    let o = lmbff()
        .args(["train", "--method", "sentence-embedding", "--embedding-max-steps", "5", "--device", "cpu", "--threads", "1", "--labels", "{'0':'bad','1':'good'}", "--max-len", "24"])
        .arg("--model").arg(&model).arg("--train").arg(&toy).arg("--dev").arg(&toy).arg("--out").arg(&out)
        .stdout(std::fs::File::options().write(true).open("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error:") && err.contains("stdout") && !err.contains("panicked"), "{err}");
    assert!(out.join("lmbff.json").is_file(), "the model is saved before the report is printed");
}

/// predict reads a pipe named as a file (`/dev/stdin`, `<(cmd)`, a FIFO) once, streamed:
/// counting its lines first drained it, and nothing was predicted. A pair export answers
/// a line without a tab (a blank one too) with an error record in its place and goes
/// on (the whole stream used to stop there).
#[test]
fn predict_reads_pipes_and_answers_pair_lines_without_a_tab() {
    let dir = common::tempdir("cli-pipes");
    let exp = dir.join("pair-export");
    let o = lmbff()
        .args(["export", "--template", "{text_a} ? {mask} , {text_b}", "--labels", "0=No,1=Yes", "--model"])
        .arg(common::fixtures().join("bert"))
        .arg("--out")
        .arg(&exp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = |input: &str, stdin: &[u8]| {
        let mut c = lmbff()
            .args(["predict", "--threads", "1", "--input", input, "--export"])
            .arg(&exp)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = c.wait_with_output().unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (o.status.success(), lines, String::from_utf8_lossy(&o.stderr).to_string())
    };
    let text = b"a cat\tan animal\n\nno tab here\na dog\ta pet\n";
    for input in ["/dev/stdin", "-"] {
        let (ok, got, err) = run(input, text);
        assert_eq!(got.len(), 4, "{input}: {got:?} {err}");
        for (k, line) in [(1, 2), (2, 3)] {
            assert_eq!((&got[k]["index"], &got[k]["line"]), (&serde_json::json!(k), &serde_json::json!(line)), "{got:?}");
            assert!(got[k]["error"].as_str().unwrap().contains("no tab: this export reads sentence pairs"), "{got:?}");
        }
        assert!(got[0]["probs"].is_object() && got[3]["probs"].is_object(), "{got:?}");
        assert!(!ok && err.contains("line 2: no tab") && err.contains("2 of 4 lines could not be predicted") && !err.contains("UTF-8"), "{input}: {err}");
    }
    let (ok, got, err) = run("/dev/stdin", b"a cat\tan animal\n");
    assert!(ok && got.len() == 1 && got[0]["probs"].is_object(), "{got:?} {err}");
    // A pipe named as a file answers a line while it stays open, as stdin does (it waited
    // for 1,024 lines or the end).
    let mut child = lmbff()
        .args(["predict", "--threads", "1", "--input", "/dev/stdin", "--export"])
        .arg(&exp)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            tx.send(line.unwrap()).unwrap();
        }
    });
    writeln!(stdin, "a cat\tan animal").unwrap();
    let answer = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("an answer while the pipe stays open");
    assert!(answer.contains("\"probs\""), "{answer}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
