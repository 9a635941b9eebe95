//! The C ABI's predictor calls, called as a C host would: status codes and messages for
//! bad arguments (NULLs, invalid UTF-8, a wrong params size, a bad directory), free(NULL)
//! as a no-op, and a prediction read back through the accessors.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr::null;

use lmbff::export::{export, ExportOptions};
use lmbff::ffi::*;
use lmbff::model::MaskedLm;
use lmbff::prompt::{Prompt, Template, Truncation, Verbalizer};
use lmbff::tokenize::Tokenizer;
use lmbff_status::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(lmbff_last_error()) }.to_string_lossy().into_owned()
}

/// One export of the tiny BERT, shared by the tests of this binary.
fn exported() -> CString {
    static DIR: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    DIR.get_or_init(export_once).clone()
}

fn export_once() -> CString {
    let dir = common::fixtures().join("bert");
    common::one_thread();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Verbalizer::new(&tok, &[("neg".into(), "terrible".into()), ("pos".into(), "great".into())]).unwrap();
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 32, ..Default::default() }).unwrap();
    let out = common::tempdir("ffi").join("export");
    export(&MaskedLm::load(&dir, tch::Device::Cpu).unwrap(), &tok, &p, &lmbff::train::Demos::None, Default::default(), &out, &ExportOptions::default()).unwrap();
    CString::new(out.to_str().unwrap()).unwrap()
}

#[test]
fn predictor_through_the_c_abi() {
    let dir = exported();
    unsafe {
        let mut p: *mut lmbff_predictor = std::ptr::null_mut();
        let mut params = lmbff_predictor_default_params();
        params.threads = 1;
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_predictor_num_labels(p), 2);
        assert_eq!(CStr::from_ptr(lmbff_predictor_label(p, 1)).to_str().unwrap(), "pos");
        let mut low = 7.0f32;
        assert!(!lmbff_predictor_reads_pairs(p) && !lmbff_predictor_regression(p, &mut low, std::ptr::null_mut()) && low == 7.0);
        assert!(!lmbff_predictor_reads_pairs(std::ptr::null()) && !lmbff_predictor_regression(std::ptr::null(), &mut low, std::ptr::null_mut()));
        assert!(lmbff_predictor_label(p, 2).is_null());

        let texts = [CString::new("it was great fun").unwrap(), CString::new("").unwrap(), CString::new("a dull ride").unwrap()];
        let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr()).collect();
        let mut r: *mut lmbff_predictions = std::ptr::null_mut();
        assert_eq!(lmbff_predict(p, ptrs.as_ptr(), null(), 3, &mut r), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_predictions_count(r), 3);
        let (mut label, mut margin, mut entropy) = (9u32, -1f32, -1f32);
        assert_eq!(lmbff_predictions_get(r, 2, &mut label, &mut margin, &mut entropy), LMBFF_OK);
        let mut probs = [0f32; 2];
        assert_eq!(lmbff_predictions_probs(r, 2, probs.as_mut_ptr(), 2), LMBFF_OK);
        assert!((probs[0] + probs[1] - 1.0).abs() < 1e-5);
        assert_eq!(label as usize, if probs[1] > probs[0] { 1 } else { 0 });
        assert!((margin - (probs[0] - probs[1]).abs()).abs() < 1e-6 && entropy >= 0.0);
        // Errors: out of range, too small a buffer.
        assert_eq!(lmbff_predictions_get(r, 3, &mut label, null_mut(), null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("out of range"));
        assert_eq!(lmbff_predictions_probs(r, 0, probs.as_mut_ptr(), 1), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("room for 2"));
        // Label Studio's prediction shape, with a size query first.
        let (from, to) = (CString::new("sentiment").unwrap(), CString::new("text").unwrap());
        let mut need = 0usize;
        assert_eq!(lmbff_predictions_label_studio_json(p, r, from.as_ptr(), to.as_ptr(), null(), std::ptr::null_mut(), 0, &mut need), LMBFF_ERR_INVALID_ARGUMENT);
        let mut buf = vec![0 as c_char; need];
        assert_eq!(lmbff_predictions_label_studio_json(p, r, from.as_ptr(), to.as_ptr(), null(), buf.as_mut_ptr(), need, null_mut()), LMBFF_OK);
        let json: serde_json::Value = serde_json::from_str(CStr::from_ptr(buf.as_ptr()).to_str().unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 3);
        assert_eq!(json[2]["result"][0]["value"]["choices"][0], if label == 1 { "pos" } else { "neg" });
        assert_eq!(json[2]["result"][0]["from_name"], "sentiment");
        assert_eq!(json[2]["result"][0]["type"], "choices");
        assert!((json[2]["score"].as_f64().unwrap() - probs[label as usize] as f64).abs() < 1e-6);
        assert_eq!(json[0]["model_version"].as_str().unwrap().len(), 16, "the export's version by default");
        lmbff_predictions_free(r);

        // n = 0 gives an empty result; invalid UTF-8 and NULL texts are named.
        assert_eq!(lmbff_predict(p, null(), null(), 0, &mut r), LMBFF_OK);
        assert_eq!(lmbff_predictions_count(r), 0);
        lmbff_predictions_free(r);
        let bad = [0x66u8, 0xff, 0x00];
        let bad_ptrs = [texts[0].as_ptr(), bad.as_ptr().cast::<c_char>()];
        assert_eq!(lmbff_predict(p, bad_ptrs.as_ptr(), null(), 2, &mut r), LMBFF_ERR_UTF8);
        assert!(last_error().contains("texts[1]"), "{}", last_error());
        assert!(r.is_null());
        let null_ptrs = [texts[0].as_ptr(), null()];
        assert_eq!(lmbff_predict(p, null_ptrs.as_ptr(), null(), 2, &mut r), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("texts[1] is NULL"));
        assert_eq!(lmbff_predict(null(), ptrs.as_ptr(), null(), 1, &mut r), LMBFF_ERR_INVALID_ARGUMENT);

        // lmbff_predict_with_error hands the message back in the caller's buffer: whole,
        // cut at a character boundary to fit, "" on success; a NULL buffer is allowed.
        let mut message = [b'x' as c_char; 4160];
        assert_eq!(lmbff_predict_with_error(p, bad_ptrs.as_ptr(), null(), 2, &mut r, message.as_mut_ptr(), message.len()), LMBFF_ERR_UTF8);
        let whole = CStr::from_ptr(message.as_ptr()).to_str().unwrap().to_string();
        assert_eq!(whole, last_error());
        assert!(whole.contains("texts[1]") && r.is_null(), "{whole}");
        // A buffer too small for it holds the message's start (the cut at a character
        // boundary is a unit test of src/ffi); nothing past the capacity is written.
        let mut small = [b'x' as c_char; 12];
        assert_eq!(lmbff_predict_with_error(p, bad_ptrs.as_ptr(), null(), 2, &mut r, small.as_mut_ptr(), 8), LMBFF_ERR_UTF8);
        assert_eq!(CStr::from_ptr(small.as_ptr()).to_str().unwrap(), &whole[..7]);
        assert_eq!(small[8], b'x' as c_char);
        assert_eq!(lmbff_predict_with_error(p, ptrs.as_ptr(), null(), 3, &mut r, message.as_mut_ptr(), message.len()), LMBFF_OK);
        assert_eq!(message[0], 0, "\"\" on success");
        assert_eq!(lmbff_predictions_count(r), 3);
        lmbff_predictions_free(r);
        assert_eq!(lmbff_predict_with_error(p, bad_ptrs.as_ptr(), null(), 2, &mut r, std::ptr::null_mut(), 0), LMBFF_ERR_UTF8);
        lmbff_predictor_free(p);

        // lmbff_predictor_open_with_error: the same, for opening.
        let missing = CString::new("/nonexistent/lmbff-export").unwrap();
        let mut q: *mut lmbff_predictor = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open_with_error(missing.as_ptr(), &params, &mut q, message.as_mut_ptr(), message.len()), LMBFF_ERR_IO);
        let whole = CStr::from_ptr(message.as_ptr()).to_str().unwrap().to_string();
        assert!(whole.contains("/nonexistent/lmbff-export") && whole == last_error() && q.is_null(), "{whole}");
        assert_eq!(lmbff_predictor_open_with_error(dir.as_ptr(), &params, &mut q, message.as_mut_ptr(), message.len()), LMBFF_OK, "{}", last_error());
        assert_eq!(message[0], 0);
        assert_eq!(lmbff_predictor_num_labels(q), 2);
        lmbff_predictor_free(q);
    }
}

static LOG: std::sync::Mutex<Vec<(i32, String)>> = std::sync::Mutex::new(Vec::new());
/// The tests that set the process's one log sink: one at a time.
static LOG_SINK: std::sync::Mutex<()> = std::sync::Mutex::new(());

extern "C" fn collect(level: i32, message: *const c_char, _user_data: *mut std::ffi::c_void) {
    let m = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    LOG.lock().unwrap().push((level, m));
}

/// Nothing is logged without a callback; with one, messages up to its level arrive.
#[test]
fn log_callback_with_levels() {
    let dir = exported();
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    unsafe {
        let open = || {
            let mut p = std::ptr::null_mut();
            assert_eq!(lmbff_predictor_open(dir.as_ptr(), null(), &mut p), LMBFF_OK);
            lmbff_predictor_free(p);
        };
        assert_eq!(lmbff_set_log_callback(Some(collect), LMBFF_LOG_WARN, std::ptr::null_mut()), LMBFF_OK);
        open();
        assert!(!LOG.lock().unwrap().iter().any(|(l, m)| *l == LMBFF_LOG_INFO && m.contains("predictor opened")), "info is above WARN");
        assert_eq!(lmbff_set_log_callback(Some(collect), LMBFF_LOG_INFO, std::ptr::null_mut()), LMBFF_OK);
        open();
        assert!(LOG.lock().unwrap().iter().any(|(l, m)| *l == LMBFF_LOG_INFO && m.contains("predictor opened")), "{:?}", LOG.lock().unwrap());
        assert_eq!(lmbff_set_log_callback(Some(collect), 9, std::ptr::null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(lmbff_set_log_callback(None, LMBFF_LOG_DEBUG, std::ptr::null_mut()), LMBFF_OK);
        let before = LOG.lock().unwrap().len();
        open();
        assert_eq!(LOG.lock().unwrap().len(), before, "no callback, no messages");
        // NULL stops logging whatever the level says.
        assert_eq!(lmbff_set_log_callback(None, 99, std::ptr::null_mut()), LMBFF_OK);
        // A callback may replace itself (here: stop logging) from inside; the replacement
        // takes over when it returns, and nothing deadlocks.
        *STOPPER.lock().unwrap() = Some(std::thread::current().id());
        assert_eq!(lmbff_set_log_callback(Some(stop_from_inside), LMBFF_LOG_DEBUG, std::ptr::null_mut()), LMBFF_OK);
        open();
        let calls = STOPS.load(std::sync::atomic::Ordering::SeqCst);
        assert!(calls >= 1, "the callback ran");
        open();
        assert_eq!(STOPS.load(std::sync::atomic::Ordering::SeqCst), calls, "it stopped itself");
    }
}

static OPENED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static NESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn open_from_inside(_level: i32, message: *const c_char, user_data: *mut std::ffi::c_void) {
    // SAFETY: user_data is the export folder's CString, alive for the test.
    let dir = user_data as *const c_char;
    let m = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    // The callback is the process's: tests running beside this one open predictors of
    // their own folders, and their messages reach it too.
    let ours = format!("predictor opened {}:", unsafe { CStr::from_ptr(dir) }.to_string_lossy());
    if !m.starts_with(&ours) {
        return;
    }
    OPENED.lock().unwrap().push(m);
    if !NESTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let (mut q, mut error) = (std::ptr::null_mut(), vec![0 as c_char; 4160]);
        unsafe {
            assert_eq!(lmbff_predictor_open_with_error(dir, null(), &mut q, error.as_mut_ptr(), error.len()), LMBFF_OK);
            lmbff_predictor_free(q);
        }
    }
}

/// An lmbff call a log callback makes through a `_with_error` function (which runs it on
/// a thread of its own) is not delivered to the callback, as any call made inside it is
/// not: its "predictor opened" reached the host's callback on that second thread while
/// the first was still running.
#[test]
fn a_with_error_call_from_a_log_callback_is_not_delivered() {
    // A folder of its own, opened by no other test.
    let dir = labelled_export(&[("neg", "terrible"), ("pos", "great")], "ffi-nested");
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    unsafe {
        assert_eq!(lmbff_set_log_callback(Some(open_from_inside), LMBFF_LOG_INFO, dir.as_ptr() as *mut std::ffi::c_void), LMBFF_OK);
        let mut p = std::ptr::null_mut();
        let opened = lmbff_predictor_open(dir.as_ptr(), null(), &mut p);
        lmbff_set_log_callback(None, LMBFF_LOG_ERROR, std::ptr::null_mut());
        assert_eq!(opened, LMBFF_OK, "{}", last_error());
        lmbff_predictor_free(p);
    }
    assert!(NESTED.load(std::sync::atomic::Ordering::SeqCst), "the callback opened one from inside");
    // (One guard: a second lock in the message waited for the first, so a failure hung.)
    let opened = OPENED.lock().unwrap().clone();
    assert_eq!(opened.len(), 1, "only the outer open was delivered: {opened:?}");
}

static STOPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The thread of the test that sets `stop_from_inside`: messages of tests running beside
/// it reach the callback too, and would count as calls after it stopped.
static STOPPER: std::sync::Mutex<Option<std::thread::ThreadId>> = std::sync::Mutex::new(None);

extern "C" fn stop_from_inside(_level: i32, _message: *const c_char, _user_data: *mut std::ffi::c_void) {
    if *STOPPER.lock().unwrap() != Some(std::thread::current().id()) {
        return;
    }
    STOPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    unsafe { lmbff_set_log_callback(None, LMBFF_LOG_ERROR, std::ptr::null_mut()) };
}

/// Options that would exhaust the host (sessions, threads), an ONNX Runtime path that is
/// not a file, a NULL probability buffer, and predictions read through a predictor with
/// other labels: each a named INVALID_ARGUMENT (RUNTIME for the library path), never an
/// abort.
#[test]
fn bounded_options_and_mismatched_handles() {
    let dir = exported();
    unsafe {
        let mut p: *mut lmbff_predictor = std::ptr::null_mut();
        for (sessions, threads) in [(u32::MAX, 1), (65, 1), (1, 100_000)] {
            let mut params = lmbff_predictor_default_params();
            (params.sessions, params.threads) = (sessions, threads);
            assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_ERR_INVALID_ARGUMENT, "{sessions} {threads}");
            assert!(last_error().contains("at most 64 sessions of at most 256 threads") && p.is_null(), "{}", last_error());
        }
        // Each within its range, but together more threads than the machine can use (and
        // more than a container's limit may let ONNX Runtime start: it hung there).
        let mut params = lmbff_predictor_default_params();
        (params.sessions, params.threads) = (64, 256);
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("1 pool(s) of 64 sessions of 256 threads are 16384 ONNX Runtime threads: at most") && p.is_null(), "{}", last_error());
        let mut params = lmbff_predictor_default_params();
        let missing = CString::new("/nonexistent/libonnxruntime.so").unwrap();
        params.ort_library = missing.as_ptr();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_ERR_RUNTIME);
        assert!(last_error().contains("/nonexistent/libonnxruntime.so (the path given) is not a file"), "{}", last_error());

        let mut params = lmbff_predictor_default_params();
        params.threads = 1;
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_OK, "{}", last_error());
        let text = CString::new("a dull ride").unwrap();
        let mut r: *mut lmbff_predictions = std::ptr::null_mut();
        assert_eq!(lmbff_predict(p, [text.as_ptr()].as_ptr(), null(), 1, &mut r), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_predictions_probs(r, 0, std::ptr::null_mut(), 2), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "invalid argument: probs is NULL");
        // Three labels against the two of these predictions.
        let three = three_label_export();
        let mut p3: *mut lmbff_predictor = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(three.as_ptr(), &params, &mut p3), LMBFF_OK, "{}", last_error());
        let (from, to) = (CString::new("sentiment").unwrap(), CString::new("text").unwrap());
        let mut need = 0usize;
        let status = lmbff_predictions_label_studio_json(p3, r, from.as_ptr(), to.as_ptr(), null(), std::ptr::null_mut(), 0, &mut need);
        assert_eq!(status, LMBFF_ERR_INVALID_ARGUMENT, "{}", last_error());
        assert!(last_error().contains("pass the predictor that made them"), "{}", last_error());
        // Two labels as these predictions have, in the other order: their classes would
        // be named wrongly (only the count was checked).
        let swapped = labelled_export(&[("pos", "great"), ("neg", "terrible")], "ffi-swapped");
        let mut p2: *mut lmbff_predictor = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(swapped.as_ptr(), &params, &mut p2), LMBFF_OK, "{}", last_error());
        let status = lmbff_predictions_label_studio_json(p2, r, from.as_ptr(), to.as_ptr(), null(), std::ptr::null_mut(), 0, &mut need);
        assert_eq!(status, LMBFF_ERR_INVALID_ARGUMENT, "{}", last_error());
        assert!(last_error().contains(r#"with the labels ["neg", "pos"], and this one has ["pos", "neg"]"#), "{}", last_error());
        lmbff_predictor_free(p2);
        // The same labels from another model version (another template, so another
        // export hash), as a server that re-exports and reopens has: the predictions keep
        // the version that made them.
        let later = {
            let dir = common::fixtures().join("bert");
            let tok = Tokenizer::from_dir(&dir).unwrap();
            let v = Verbalizer::new(&tok, &[("neg".into(), "terrible".into()), ("pos".into(), "great".into())]).unwrap();
            let prompt = Prompt::new(Template::parse("{text} All in all, {mask}.").unwrap(), v, Truncation { max_len: 32, ..Default::default() }).unwrap();
            let out = common::tempdir("ffi-later").join("export");
            export(&MaskedLm::load(&dir, tch::Device::Cpu).unwrap(), &tok, &prompt, &lmbff::train::Demos::None, Default::default(), &out, &ExportOptions::default()).unwrap();
            CString::new(out.to_str().unwrap()).unwrap()
        };
        let mut pl: *mut lmbff_predictor = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(later.as_ptr(), &params, &mut pl), LMBFF_OK, "{}", last_error());
        let version_of = |dir: &CString| -> String {
            let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(std::path::Path::new(dir.to_str().unwrap()).join("lmbff-export.json")).unwrap()).unwrap();
            m["model"]["version"].as_str().unwrap().to_string()
        };
        let (made, reopened) = (version_of(&dir), version_of(&later));
        assert_ne!(made, reopened);
        let mut buf = vec![0 as c_char; 65536];
        let status = lmbff_predictions_label_studio_json(pl, r, from.as_ptr(), to.as_ptr(), null(), buf.as_mut_ptr(), buf.len(), null_mut());
        assert_eq!(status, LMBFF_OK, "{}", last_error());
        let json = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        assert!(json.contains(&made) && !json.contains(&reopened), "{json}");
        lmbff_predictor_free(pl);
        // The predictor is still usable: that was the caller's mistake, not a bug.
        let mut r2: *mut lmbff_predictions = std::ptr::null_mut();
        assert_eq!(lmbff_predict(p3, [text.as_ptr()].as_ptr(), null(), 1, &mut r2), LMBFF_OK, "{}", last_error());
        lmbff_predictions_free(r2);
        lmbff_predictions_free(r);
        lmbff_predictor_free(p3);
        lmbff_predictor_free(p);
    }
}

/// An export is one self-contained folder: a manifest that names a file elsewhere (a
/// path with a folder, `..`, or an absolute path) is refused as malformed.
#[test]
fn export_manifests_name_files_inside_the_folder() {
    let src = std::path::PathBuf::from(exported().to_str().unwrap());
    let text = std::fs::read_to_string(src.join("lmbff-export.json")).unwrap();
    unsafe {
        for (i, (field, value)) in [("model", "../export/model.onnx"), ("tokenizer", "/etc/passwd"), ("model", "sub/model.onnx")].into_iter().enumerate() {
            let dir = common::tempdir(&format!("ffi-escape-{i}"));
            let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
            m[field]["file"] = value.into();
            std::fs::write(dir.join("lmbff-export.json"), m.to_string()).unwrap();
            let c = CString::new(dir.to_str().unwrap()).unwrap();
            let mut p: *mut lmbff_predictor = std::ptr::null_mut();
            assert_eq!(lmbff_predictor_open(c.as_ptr(), null(), &mut p), LMBFF_ERR_FORMAT, "{value}: {}", last_error());
            assert!(last_error().contains("not a plain file name inside the export directory") && last_error().contains(value), "{}", last_error());
        }
        // Settings that do not hold are malformed files too, named as such.
        let cases: [(&str, &dyn Fn(&mut serde_json::Value)); 3] = [
            ("max_len 100000 does not fit", &|m| m["truncation"]["max_len"] = 100_000.into()),
            ("at least two labels", &|m| {
                m["labels"] = serde_json::json!(["neg"]);
                m["label_words"] = serde_json::json!(["terrible"]);
            }),
            ("mask", &|m| m["template"]["parts"] = serde_json::json!([{"kind": "text", "text": "It was."}])),
        ];
        for (i, (want, f)) in cases.into_iter().enumerate() {
            let dir = common::tempdir(&format!("ffi-settings-{i}"));
            for file in std::fs::read_dir(&src).unwrap().flatten() {
                std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
            }
            let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
            f(&mut m);
            std::fs::write(dir.join("lmbff-export.json"), m.to_string()).unwrap();
            let c = CString::new(dir.to_str().unwrap()).unwrap();
            let mut p: *mut lmbff_predictor = std::ptr::null_mut();
            assert_eq!(lmbff_predictor_open(c.as_ptr(), null(), &mut p), LMBFF_ERR_FORMAT, "{want}: {}", last_error());
            assert!(last_error().contains(want) && last_error().contains("inconsistent"), "{want}: {}", last_error());
        }
    }
}

fn three_label_export() -> CString {
    labelled_export(&[("neg", "terrible"), ("mid", "fine"), ("pos", "great")], "ffi-three")
}

/// An export of the tiny BERT with these (label, word) pairs, into a new folder `name`.
fn labelled_export(words: &[(&str, &str)], name: &str) -> CString {
    let dir = common::fixtures().join("bert");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Verbalizer::new(&tok, &words.iter().map(|(l, w)| (l.to_string(), w.to_string())).collect::<Vec<_>>()).unwrap();
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 32, ..Default::default() }).unwrap();
    let out = common::tempdir(name).join("export");
    export(&MaskedLm::load(&dir, tch::Device::Cpu).unwrap(), &tok, &p, &lmbff::train::Demos::None, Default::default(), &out, &ExportOptions::default()).unwrap();
    CString::new(out.to_str().unwrap()).unwrap()
}

#[test]
fn bad_opens_and_null_frees() {
    let dir = exported();
    unsafe {
        let mut p: *mut lmbff_predictor = std::ptr::null_mut();
        let missing = CString::new("/nonexistent/export").unwrap();
        assert_eq!(lmbff_predictor_open(missing.as_ptr(), null(), &mut p), LMBFF_ERR_IO);
        assert!(last_error().contains("does not exist") && p.is_null());
        // A file is named as one; an export whose files do not hold is FORMAT, named.
        let plain = common::tempdir("ffi-a-file").join("export");
        std::fs::write(&plain, "not a folder").unwrap();
        let file = CString::new(plain.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_predictor_open(file.as_ptr(), null(), &mut p), LMBFF_ERR_IO);
        assert!(last_error().contains("this is a file, not the export directory"), "{}", last_error());
        let src = std::path::PathBuf::from(dir.to_str().unwrap());
        let broken = |name: &str, f: &dyn Fn(&std::path::Path)| {
            let d = common::tempdir(name).join("export");
            std::fs::create_dir_all(&d).unwrap();
            for e in std::fs::read_dir(&src).unwrap().map(Result::unwrap).filter(|e| e.path().is_file()) {
                std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
            }
            f(&d);
            CString::new(d.to_str().unwrap()).unwrap()
        };
        let cut = broken("ffi-cut-onnx", &|d| {
            let bytes = std::fs::read(d.join("model.onnx")).unwrap();
            std::fs::write(d.join("model.onnx"), &bytes[..bytes.len() / 3]).unwrap();
        });
        assert_eq!(lmbff_predictor_open(cut.as_ptr(), null(), &mut p), LMBFF_ERR_FORMAT, "{}", last_error());
        assert!(last_error().contains("cannot load it as an ONNX model"), "{}", last_error());
        let no_tok = broken("ffi-no-tokenizer", &|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
        assert_eq!(lmbff_predictor_open(no_tok.as_ptr(), null(), &mut p), LMBFF_ERR_FORMAT, "{}", last_error());
        assert!(last_error().contains("tokenizer.json"), "{}", last_error());
        assert!(p.is_null());
        assert_eq!(lmbff_predictor_open(null(), null(), &mut p), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), null(), std::ptr::null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        let mut params = lmbff_predictor_default_params();
        params.struct_size = 8;
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("struct_size"));
        // A larger one, from a newer header, is refused: its newer fields would go unread.
        #[repr(C)]
        struct Newer {
            params: lmbff_predictor_params,
            newer_field: u64,
        }
        let mut newer = Newer { params: lmbff_predictor_default_params(), newer_field: 1 };
        newer.params.struct_size = std::mem::size_of::<Newer>();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &newer.params, &mut p), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("newer lmbff.h") && newer.newer_field == 1, "{}", last_error());
        // Initialised in place: the defaults, struct_size the host's size; a size that is
        // no layout of the struct is refused and nothing is written.
        let mut init = std::mem::MaybeUninit::<lmbff_predictor_params>::uninit();
        assert_eq!(lmbff_predictor_params_init(init.as_mut_ptr(), std::mem::size_of::<lmbff_predictor_params>()), LMBFF_OK);
        let init = init.assume_init();
        let by_value = lmbff_predictor_default_params();
        assert_eq!((init.struct_size, init.threads, init.sessions, init.max_batch), (by_value.struct_size, by_value.threads, by_value.sessions, by_value.max_batch));
        // A batch past 4096 is refused: its buffers only grow (an allocation that fails
        // ends the process).
        let mut params = lmbff_predictor_default_params();
        params.max_batch = 4097;
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("max_batch 4097: a predictor runs at most 4096"), "{}", last_error());
        params.max_batch = 4096;
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), &params, &mut p), LMBFF_OK, "{}", last_error());
        lmbff_predictor_free(p);
        p = null_mut();
        let mut params = lmbff_predictor_default_params();
        params.sessions = 7;
        assert_eq!(lmbff_predictor_params_init(&mut params, 8), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("size 8 is no layout"), "{}", last_error());
        assert_eq!(params.sessions, 7);
        let empty_dir = common::tempdir("ffi-empty");
        let empty = CString::new(empty_dir.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_predictor_open(empty.as_ptr(), null(), &mut p), LMBFF_ERR_FORMAT);
        assert!(last_error().contains("lmbff-export.json"));
        lmbff_predictor_free(std::ptr::null_mut());
        lmbff_predictions_free(std::ptr::null_mut());
        assert_eq!(lmbff_predictor_num_labels(null()), 0);
        assert!(lmbff_has_training());
        assert_eq!(lmbff_abi_version(), LMBFF_ABI_VERSION);
    }
}

fn null_mut<T>() -> *mut T {
    std::ptr::null_mut()
}

/// The log queue: what a predictor logs is read back in order with its level, an
/// empty queue reads NULL, and bad levels, capacities and a NULL level are refused.
#[test]
fn log_queue_keeps_messages_for_the_host() {
    // A folder of its own: tests beside this one open theirs, and their messages reach
    // the queue too (only this folder's are counted).
    let dir = labelled_export(&[("neg", "terrible"), ("pos", "great")], "ffi-queue");
    let ours = format!("predictor opened {}:", dir.to_str().unwrap());
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    unsafe {
        let mut level = -1;
        while !lmbff_log_next(&mut level).is_null() {}
        assert_eq!(lmbff_set_log_queue(LMBFF_LOG_INFO, 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("capacity is 0"), "{}", last_error());
        assert_eq!(lmbff_set_log_queue(LMBFF_LOG_INFO, LMBFF_LOG_QUEUE_MAX + 1), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(lmbff_set_log_queue(7, 16), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("max_level is 7"), "{}", last_error());
        assert_eq!(lmbff_set_log_queue(LMBFF_LOG_INFO, 4096), LMBFF_OK);
        let mut p = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), null(), &mut p), LMBFF_OK);
        lmbff_predictor_free(p);
        assert!(lmbff_log_next(std::ptr::null_mut()).is_null(), "a NULL level reads nothing");
        let mut read = Vec::new();
        loop {
            let m = lmbff_log_next(&mut level);
            if m.is_null() {
                break;
            }
            read.push((level, CStr::from_ptr(m).to_string_lossy().into_owned()));
        }
        assert!(read.iter().any(|(l, m)| *l == LMBFF_LOG_INFO && m.starts_with(&ours)), "{read:?}");
        assert!(read.iter().all(|(l, _)| (LMBFF_LOG_ERROR..=LMBFF_LOG_INFO).contains(l)), "{read:?}");
        // A callback replaces the queue, and NULL stops both.
        assert_eq!(lmbff_set_log_callback(None, LMBFF_LOG_INFO, std::ptr::null_mut()), LMBFF_OK);
        let mut p = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), null(), &mut p), LMBFF_OK);
        lmbff_predictor_free(p);
        let mut after = Vec::new();
        loop {
            let m = lmbff_log_next(&mut level);
            if m.is_null() {
                break;
            }
            after.push(CStr::from_ptr(m).to_string_lossy().into_owned());
        }
        assert!(!after.iter().any(|m| m.starts_with(&ours)), "logging stopped: {after:?}");
    }
}

/// The export the child process of the next test opens (its parent's, made before the
/// child sets the callback).
static WAITER_EXPORT: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
static WAITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On ONNX Runtime's first message, opens a predictor on another thread and waits for it.
extern "C" fn wait_for_another_open(_level: i32, message: *const c_char, _user_data: *mut std::ffi::c_void) {
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    if !text.starts_with("ONNX Runtime:") || WAITED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let dir = WAITER_EXPORT.get().unwrap().clone();
    let opened = std::thread::spawn(move || unsafe {
        let mut p = std::ptr::null_mut();
        let status = lmbff_predictor_open(dir.as_ptr(), null(), &mut p);
        lmbff_predictor_free(p);
        status
    })
    .join()
    .unwrap();
    println!("the other open: {opened:?}");
}

/// A log callback may wait for threads that log (the header), also while ONNX Runtime
/// loads and sends its start-up messages: they are held back until the load's lock is
/// released. A callback that waited for another thread's predictor open waited forever,
/// that open waiting for the lock. Run in a child process: ONNX Runtime loads once a
/// process, and this test binary's other tests load it.
#[test]
fn a_log_callback_may_wait_for_an_open_while_onnx_runtime_loads() {
    const CHILD: &str = "LMBFF_TEST_ORT_LOAD_CHILD";
    if std::env::var_os(CHILD).is_none() {
        // The child reads this process's fixtures and export (made here, with ONNX Runtime
        // not yet loaded there): made again, they took most of its time limit on a busy
        // machine. Its output goes to a file, which no wait can fill.
        let log = common::tempdir("ffi-ort-load-child").join("output.txt");
        let file = std::fs::File::create(&log).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_log_callback_may_wait_for_an_open_while_onnx_runtime_loads", "--nocapture", "--test-threads", "1"])
            .env(CHILD, exported().to_str().unwrap())
            .env("LMBFF_FIXTURES", common::fixtures())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child process hung: the callback's wait for the other open never ended:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success() && text.contains("the other open: LMBFF_OK"), "{text}");
        return;
    }
    let dir = CString::new(std::env::var(CHILD).unwrap()).unwrap();
    WAITER_EXPORT.set(dir.clone()).unwrap();
    unsafe {
        assert_eq!(lmbff_set_log_callback(Some(wait_for_another_open), LMBFF_LOG_DEBUG, std::ptr::null_mut()), LMBFF_OK);
        let mut p = std::ptr::null_mut();
        assert_eq!(lmbff_predictor_open(dir.as_ptr(), null(), &mut p), LMBFF_OK, "{}", last_error());
        lmbff_predictor_free(p);
        lmbff_set_log_callback(None, LMBFF_LOG_ERROR, std::ptr::null_mut());
    }
    assert!(WAITED.load(std::sync::atomic::Ordering::SeqCst), "ONNX Runtime sent no message while it loaded");
}
