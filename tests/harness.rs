//! The evaluation harness on a k-shot folder laid out as LM-BFF's (a TSV task and a
//! quoted-CSV task; sentence-pair tasks) with the tiny BERT fixture: every method (seven) runs, results are stored per
//! run and reused by a second invocation, the report has mean (std) cells, and a folder
//! made with other settings is refused.

mod common;

use std::path::Path;
use std::process::Command;

use lmbff::harness::{self, RunMethod};

fn lmbff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmbff"));
    c.env("OMP_NUM_THREADS", "1");
    c
}

/// `lmbff harness` on CPU with one thread, the tiny BERT fixture, `data` and `out`, and
/// `args` (tasks, seeds, methods, budget).
fn harness_on(data: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    lmbff()
        .args(["harness", "--device", "cpu", "--threads", "1"])
        .args(args)
        .arg("--model").arg(common::fixtures().join("bert")).arg("--data").arg(data).arg("--out").arg(out)
        .output()
        .unwrap()
}

const POS: [&str; 6] = ["the movie was fun", "i loved this book", "the acting was good", "a great ride", "the music was bright", "i enjoyed the story"];
const NEG: [&str; 6] = ["the movie was boring", "i hated this book", "the acting was bad", "a dull ride", "the music was slow", "i hated the story"];

/// SST-2 (TSV with a header) and mr (`label,sentence` CSV, quoted fields) for seeds 1, 2.
fn kshot(root: &Path) {
    for seed in [1, 2] {
        let sst = root.join(format!("SST-2/16-{seed}"));
        let mr = root.join(format!("mr/16-{seed}"));
        std::fs::create_dir_all(&sst).unwrap();
        std::fs::create_dir_all(&mr).unwrap();
        for split in ["train", "dev", "test"] {
            let mut tsv = String::from("sentence\tlabel\n");
            let mut csv = String::new();
            for (p, n) in POS.iter().zip(NEG) {
                tsv += &format!("{p}\t1\n{n}\t0\n");
                csv += &format!("1,\"{p} , really\"\n0,{n}\n");
            }
            std::fs::write(sst.join(format!("{split}.tsv")), tsv).unwrap();
            std::fs::write(mr.join(format!("{split}.csv")), csv).unwrap();
        }
    }
}

#[test]
fn harness_runs_every_method_resumes_and_reports() {
    let dir = common::tempdir("harness");
    let data = dir.join("k-shot");
    kshot(&data);
    // The tasks read as the harness reads them: quoted CSV fields keep their commas.
    let mr = harness::task("mr").unwrap().read(&data, 1, "train").unwrap();
    assert_eq!(mr.len(), 12);
    assert_eq!((mr[0].text_a.as_str(), mr[0].label), ("the movie was fun , really", Some(1)));
    let e = harness::task("ag_news").unwrap_err().to_string();
    assert!(e.contains("unknown task") && e.contains("CoLA"), "the known tasks are named: {e}");

    let out = dir.join("out");
    let run = |extra: &[&str]| {
        let o = lmbff()
            .args(["harness", "--device", "cpu", "--threads", "1", "--tasks", "SST-2,mr", "--seeds", "1,2"])
            .args(["--methods", "majority,zero-shot,in-context,plain,prompt,prompt-demos,sentence-embedding,sentence-embedding-anchors,sentence-embedding-words", "--steps", "120", "--lr", "3e-3", "--batch-size", "4"])
            .args(["--eval-every", "40", "--max-len", "24", "--demo-max-len", "48", "--demo-sets", "2", "--demo-subsample", "8", "--demo-subsample-sets", "3"])
            .arg("--model").arg(common::fixtures().join("bert")).arg("--data").arg(&data).arg("--out").arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (ok, table, err) = run(&[]);
    assert!(ok, "{err}");
    assert!(err.contains("0 of 36 runs reused"), "{err}");
    for m in ["majority", "zero-shot", "in-context", "plain", "prompt", "prompt-demos", "sentence-embedding", "sentence-embedding-anchors", "sentence-embedding-words"] {
        for task in ["SST-2", "mr"] {
            for seed in [1, 2] {
                let r: harness::RunResult =
                    serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, task, seed, RunMethod::parse(m).unwrap())).unwrap()).unwrap();
                assert_eq!(r.n_test, 12);
                // The device of the run's model (majority has none), and the test file read.
                assert_eq!(r.device.as_deref(), (r.method != RunMethod::Majority).then_some("cpu"), "{:?}", r.method);
                assert_eq!(r.test_file.as_deref(), Some(harness::task(task).unwrap().file(&data, seed, "test").as_path()));
                assert!((0.0..=1.0).contains(&r.test));
                assert_eq!(r.dev.is_some(), !matches!(r.method, RunMethod::Majority | RunMethod::ZeroShot | RunMethod::InContext));
                assert_eq!(r.best_step.is_some(), matches!(r.method, RunMethod::Plain | RunMethod::Prompt | RunMethod::PromptDemos));
                // Plain fine-tuning records how its [CLS] head started.
                assert_eq!(r.cls_head.as_deref(), (r.method == RunMethod::Plain).then_some(harness::CLS_HEAD));
                // prompt-demos also scores 8 of the 12 test inputs with 3 sets against its fixed one.
                let sub = r.subsample.as_ref().map(|x| (x.n, x.sets, (0.0..=1.0).contains(&x.one_set) && (0.0..=1.0).contains(&x.all_sets)));
                assert_eq!(sub, matches!(r.method, RunMethod::PromptDemos | RunMethod::InContext).then_some((8, 3, true)));
                // Every method with a model: temperature scaling fitted on dev, ECE on test,
                // and the logits stored beside the result (12 test rows, 12 dev rows).
                let has_model = r.method != RunMethod::Majority;
                assert_eq!(r.calibration.is_some(), has_model);
                if let Some(c) = &r.calibration {
                    assert!(c.temperature > 0.0 && (0.0..=1.0).contains(&c.ece_before) && (0.0..=1.0).contains(&c.ece_after), "{c:?}");
                    let l: harness::Logits = serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, task, seed, r.method)).unwrap()).unwrap();
                    assert_eq!((l.test.len(), l.dev.len()), (12, 12));
                    let gold: Vec<usize> = harness::task(task).unwrap().read(&data, seed, "test").unwrap().iter().map(|e| e.label.unwrap()).collect();
                    assert_eq!(lmbff::metrics::accuracy(&l.test, &gold), r.test, "the stored logits give the stored score");
                }
            }
        }
    }
    let majority: harness::RunResult = serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "mr", 1, RunMethod::Majority)).unwrap()).unwrap();
    assert_eq!(majority.test, 0.5, "balanced classes: the first class, half the test set");
    let prompt: harness::RunResult = serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, RunMethod::Prompt)).unwrap()).unwrap();
    assert_eq!(prompt.test, 1.0, "the separable toy task is learnt");
    let embedding: harness::RunResult =
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, RunMethod::SentenceEmbedding)).unwrap()).unwrap();
    assert!(embedding.test >= 0.75, "the sentence-embedding method learns the toy task too: {}", embedding.test);
    let anchored: harness::RunResult =
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, RunMethod::SentenceEmbeddingAnchors)).unwrap()).unwrap();
    assert!(anchored.test >= 0.75, "and with the label anchors: {}", anchored.test);
    let words: harness::RunResult =
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, RunMethod::SentenceEmbeddingWords)).unwrap()).unwrap();
    assert!(words.test >= 0.75, "and with the word anchors too (the library's default): {}", words.test);
    assert!(table.contains("| majority | 50.0 (0.0) | 50.0 (0.0) | 50.0 |"), "{table}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(report.matches("| prompt-demos |").count(), 4, "score table, the subsample table (1 set, 3 sets), calibration table");
    // The subsample table's first row is the main table's reading: --demo-sets 2 (it was
    // labelled "1", one set).
    assert_eq!(report.matches("| prompt-demos | 2 |").count(), 1, "one row per method and set count in the subsample table");
    assert!(report.contains("the main table's 2 fixed demonstration sets averaged vs the average over 3 sets") && report.contains("| in-context | 3 |"), "{report}");
    assert!(report.contains("| method | runs | ECE | no fit | ECE scaled | temperature |") && report.contains("| sentence-embedding | 4 |"), "{report}");
    let all: Vec<harness::RunResult> = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(all.len(), 36);
    // The chart of the report (matplotlib, from results.json).
    let chart = Command::new(common::python()).arg(common::root().join("python/harness_chart.py")).arg(&out).output().unwrap();
    assert!(chart.status.success(), "{}", String::from_utf8_lossy(&chart.stderr));
    let png = std::fs::read(out.join("chart.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "chart.png: {} bytes", png.len());
    // Told the grid's seeds, a chart of a grid stopped at 2 of 3 seeds draws no mean over
    // the tasks (the most seeds any task had stood in for the grid's).
    let chart = Command::new(common::python()).arg(common::root().join("python/harness_chart.py")).arg(&out).args(["--seeds", "1,2,3", "--methods", "plain"]).output().unwrap();
    let said = String::from_utf8_lossy(&chart.stderr);
    assert!(chart.status.success() && said.contains("plain: no mean over the tasks (0 of 2 tasks have all 3 seeds)"), "{said}");

    // A second invocation reuses every stored run (and trains nothing).
    let (ok, again, err) = run(&[]);
    // "0 runs not started" is said too (docs/harness.md: a grid repeats until it reads it).
    assert!(ok && err.contains("36 of 36 runs reused; 0 runs not started."), "{err}");
    assert_eq!(again, table);
    // An interrupted harness continues: a missing run is made again, the rest reused;
    // out of time (--max-minutes), it starts nothing and says how to go on.
    std::fs::remove_file(harness::result_path(&out, "mr", 2, RunMethod::Plain)).unwrap();
    let (ok, _, err) = run(&["--max-minutes", "0"]);
    assert!(ok && err.contains("35 of 36 runs reused; 1 runs not started (--max-minutes)"), "{err}");
    assert!(!harness::result_path(&out, "mr", 2, RunMethod::Plain).exists());
    let (ok, _, err) = run(&[]);
    assert!(ok && err.contains("35 of 36 runs reused"), "{err}");
    // A plain result from before the [CLS] head started from the pooler is another
    // baseline's: named, not reused (the other methods' results are).
    let plain = harness::result_path(&out, "mr", 2, RunMethod::Plain);
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plain).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("cls_head");
    std::fs::write(&plain, old.to_string()).unwrap();
    let (ok, _, err) = run(&[]);
    assert!(!ok && err.contains("was made with a new dense layer in the [CLS] head"), "{err}");
    std::fs::remove_file(&plain).unwrap();
    let (ok, _, err) = run(&[]);
    assert!(ok && err.contains("35 of 36 runs reused"), "{err}");
    // Other settings in the same folder are refused before any run, naming the fields;
    // also for a method the folder has no result of yet (it used to run them all, then
    // fail writing the report on the stored ones).
    let (ok, _, err) = run(&["--test-limit", "5"]);
    assert!(!ok && err.contains("holds results made with other settings (test_limit: null there, 5 here)"), "{err}");
    let (ok, _, err) = run(&["--anchor-repeats", "2"]);
    assert!(!ok && err.contains("holds results made with other settings (anchor_repeats"), "the anchor count is a setting: {err}");
    let (ok, _, err) = run(&["--head-c", "4"]);
    assert!(!ok && err.contains("holds results made with other settings (head_c"), "the head's C is a setting: {err}");
    let (ok, _, err) = run(&["--methods", "zero-shot-words", "--full-data-steps", "7"]);
    assert!(!ok && err.contains("(full_data_steps: ") && !harness::result_path(&out, "mr", 1, RunMethod::ZeroShotWords).exists(), "{err}");
    // A folder from before settings.json: its results are checked one by one.
    std::fs::remove_file(out.join(harness::SETTINGS_FILE)).unwrap();
    let (ok, _, err) = run(&["--test-limit", "5"]);
    assert!(!ok && err.contains(".json holds results made with other settings"), "{err}");
    let (ok, _, err) = run(&[]);
    assert!(ok && err.contains("36 of 36 runs reused") && out.join(harness::SETTINGS_FILE).exists(), "{err}");
    let (ok, _, err) = run(&["--test-limit", "0"]);
    assert!(!ok && err.contains("--test-limit 0 scores nothing"), "{err}");
    let (ok, _, err) = run(&["--embed-lr", "0"]);
    assert!(!ok && err.contains("--embed-lr must be a positive number, got 0"), "{err}");
    let (ok, _, err) = run(&["--anchor-repeats", "0"]);
    assert!(!ok && err.contains("run sentence-embedding instead"), "{err}");
}

/// Sentence-pair tasks: RTE's GLUE columns and labels, QQP's `is_duplicate` column with its
/// test set taken from `glue_pretrain/QQP/dev.json` beside the k-shot folder (a pair that
/// is also in the seed's train split is dropped from it), scored by F1.
#[test]
fn pair_tasks_read_glue_layouts_and_score_their_metric() {
    let dir = common::tempdir("harness-pairs");
    let data = dir.join("k-shot");
    let rte = data.join("RTE/16-1");
    let sts = data.join("STS-B/16-1");
    std::fs::create_dir_all(&sts).unwrap();
    let mut st = String::from("index\tgenre\tsentence1\tsentence2\tscore\n");
    for (i, (p, n)) in POS.iter().zip(NEG).enumerate() {
        st += &format!("{i}\tx\t{p}\t{p} too\t{:.1}\n{i}\tx\t{p}\t{n}\t{:.1}\n", 3.5 + 0.25 * i as f32, 1.5 - 0.25 * i as f32);
    }
    for split in ["train", "dev", "test"] {
        std::fs::write(sts.join(format!("{split}.tsv")), &st).unwrap();
    }
    let qqp = data.join("QQP/16-1");
    std::fs::create_dir_all(&rte).unwrap();
    std::fs::create_dir_all(&qqp).unwrap();
    std::fs::create_dir_all(dir.join("glue_pretrain/QQP")).unwrap();
    let (mut r, mut q, mut json) = (String::from("index\tsentence1\tsentence2\tlabel\n"), String::from("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"), Vec::new());
    for (i, (p, n)) in POS.iter().zip(NEG).enumerate() {
        r += &format!("{i}\t{p}\t{p} indeed\tentailment\n{i}\t{p}\t{n}\tnot_entailment\n");
        q += &format!("{i}\t1\t2\tis {p}?\tis {p} ?\t1\n{i}\t3\t4\tis {p}?\tis {n}?\t0\n");
        json.push(serde_json::json!({"text_a": format!("was {p}?"), "text_b": format!("was {p} ?"), "label": "1"}));
        json.push(serde_json::json!({"text_a": format!("was {p}?"), "text_b": format!("was {n}?"), "label": "0"}));
    }
    // One test pair the train split also holds: dropped.
    json.push(serde_json::json!({"text_a": format!("is {}?", POS[0]), "text_b": format!("is {} ?", POS[0]), "label": "1"}));
    let json: serde_json::Map<String, serde_json::Value> = json.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect();
    std::fs::write(dir.join("glue_pretrain/QQP/dev.json"), serde_json::to_string(&json).unwrap()).unwrap();
    for split in ["train", "dev", "test"] {
        std::fs::write(rte.join(format!("{split}.tsv")), &r).unwrap();
        if split != "test" {
            std::fs::write(qqp.join(format!("{split}.tsv")), &q).unwrap();
        }
    }
    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "RTE,QQP,STS-B", "--seeds", "1", "--methods", "majority,prompt,sentence-embedding",
        "--steps", "60", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "30", "--max-len", "32"]);
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(table.contains("| method | RTE | QQP (f1) | STS-B (pearson) | mean |"), "{table}");
    let read = |task: &str, m: RunMethod| -> harness::RunResult {
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, task, 1, m)).unwrap()).unwrap()
    };
    let (rte_majority, qqp_majority, qqp_prompt) = (read("RTE", RunMethod::Majority), read("QQP", RunMethod::Majority), read("QQP", RunMethod::Prompt));
    assert_eq!((rte_majority.metric.as_str(), rte_majority.n_test, rte_majority.test), ("acc", 12, 0.5));
    assert_eq!((qqp_majority.metric.as_str(), qqp_majority.n_test, qqp_majority.test_dropped), ("f1", 12, 1));
    assert_eq!(qqp_majority.test, 0.0, "the first class (not duplicate) everywhere: no true positive");
    assert!((0.0..=1.0).contains(&qqp_prompt.test) && qqp_prompt.calibration.is_some());
    assert_eq!(qqp_prompt.scorer.as_deref(), Some("onnxruntime"), "a prompt model on CPU is scored through its export");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".scorer-")).collect();
    assert!(left.is_empty(), "the scorer's temporary export is removed");
    // QQP's k-shot folder has no test.tsv: its test set is glue_pretrain's, recorded and
    // named in the report; RTE's is its own.
    assert!(qqp_majority.test_file.as_deref().is_some_and(|f| f.ends_with("glue_pretrain/QQP/dev.json")), "{:?}", qqp_majority.test_file);
    assert_eq!(rte_majority.test_file, Some(rte.join("test.tsv")));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Test sets of QQP (their k-shot folders have no test file)"), "{report}");
    let l: harness::Logits = serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, "QQP", 1, RunMethod::Prompt)).unwrap()).unwrap();
    let gold: Vec<usize> = (0..12).map(|i| 1 - i % 2).collect();
    assert_eq!(harness::Metric::F1.score(&l.test, &gold, &[]), qqp_prompt.test, "F1 of the stored logits");
    // STS-B: Pearson of p(upper pole) with the 0-5 scores; a constant majority scores 0;
    // no calibration for a regression.
    let (sts_majority, sts_prompt) = (read("STS-B", RunMethod::Majority), read("STS-B", RunMethod::Prompt));
    assert_eq!((sts_majority.metric.as_str(), sts_majority.test), ("pearson", 0.0));
    assert!(sts_prompt.test > 0.5 && sts_prompt.calibration.is_none(), "{:?}", sts_prompt);
    // The sentence-embedding method (a head on the two sides of 2.5) is scored and
    // reported on dev by Pearson too.
    let sts_se = read("STS-B", RunMethod::SentenceEmbedding);
    let l: harness::Logits = serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, "STS-B", 1, RunMethod::SentenceEmbedding)).unwrap()).unwrap();
    let spec = harness::task("STS-B").unwrap();
    let dev_gold: Vec<usize> = spec.read(&data, 1, "dev").unwrap().iter().map(|e| e.label.unwrap()).collect();
    let pearson = harness::Metric::Pearson.score(&l.dev, &dev_gold, &spec.scores(&data, 1, "dev").unwrap());
    assert_eq!(sts_se.metric, "pearson");
    assert!((sts_se.dev.unwrap() - pearson).abs() < 1e-6, "dev {:?}, Pearson of the dev logits {pearson}", sts_se.dev);
    // The word anchors' zero-shot reads the label words in anchor texts: pair templates
    // have none, and the harness says so by task.
    let o = harness_on(&data, &dir.join("out-zero-shot-words"), &["--tasks", "RTE", "--seeds", "1", "--methods", "zero-shot-words"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("zero-shot-words scores single-label tasks of one sentence; RTE is a sentence-pair task"), "{err}");
    // A scorer folder (`.scorer-<pid>-<n>`, or `.scorer-<pid>` before) of a process that
    // is gone, left for over an hour, is removed by a later command; a recent one is not
    // (another machine may be writing it), nor a folder of another name.
    if cfg!(target_os = "linux") {
        let stale = [".scorer-4999999-7", ".scorer-4999998"].map(|n| out.join(n));
        let recent = out.join(".scorer-4999997-1");
        let users = out.join(".scorer-4999996-notes");
        for d in stale.iter().chain([&recent, &users]) {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("model.onnx"), "x").unwrap();
        }
        for d in stale.iter().chain([&users]) {
            assert!(Command::new("touch").arg("-d").arg("2 hours ago").arg(d).status().unwrap().success());
        }
        let o = harness_on(&data, &out, &["--tasks", "RTE,QQP,STS-B", "--seeds", "1", "--methods", "majority,prompt,sentence-embedding",
            "--steps", "60", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "30", "--max-len", "32"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.contains("9 of 9 runs reused"), "{err}");
        assert!(stale.iter().all(|d| !d.exists()) && recent.exists() && users.exists(), "stale scorer folders removed, the recent one and another name kept");
    }
}

/// MNLI, SNLI and QQP are tested on the seed's own test file where LM-BFF's data script
/// wrote one (MNLI's `test_matched.tsv`, GLUE's columns, read as its train.tsv), on
/// glue_pretrain's dev.json (less the pairs train and dev hold) only without it; with
/// neither, both paths are named. A bad glue_pretrain label names its record, not a line.
#[test]
fn glue_test_files_come_before_glue_pretrain() {
    let dir = common::tempdir("harness-glue-test");
    let data = dir.join("k-shot");
    let mnli = data.join("MNLI/16-1");
    std::fs::create_dir_all(&mnli).unwrap();
    let rows = |prefix: &str| -> String {
        let mut s = String::from("index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n");
        for (i, (p, n)) in POS.iter().zip(NEG).enumerate() {
            s += &format!("{i}\t{i}\t{i}e\tfiction\t{prefix} {p}\t{p}\tentailment\tentailment\n{i}\t{i}\t{i}c\tfiction\t{prefix} {p}\t{n}\tcontradiction\tcontradiction\n");
        }
        s
    };
    std::fs::write(mnli.join("train.tsv"), rows("train")).unwrap();
    std::fs::write(mnli.join("dev_matched.tsv"), rows("dev")).unwrap();
    let spec = harness::task("MNLI").unwrap();
    let (train, dev) = (spec.read(&data, 1, "train").unwrap(), spec.read(&data, 1, "dev").unwrap());
    let e = spec.read_test(&data, 1, &[&train, &dev]).unwrap_err().to_string();
    assert!(e.contains("16-1/test_matched.tsv") && e.contains("glue_pretrain/MNLI/dev.json"), "both files are named: {e}");
    // glue_pretrain's dev.json alone: the test set, less the pair the train split holds.
    let pretrain = dir.join("glue_pretrain/MNLI");
    std::fs::create_dir_all(&pretrain).unwrap();
    let record = |a: String, b: &str, label: &str| serde_json::json!({"text_a": a, "text_b": b, "label": label});
    let json = serde_json::json!({"0": record(format!("train {}", POS[0]), POS[0], "entailment"), "1": record("another premise".into(), "another hypothesis", "neutral")});
    std::fs::write(pretrain.join("dev.json"), json.to_string()).unwrap();
    assert!(spec.test_from_pretrain(&data, 1));
    assert_eq!(spec.read_test(&data, 1, &[&train, &dev]).unwrap().1, 1, "the pair train holds is dropped");
    assert!(spec.test_file(&data, 1).unwrap().ends_with("glue_pretrain/MNLI/dev.json"));
    let bad = serde_json::json!({"0": record("a".into(), "b", "maybe")});
    std::fs::write(pretrain.join("dev.json"), bad.to_string()).unwrap();
    let e = spec.read(&data, 1, "test").unwrap_err().to_string();
    assert!(e.contains("dev.json: record \"0\": label \"maybe\" is not one of") && !e.contains("line 0"), "{e}");
    // The seed's own test file comes first, read with GLUE's columns as train.tsv is.
    std::fs::write(mnli.join("test_matched.tsv"), rows("test")).unwrap();
    assert!(!spec.test_from_pretrain(&data, 1));
    let (test, dropped) = spec.read_test(&data, 1, &[&train, &dev]).unwrap();
    assert_eq!((test.len(), dropped), (12, 0));
    assert_eq!((test[1].text_a.as_str(), test[1].text_b.as_deref(), test[1].label), (format!("test {}", POS[0]).as_str(), Some(NEG[0]), Some(0)));
    assert_eq!(spec.test_file(&data, 1).unwrap(), mnli.join("test_matched.tsv"));
}

/// A diverged run (test metric NaN, stored as null) is left out of its cell's mean and
/// counted there (the report printed "NaN (NaN)" and a NaN mean); a result stored before
/// the sentence-embedding settings, the device and the test file were recorded reads
/// with the values of then.
#[test]
fn diverged_runs_and_old_results_read_back() {
    let settings = serde_json::json!({"model": "m", "plain_model": "m", "steps": 1, "batch_size": 1, "lr": 1e-5, "eval_every": 1,
        "max_len": 8, "demo_max_len": 8, "demo_sets": 1, "test_limit": null});
    let run = |task: &str, seed: u64, test: Option<f64>| -> harness::RunResult {
        serde_json::from_value(serde_json::json!({"task": task, "seed": seed, "method": "prompt", "metric": "pearson", "test": test,
            "dev": null, "best_step": null, "n_test": 10, "seconds": 1.0, "settings": settings.clone()}))
        .unwrap()
    };
    let old = run("STS-B", 1, Some(0.5));
    let s = &old.settings;
    assert_eq!((s.embed_lr, s.embed_iterations, s.head_c, s.word_anchor_scale, s.anchor_repeats), (2e-5, 20, 1.0, 3.0, 4));
    assert!(old.device.is_none() && old.test_file.is_none());
    let (sts, sst) = (harness::task("STS-B").unwrap(), harness::task("SST-2").unwrap());
    let results = [old.clone(), run("STS-B", 2, None), run("SST-2", 1, None), run("SST-2", 2, None)];
    assert!(results[1].test.is_nan());
    let table = harness::report(&results, &[sts, sst], &[RunMethod::Prompt], &[1, 2]);
    assert!(table.contains("| prompt | 50.0 (0.0), 1 of 2 diverged | diverged (2 of 2) | - |"), "{table}");
    assert!(table.contains("left out of its cell's mean") && !table.contains("NaN (NaN)"), "{table}");
    let table = harness::report(&results[..2], &[sts], &[RunMethod::Prompt], &[1, 2]);
    assert!(table.contains("| prompt | 50.0 (0.0), 1 of 2 diverged | 50.0 |"), "{table}");
    // A multi-label run's macro-F1: a diverged one is stored as null and read back as
    // none; the macro table still counts it as diverged, not as a run that never was.
    let multi = |seed: u64, macro_f1: Option<f64>| -> harness::RunResult {
        let mut r = run("trec-multi", seed, macro_f1);
        r.macro_f1 = macro_f1;
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap()
    };
    let table = harness::macro_f1_report(&[multi(1, Some(0.4)), multi(2, Some(f64::NAN))], &[RunMethod::Prompt]);
    assert!(table.contains("| prompt | 40.0 (0.0) [2], 1 diverged |"), "{table}");
    let table = harness::macro_f1_report(&[multi(2, None)], &[RunMethod::Prompt]);
    assert!(table.contains("| prompt | diverged (1 of 1) |"), "{table}");
    // A majority run has no macro-F1 and a test score: no row, not "diverged".
    let mut majority = multi(1, None);
    (majority.method, majority.test) = (RunMethod::Majority, 0.3);
    let table = harness::macro_f1_report(&[multi(1, Some(0.4)), majority], &[RunMethod::Majority, RunMethod::Prompt]);
    assert!(table.contains("| prompt | 40.0 (0.0) [1] |") && !table.contains("majority"), "{table}");
}

/// python/harness_compare.py --select: per split, the row best on dev; a run whose dev
/// is null (diverged on dev, stored NaN as null) is passed over, not a stop.
#[test]
fn compare_selects_on_dev_past_a_null_dev() {
    let dir = common::tempdir("harness-compare");
    let write = |row: &str, seed: u64, test: f64, dev: Option<f64>| {
        let f = dir.join(row).join("runs/SST-2");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join(format!("{seed}-plain.json")), serde_json::json!({"test": test, "dev": dev}).to_string()).unwrap();
    };
    write("a", 1, 0.5, None);
    write("b", 1, 0.7, Some(0.6));
    write("a", 2, 0.8, Some(0.9));
    write("b", 2, 0.2, Some(0.1));
    let compare = |select: &str| {
        Command::new(common::python())
            .arg(common::root().join("python/harness_compare.py"))
            .args(["--tasks", "SST-2", "--seeds", "1,2", "--select", select])
            .arg("--row")
            .arg(format!("a={}:plain", dir.join("a").display()))
            .arg("--row")
            .arg(format!("b={}:plain", dir.join("b").display()))
            .output()
            .unwrap()
    };
    let o = compare("on dev=a,b");
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(table.contains("| on dev | 75.0 (7.1) | 75.0 | 75.0 |"), "{table}");
    assert!(err.contains("a has no dev score at SST-2 seed 1"), "{err}");
    // A split where no row has a dev score stops it, naming the split.
    write("b", 1, 0.7, None);
    let o = compare("on dev=a,b");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no run of ('SST-2', 1) has a dev score"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// zero-shot-words: the untrained encoder's word-anchor classifier, no training. Its
/// stored test logits are the library's `word_anchor_zero_shot` head on the test inputs,
/// and its score is their accuracy.
#[test]
fn zero_shot_words_scores_the_untrained_encoder() {
    let dir = common::tempdir("harness-zero-shot-words");
    let data = dir.join("k-shot");
    kshot(&data);
    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "SST-2,mr", "--seeds", "1", "--methods", "zero-shot-words", "--max-len", "32"]);
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(table.contains("| zero-shot-words |"), "{table}");
    let spec = harness::task("SST-2").unwrap();
    let model = lmbff::model::MaskedLm::load(&common::fixtures().join("bert"), tch::Device::Cpu).unwrap();
    let tok = lmbff::tokenize::Tokenizer::from_dir(&common::fixtures().join("bert")).unwrap();
    let prompt = lmbff::prompt::Prompt::new(
        lmbff::prompt::Template::parse(spec.template).unwrap(),
        spec.verbalizer(&tok).unwrap(),
        lmbff::prompt::Truncation { max_len: 32.max(spec.max_len.unwrap_or(0)), first_sent_limit: spec.first_sent_limit, other_sent_limit: spec.other_sent_limit, ..Default::default() },
    )
    .unwrap();
    let head = lmbff::train::word_anchor_zero_shot(&model, &tok, &prompt, &[]).unwrap();
    let test = spec.read(&data, 1, "test").unwrap();
    let want = lmbff::train::embedding_logits(&model, &tok, &prompt, &head, &test, 8).unwrap();
    let l: harness::Logits = serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, "SST-2", 1, RunMethod::ZeroShotWords)).unwrap()).unwrap();
    assert_eq!(l.test.len(), want.len());
    for (g, w) in l.test.iter().zip(&want) {
        assert!(g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-4), "{g:?} against {w:?}");
    }
    let r: harness::RunResult = serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, RunMethod::ZeroShotWords)).unwrap()).unwrap();
    let gold: Vec<usize> = test.iter().map(|e| e.label.unwrap()).collect();
    assert_eq!(r.test, lmbff::metrics::accuracy(&l.test, &gold));
}

/// The template ensemble: prompt-auto-N trains with the N-th line of LM-BFF's sorted auto
/// templates beside the k-shot folder; the report averages the label logits of prompt and
/// the four auto-template runs.
#[test]
fn auto_templates_and_the_ensemble() {
    let dir = common::tempdir("harness-ensemble");
    let data = dir.join("k-shot");
    kshot(&data);
    let auto = dir.join("auto/auto_template/SST-2");
    std::fs::create_dir_all(&auto).unwrap();
    let templates = ["*cls**sent_0*_A*mask*_one.*sep+*", "*cls*_This_is*mask*.*+sent_0**sep+*", "*cls**sent_0*_It's*mask*!*sep+*", "*cls**sent_0*_so*mask*.*sep+*", "*cls**sent_0*_unused*mask*.*sep+*"];
    std::fs::write(auto.join("16-1.sort.txt"), templates.join("\n")).unwrap();
    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "1", "--methods", "prompt,prompt-auto-1,prompt-auto-2,prompt-auto-3,prompt-auto-4",
        "--steps", "30", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "15", "--max-len", "24"]);
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    let mut tables = Vec::new();
    for m in harness::ENSEMBLE {
        let l: harness::Logits = serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, "SST-2", 1, m)).unwrap()).unwrap();
        tables.push(l.test);
    }
    assert_ne!(tables[1], tables[2], "different templates, different models");
    assert_eq!(harness::auto_template(&data, "SST-2", 1, 2).unwrap(), templates[1]);
    let gold: Vec<usize> = harness::task("SST-2").unwrap().read(&data, 1, "test").unwrap().iter().map(|e| e.label.unwrap()).collect();
    let want = 100.0 * lmbff::metrics::accuracy(&lmbff::metrics::mean_rows(&tables), &gold);
    assert!(table.contains(&format!("| ensemble | {want:.1} (0.0) [1] |")), "{table}");
    // A member's logits gone: the seed leaves the ensemble, said so; the report is written.
    std::fs::remove_file(harness::logits_path(&out, "SST-2", 1, RunMethod::PromptAuto3)).unwrap();
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "1", "--methods", "prompt,prompt-auto-1,prompt-auto-2,prompt-auto-3,prompt-auto-4",
        "--steps", "30", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "15", "--max-len", "24"]);
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && err.contains("SST-2 seed 1 is left out of the template ensemble"), "{err}");
    assert!(!table.contains("| ensemble |") && out.join("report.md").is_file(), "{table}");
    // A damaged one likewise (it stopped every later report of the folder).
    std::fs::write(harness::logits_path(&out, "SST-2", 1, RunMethod::PromptAuto1), "{\"test\": [[0.1,").unwrap();
    std::fs::remove_file(out.join("report.md")).unwrap();
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "1", "--methods", "prompt,prompt-auto-1", "--steps", "30", "--lr", "3e-3",
        "--batch-size", "4", "--eval-every", "15", "--max-len", "24"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("is not readable stored logits") && out.join("report.md").is_file(), "{err}");
    // The automatic templates are inputs of the runs that read them: another first
    // template is refused in this folder (its prompt-auto-1 result was of the old one).
    let mut changed = templates;
    changed[0] = "*cls**sent_0*_Truly*mask*.*sep+*";
    std::fs::write(auto.join("16-1.sort.txt"), changed.join("\n")).unwrap();
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "1", "--methods", "prompt-auto-1", "--steps", "30", "--lr", "3e-3", "--batch-size", "4", "--eval-every", "15", "--max-len", "24"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("the data of SST-2/16-1/auto-template-1 differ"), "{err}");
    std::fs::write(auto.join("16-1.sort.txt"), templates.join("\n")).unwrap();
    // A missing auto-template file is a named error.
    let o = harness_on(&data, &dir.join("out2"), &["--tasks", "SST-2", "--seeds", "2", "--methods", "prompt-auto-1", "--steps", "2"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("16-2.sort.txt"), "{}", String::from_utf8_lossy(&o.stderr));

    // sentence-embedding-anchors-auto anchors on the first four auto templates too, and
    // records its anchors, as sentence-embedding-anchors does.
    let out = dir.join("out-anchors");
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "1", "--methods", "sentence-embedding-anchors,sentence-embedding-anchors-auto", "--steps", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let result = |m| -> harness::RunResult { serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "SST-2", 1, m)).unwrap()).unwrap() };
    let (manual, auto) = (result(RunMethod::SentenceEmbeddingAnchors), result(RunMethod::SentenceEmbeddingAnchorsAuto));
    let words = harness::task("SST-2").unwrap().labels.iter().map(|(_, w)| w.to_string()).collect::<Vec<_>>();
    assert_eq!(manual.anchors, words.iter().map(|w| format!("It was {w}.")).collect::<Vec<_>>());
    let mut want = manual.anchors.clone();
    for prefix in ["A {} one.", "This is {}.", "It's {}!", "so {}."] {
        want.extend(words.iter().map(|w| prefix.replace("{}", w)));
    }
    assert_eq!(auto.anchors, want, "the manual template's anchors, then the first four auto templates'");
    let o = harness_on(&data, &dir.join("out3"), &["--tasks", "SST-2", "--seeds", "2", "--methods", "sentence-embedding-anchors-auto", "--steps", "2"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("16-2.sort.txt"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The multi-label task built from TREC: each split's questions are joined in groups of
/// one to three, every question used once, a group labelled with the set of its classes;
/// the harness trains the prompt on the yes/no pairs and the sentence-embedding method
/// on the inputs (a yes/no head per label, scored as the same pairs), and reports the
/// micro-F1 with the macro-F1.
#[test]
fn multi_label_task_from_trec() {
    let dir = common::tempdir("harness-multi");
    let data = dir.join("k-shot");
    let trec = data.join("trec/16-1");
    std::fs::create_dir_all(&trec).unwrap();
    let questions: Vec<(usize, String)> = (0..24).map(|i| (i % 6, format!("what is question number {i} about ?"))).collect();
    let csv: String = questions.iter().map(|(l, q)| format!("{l},{q}\n")).collect();
    for split in ["train", "dev", "test"] {
        std::fs::write(trec.join(format!("{split}.csv")), &csv).unwrap();
    }
    let spec = harness::task("trec-multi").unwrap();
    let m = spec.multi_label.unwrap();
    let (inputs, sets) = m.build(&data, 1, "test").unwrap();
    assert_eq!(m.build(&data, 1, "test").unwrap(), (inputs.clone(), sets.clone()), "the same groups every time");
    assert_ne!(m.build(&data, 1, "train").unwrap().0, inputs, "splits are grouped apart");
    let mut used = 0;
    for (ex, set) in inputs.iter().zip(&sets) {
        let members: Vec<&(usize, String)> = questions.iter().filter(|(_, q)| ex.text_a.contains(q.as_str())).collect();
        assert!((1..=3).contains(&members.len()), "{:?}", ex.text_a);
        let mut want: Vec<usize> = members.iter().map(|(l, _)| *l).collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(set, &want, "a group's labels are its members' classes");
        used += members.len();
    }
    assert_eq!(used, questions.len(), "every question is used once");
    let pairs = spec.read(&data, 1, "test").unwrap();
    assert_eq!(pairs.len(), 6 * inputs.len());
    assert_eq!(pairs[0].text_b.as_deref(), Some("Description"));

    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "trec-multi", "--seeds", "1", "--methods", "majority,prompt,sentence-embedding,sentence-embedding-anchors",
        "--steps", "30", "--lr", "3e-3", "--batch-size", "8", "--eval-every", "15", "--max-len", "32"]);
    let (table, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(table.contains("trec-multi (micro-f1)") && table.contains("Multi-label: macro-F1"), "{table}");
    let r: harness::RunResult = serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "trec-multi", 1, RunMethod::Prompt)).unwrap()).unwrap();
    assert_eq!((r.metric.as_str(), r.n_test), ("micro-f1", pairs.len()));
    let macro_f1 = r.macro_f1.expect("the macro-F1 beside the micro-F1");
    assert!((0.0..=1.0).contains(&macro_f1) && (0.0..=1.0).contains(&r.test), "{r:?}");
    // The heads' logits come as the pairs' yes/no rows, and the score is theirs.
    let se: harness::RunResult =
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "trec-multi", 1, RunMethod::SentenceEmbedding)).unwrap()).unwrap();
    assert_eq!((se.metric.as_str(), se.n_test), ("micro-f1", pairs.len()));
    assert!(se.macro_f1.is_some() && se.calibration.is_some(), "{se:?}");
    let l: harness::Logits =
        serde_json::from_str(&std::fs::read_to_string(harness::logits_path(&out, "trec-multi", 1, RunMethod::SentenceEmbedding)).unwrap()).unwrap();
    assert!(l.test.len() == pairs.len() && l.test.iter().all(|r| r.len() == 2), "one yes/no row per pair");
    let gold: Vec<usize> = pairs.iter().map(|p| p.label.unwrap()).collect();
    assert!((spec.metric.score(&l.test, &gold, &[]) - se.test).abs() < 1e-9);
    assert!(table.contains("| sentence-embedding |"), "{table}");
    // With anchors, the labels' names are each an anchor of its label; SetFit has none.
    let anchored: harness::RunResult =
        serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "trec-multi", 1, RunMethod::SentenceEmbeddingAnchors)).unwrap()).unwrap();
    assert_eq!(anchored.anchors, m.labels().unwrap().names().to_vec());
    assert!(se.anchors.is_empty(), "{:?}", se.anchors);
    // --test-limit counts inputs, each of them its six pairs (it cut 2 inputs to 2 pairs).
    let limited = dir.join("out-limited");
    let o = harness_on(&data, &limited, &["--tasks", "trec-multi", "--seeds", "1", "--methods", "majority", "--test-limit", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = harness::result_path(&limited, "trec-multi", 1, RunMethod::Majority);
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(r["n_test"], 12);
    // A result of the old count (2 pairs) is not reused as one of 2 inputs.
    r["n_test"] = 2.into();
    std::fs::write(&path, r.to_string()).unwrap();
    let o = harness_on(&data, &limited, &["--tasks", "trec-multi", "--seeds", "1", "--methods", "majority", "--test-limit", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("made when --test-limit counted pairs"), "{err}");
}

/// The full-data ceiling: plain fine-tuning on glue_pretrain's train split beside the
/// k-shot folder, dev on its dev split, both less every text of the test set.
#[test]
fn full_data_ceiling_drops_test_texts() {
    let dir = common::tempdir("harness-full");
    let data = dir.join("k-shot");
    kshot(&data);
    let full = dir.join("glue_pretrain/mr");
    std::fs::create_dir_all(&full).unwrap();
    let mut records = Vec::new();
    for (p, n) in POS.iter().zip(NEG) {
        records.push(serde_json::json!({"text_a": format!("{p} and more"), "text_b": null, "label": 1}));
        records.push(serde_json::json!({"text_a": format!("{n} and more"), "text_b": null, "label": 0}));
    }
    // Also in mr's test split (as `label,sentence` CSV: `0,the movie was boring`): dropped,
    // and so is the same text in other case (TREC's training set holds a test question
    // so).
    records.push(serde_json::json!({"text_a": NEG[0], "text_b": null, "label": 0}));
    records.push(serde_json::json!({"text_a": NEG[1].to_uppercase(), "text_b": null, "label": 0}));
    let json = |r: &[serde_json::Value]| -> String {
        serde_json::to_string(&r.iter().enumerate().map(|(i, v)| (i.to_string(), v.clone())).collect::<serde_json::Map<_, _>>()).unwrap()
    };
    std::fs::write(full.join("train.json"), json(&records)).unwrap();
    std::fs::write(full.join("dev.json"), json(&records[..6])).unwrap();
    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "mr", "--seeds", "1", "--methods", "full-data", "--full-data-steps", "10", "--lr", "3e-3", "--max-len", "32"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: harness::RunResult = serde_json::from_str(&std::fs::read_to_string(harness::result_path(&out, "mr", 1, RunMethod::FullData)).unwrap()).unwrap();
    let f = r.full_data.expect("full-data sizes");
    assert_eq!((f.train, f.dev, f.dropped), (12, 6, 2), "{f:?}");
    assert_eq!(r.best_step.map(|s| s % 2), Some(0), "dev every fifth of 10 steps");
    assert!((0.0..=1.0).contains(&r.test));
    // The full training set is an input of the run: another one is refused in this folder.
    std::fs::write(full.join("train.json"), json(&records[1..])).unwrap();
    let o = harness_on(&data, &out, &["--tasks", "mr", "--seeds", "1", "--methods", "full-data", "--full-data-steps", "10", "--lr", "3e-3", "--max-len", "32"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("the data of mr/full-data differ"), "{err}");
    // A result whose data were cut by another rule (an older version's overlap rule, on
    // the same files) is not reused either: its counts are checked against this version's.
    std::fs::write(full.join("train.json"), json(&records)).unwrap();
    let path = harness::result_path(&out, "mr", 1, RunMethod::FullData);
    let mut stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    stored["full_data"]["dropped"] = 1.into();
    stored["full_data"]["train"] = 13.into();
    std::fs::write(&path, stored.to_string()).unwrap();
    let o = harness_on(&data, &out, &["--tasks", "mr", "--seeds", "1", "--methods", "full-data", "--full-data-steps", "10", "--lr", "3e-3", "--max-len", "32"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("was trained on other full data") && err.contains("(12 train, 6 dev, 2 dropped)"), "{err}");
}

/// What the harness reads is checked before any run, and a folder's runs are reused only
/// for the inputs they were made from: a name given twice, an empty split, changed data
/// or model files, a result file that is not its run's are named; the same model by
/// another path is the same model; two commands on one folder share its runs.
#[test]
fn inputs_are_checked_and_runs_are_shared() {
    let dir = common::tempdir("harness-inputs");
    let data = dir.join("k-shot");
    kshot(&data);
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(common::fixtures().join("bert")).unwrap().map(Result::unwrap) {
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let out = dir.join("out");
    let budget = ["--steps", "8", "--batch-size", "4", "--eval-every", "4", "--max-len", "24"];
    let run = |out: &Path, model: &Path, extra: &[&str]| {
        let o = lmbff()
            .args(["harness", "--device", "cpu", "--threads", "1", "--tasks", "SST-2,mr", "--seeds", "1,2", "--methods", "majority,plain"])
            .args(budget)
            .arg("--model").arg(model).arg("--data").arg(&data).arg("--out").arg(out)
            .args(extra)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    for (list, named) in [(["1,2,2", "SST-2", "plain"], "--seeds names 2 twice"), (["1", "SST-2,SST-2", "plain"], "--tasks names SST-2 twice"), (["1", "mr", "plain,plain"], "--methods names plain twice")] {
        let o = lmbff().args(["harness", "--device", "cpu", "--seeds", list[0], "--tasks", list[1], "--methods", list[2]]).arg("--model").arg(&model).arg("--data").arg(&data).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(named) && !out.exists(), "{err}");
    }
    // Settings a run would refuse are refused before the first run (a grid used to stop
    // at that run on every re-run; in-context with no set ran as zero-shot).
    for (extra, named) in [
        (["--methods", "majority,in-context", "--demo-sets", "0"], "in-context reads demonstrations: --demo-sets must be 1 to 64, got 0"),
        (["--methods", "majority,plain", "--steps", "0"], "plain fine-tunes: --batch-size (8), --steps (0) must be positive"),
        (["--methods", "full-data", "--full-data-steps", "0"], "full-data fine-tunes: --full-data-steps (0) must be positive"),
        (["--methods", "majority,plain", "--max-len", "3"], "--max-len 3 is too small"),
        (["--methods", "majority,plain", "--device", "cuda:9"], "device \"cuda:9\" is not available"),
        (["--methods", "sentence-embedding", "--head-c", "inf"], "--head-c must be a positive number, got inf"),
        (["--methods", "majority", "--max-minutes", "NaN"], "--max-minutes must be a number of minutes"),
        (["--methods", "majority,in-context", "--demo-subsample-sets", "0"], "in-context reads demonstrations: --demo-subsample-sets must be 1 to 64 with --demo-subsample 1000"),
    ] {
        let o = lmbff().args(["harness", "--seeds", "1", "--tasks", "mr"]).args(extra).arg("--model").arg(&model).arg("--data").arg(&data).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(named) && !out.exists(), "{err}");
    }
    // A mistyped --model is named before the folder records its settings: the right
    // model then runs there (the folder used to be claimed for the wrong path).
    let o = lmbff().args(["harness", "--device", "cpu", "--seeds", "1", "--tasks", "mr", "--methods", "majority"]).arg("--model").arg(dir.join("no-such-model")).arg("--data").arg(&data).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no-such-model has no model config (--model)") && !out.join(harness::SETTINGS_FILE).exists(), "{err}");
    // A folder with a runs/ of its own (`--out .` in a repository) is not a harness folder.
    let user = dir.join("repository");
    std::fs::create_dir_all(user.join("runs/demo")).unwrap();
    std::fs::write(user.join("runs/demo/report.json"), "{}").unwrap();
    let o = lmbff().args(["harness", "--device", "cpu", "--seeds", "1", "--tasks", "mr", "--methods", "majority"]).arg("--model").arg(&model).arg("--data").arg(&data).arg("--out").arg(&user).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("repository is not a harness folder (no settings.json)") && !user.join(harness::SETTINGS_FILE).exists(), "{err}");
    // A CSV row of three fields (a sentence with an unquoted comma) is named, not cut.
    let commas = dir.join("commas");
    kshot(&commas);
    std::fs::write(commas.join("mr/16-1/dev.csv"), "1,a fine, warm film\n0,a dull film,really\n").unwrap();
    let o = lmbff().args(["harness", "--device", "cpu", "--tasks", "mr", "--seeds", "1", "--methods", "majority"]).arg("--model").arg(&model).arg("--data").arg(&commas).arg("--out").arg(dir.join("never")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("line 1: expected `label,sentence`") && err.contains("found 3 field(s)"), "{err}");
    // An empty test split is named before anything is written.
    let empty = dir.join("empty");
    kshot(&empty);
    std::fs::write(empty.join("mr/16-2/test.csv"), "").unwrap();
    let o = lmbff().args(["harness", "--device", "cpu", "--tasks", "SST-2,mr", "--seeds", "1,2", "--methods", "majority"]).arg("--model").arg(&model).arg("--data").arg(&empty).arg("--out").arg(dir.join("never")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("mr/16-2: the test split has no rows") && !dir.join("never").exists(), "{err}");

    // The default length (128) on a model of 64 positions is cut to them, as `train`
    // cuts it: a long test sentence used to stop the grid at its first prompt run.
    let long = dir.join("long");
    kshot(&long);
    let test = long.join("SST-2/16-1/test.tsv");
    std::fs::write(&test, std::fs::read_to_string(&test).unwrap() + &"a very long review ".repeat(40) + "\t1\n").unwrap();
    let o = lmbff().args(["harness", "--device", "cpu", "--threads", "1", "--tasks", "SST-2", "--seeds", "1", "--methods", "zero-shot,plain", "--steps", "4", "--eval-every", "2", "--batch-size", "4"])
        .arg("--model").arg(&model).arg("--data").arg(&long).arg("--out").arg(dir.join("long-out")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Two commands at once on one folder: each run is made by one of them.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&out, &model, &[]));
        let b = s.spawn(|| run(&out, &model, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.0 && b.0, "{}\n{}", a.1, b.1);
    // "R of 8 runs reused[, S made by another command on this folder meanwhile]": this
    // command made the rest.
    let made = |err: &str| -> usize {
        let number_before = |marker: &str| err.rsplit(marker).nth(1).and_then(|h| h.rsplit(|c: char| !c.is_ascii_digit()).next()).map_or(0, |n| n.parse().unwrap());
        8 - number_before(" of 8 runs reused") - number_before(" made by another command")
    };
    assert_eq!(made(&a.1) + made(&b.1), 8, "every run made once:\n{}\n{}", a.1, b.1);
    // The same model by another path is the same model.
    let (ok, err) = run(&out, &dir.join("model/../model"), &[]);
    assert!(ok && err.contains("8 of 8 runs reused"), "{err}");

    // Other data under the same settings are not the stored runs' data.
    std::fs::write(data.join("SST-2/16-2/test.tsv"), "sentence\tlabel\nfun\t1\n").unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(!ok && err.contains("the data of SST-2/16-2 differ"), "{err}");
    kshot(&data);
    // Nor is a model whose files changed.
    let config = model.join("config.json");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + "\n").unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(!ok && err.contains("the files of --model") && err.contains("changed since"), "{err}");
    std::fs::write(&config, std::fs::read_to_string(common::fixtures().join("bert/config.json")).unwrap()).unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(ok && err.contains("8 of 8 runs reused"), "{err}");

    // A result file holding another run's result, or no result, is named.
    let path = harness::result_path(&out, "SST-2", 1, RunMethod::Plain);
    let original = std::fs::read_to_string(&path).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&original).unwrap();
    r["task"] = "mr".into();
    std::fs::write(&path, r.to_string()).unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(!ok && err.contains("holds the result of mr seed 1 plain, not of SST-2 seed 1 plain"), "{err}");
    r["task"] = "SST-2".into();
    r["test"] = 5.0.into();
    std::fs::write(&path, r.to_string()).unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(!ok && err.contains("acc test 5 over 12 inputs is not a result"), "{err}");
    // A result of another test set (another count of rows) is not reused as this one's.
    r["test"] = 0.5.into();
    r["n_test"] = 11.into();
    std::fs::write(&path, r.to_string()).unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(!ok && err.contains("scored 11 test rows where SST-2 seed 1 now gives 12"), "{err}");
    std::fs::write(&path, original).unwrap();
    let (ok, err) = run(&out, &model, &[]);
    assert!(ok && err.contains("8 of 8 runs reused"), "{err}");
}

/// A run another command holds is waited for only while `--max-minutes` lasts: then it
/// counts as not started, for a later chunk (the wait used to poll without end).
#[test]
fn waiting_on_another_command_stops_at_max_minutes() {
    let dir = common::tempdir("harness-wait");
    let data = dir.join("k-shot");
    kshot(&data);
    let out = dir.join("out");
    let o = harness_on(&data, &out, &["--tasks", "SST-2", "--seeds", "2", "--methods", "majority"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Another command's claim on seed 1's run, held for as long as this test runs.
    let _theirs = harness::RunClaim::try_take(&out, "SST-2", 1, RunMethod::Majority).unwrap().expect("no one else holds the claim");
    let err_path = dir.join("stderr.txt");
    let mut child = lmbff()
        .args(["harness", "--device", "cpu", "--threads", "1", "--tasks", "SST-2", "--seeds", "1,2", "--methods", "majority", "--max-minutes", "0.1"])
        .arg("--model").arg(common::fixtures().join("bert")).arg("--data").arg(&data).arg("--out").arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the harness still waits on the held run long past --max-minutes 0.1");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    // It got to the wait (the time was not spent before it), and the wait gave up.
    assert!(err.contains("waiting for another harness command"), "{err}");
    assert!(status.success() && err.contains("1 of 2 runs reused; 1 runs not started (--max-minutes)"), "{err}");
    assert!(!harness::result_path(&out, "SST-2", 1, RunMethod::Majority).exists());
}

/// python/harness_ensemble.py's default calibration is the library's: the temperature
/// `fit_calibration` applies (1 where it is withheld), to 1e-9, on dev sets that fit one,
/// that fit none (all right, all wrong) and that lie flat to a bound. (Logits in 64ths:
/// the same numbers as f32 and in Python's floats.)
#[test]
fn ensemble_script_calibrates_as_the_library() {
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 8.0 - 4.0
    };
    let mut sets: Vec<(Vec<Vec<f32>>, Vec<usize>)> = (0..6)
        .map(|k| {
            let classes = 2 + k % 3;
            let rows: Vec<Vec<f32>> = (0..20).map(|_| (0..classes).map(|_| ((next() * 64.0).round() / 64.0) as f32).collect()).collect();
            let gold = (0..20).map(|i| (i * 7 + k) % classes).collect();
            (rows, gold)
        })
        .collect();
    sets.push((vec![vec![3.0, 0.0], vec![0.0, 2.0]], vec![0, 1]));
    sets.push((vec![vec![3.0, 0.0], vec![0.0, 2.0]], vec![1, 0]));
    sets.push((vec![vec![3.0, 0.0], vec![1.0, 1.0]], vec![0, 1]));
    let want: Vec<f64> = sets
        .iter()
        .map(|(rows, gold)| {
            let fit = lmbff::metrics::fit_calibration(rows, gold);
            if fit.applied {
                fit.temperature
            } else {
                1.0
            }
        })
        .collect();
    assert!(want.iter().filter(|&&t| t != 1.0).count() >= 4 && want[6..].iter().all(|&t| t == 1.0), "{want:?}");
    let code = format!(
        "import json, sys; sys.path.insert(0, {:?}); import harness_ensemble as h\nfor rows, gold in json.loads(sys.stdin.read()): print(repr(h.fit_temperature_library(rows, gold)))",
        common::root().join("python").display().to_string()
    );
    let mut child = Command::new(common::python()).args(["-c", &code]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&sets).unwrap().as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<f64> = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.max(1.0), "python {g} against the library's {w} ({got:?} / {want:?})");
    }
}

/// A folder where another command is making a harness folder (its lock file, its
/// settings' temporary file: `.settings.json.lmbff-tmp-<pid>-<n>`) is taken as --out; a
/// folder with any other file is a user's and refused.
#[test]
fn out_folder_being_made_is_a_harness_folder() {
    let dir = common::tempdir("harness-out-being-made");
    std::fs::write(dir.join(".lmbff.lock"), "").unwrap();
    std::fs::write(dir.join(".settings.json.lmbff-tmp-12-34"), "{").unwrap();
    harness::check_out_folder(&dir).unwrap();
    std::fs::write(dir.join("settings.json.tmp-12-35"), "{").unwrap();
    harness::check_out_folder(&dir).unwrap();
    std::fs::write(dir.join(".settings.json.lmbff-tmp-notes"), "").unwrap();
    let e = harness::check_out_folder(&dir).unwrap_err().to_string();
    assert!(e.contains("is not a harness folder") && e.contains("settings.json.lmbff-tmp-notes"), "{e}");
}

/// A run that fails (a seed whose train split holds one class, which the
/// sentence-embedding method refuses) is named; the runs after it still run and are
/// reported, and the command exits non-zero with that run's error. It stopped the grid
/// at that run on every re-run. A folder whose first command stored no run says so.
#[test]
fn a_failing_run_is_named_and_the_others_go_on() {
    let dir = common::tempdir("harness-failing");
    let data = dir.join("k-shot");
    kshot(&data);
    let pos: String = POS.iter().map(|p| format!("{p}\t1\n")).collect();
    std::fs::write(data.join("SST-2/16-1/train.tsv"), format!("sentence\tlabel\n{pos}")).unwrap();
    let out = dir.join("out");
    let args = ["--tasks", "SST-2", "--seeds", "1,2", "--methods", "majority,sentence-embedding", "--max-len", "24", "--embed-iterations", "1"];
    let o = harness_on(&data, &out, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("2/4 SST-2 s1 sentence-embedding: the run failed") && err.contains("every training example is of class"), "{err}");
    assert!(err.contains("error: ") && err.contains("the first failed run: SST-2 s1 sentence-embedding"), "{err}");
    assert!(harness::result_path(&out, "SST-2", 2, RunMethod::SentenceEmbedding).is_file(), "the run after it ran: {err}");
    assert!(!harness::result_path(&out, "SST-2", 1, RunMethod::SentenceEmbedding).exists());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("1 runs failed") && report.contains("SST-2 s1 sentence-embedding (") && report.contains("[1/2]"), "{report}");
    assert!(!report.contains("0 runs not started") && report.contains("0 more not started"), "a grid with a hole is not whole: {report}");
    // A folder claimed by a command that stopped before storing a run is named as such.
    let fresh = dir.join("fresh");
    let o = harness_on(&data, &fresh, &["--tasks", "SST-2", "--seeds", "1", "--methods", "sentence-embedding", "--max-len", "24", "--embed-iterations", "1"]);
    assert!(!o.status.success());
    let o = harness_on(&data, &fresh, &["--tasks", "SST-2", "--seeds", "1", "--methods", "sentence-embedding", "--max-len", "32", "--embed-iterations", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("was claimed by an earlier command with other settings (max_len") && err.contains("which stored no run"), "{err}");
}

/// LM-BFF's own data, where this machine has it (../shared/data/lmbff beside the
/// project): every task's splits at the five seeds read as the harness reads them, and
/// every glue_pretrain TSV (adaptation's texts) reads. QQP's splits and mr's training
/// text hold texts that look CSV-quoted, and were refused for a day.
#[test]
fn lm_bffs_own_files_all_read() {
    let root = common::root().join("../shared/data/lmbff");
    if !root.join("k-shot").is_dir() {
        eprintln!("SKIPPED: {} is not on this machine", root.display());
        return;
    }
    let data = root.join("k-shot");
    let tasks: Vec<&harness::TaskSpec> = harness::TASKS.iter().filter(|t| data.join(t.name).is_dir()).collect();
    assert!(tasks.len() >= 15, "{} tasks found in {}", tasks.len(), data.display());
    harness::check_data(&data, &tasks, &[13, 21, 42, 87, 100], &[RunMethod::Plain]).unwrap();
    let mut read = 0;
    for task in std::fs::read_dir(root.join("glue_pretrain")).unwrap().flatten() {
        for split in ["train.tsv", "dev.tsv"] {
            let f = task.path().join(split);
            if f.is_file() {
                let rows = lmbff::data::read_tsv(&f).unwrap_or_else(|e| panic!("{e}"));
                assert!(!rows.is_empty(), "{}", f.display());
                read += 1;
            }
        }
    }
    assert!(read >= 16, "{read} glue_pretrain TSV files read");
}
