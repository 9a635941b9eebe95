//! Labelling tasks: registration, relabelling, removal and counts; a save/reopen round
//! trip; a task file written by lmbff 0.1.0 (format 1) still opens; the C ABI's task
//! calls, including bad arguments and two threads racing on one task.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};

use lmbff::ffi::lmbff_status::*;
use lmbff::ffi::*;
use lmbff::prompt::Truncation;
use lmbff::task::{Task, TaskSpec};

fn spec(model: &Path) -> TaskSpec {
    TaskSpec {
        model_dir: model.to_path_buf(),
        template: "{text} It was {mask}.".into(),
        labels: vec!["neg".into(), "pos".into()],
        label_words: vec!["terrible".into(), "great".into()],
        // The tiny fixture has 64 positions.
        truncation: Truncation { max_len: 64, ..Truncation::default() },
        multi_label: false,
        regression: None,
    }
}

#[test]
fn register_relabel_remove_and_round_trip() {
    let model = common::fixtures().join("bert");
    let mut t = Task::new(spec(&model)).unwrap();
    let a = t.add_example("a great ride", None, "pos").unwrap();
    let b = t.add_example("a dull ride", None, "neg").unwrap();
    let c = t.add_unlabeled("the music was slow", None).unwrap();
    assert_eq!((t.counts(), t.num_unlabeled()), (vec![1, 1], 1));
    assert!(t.add_example("x", None, "maybe").unwrap_err().to_string().contains("unknown label \"maybe\""));
    t.relabel(c, "neg").unwrap();
    t.relabel(a, "neg").unwrap();
    assert_eq!((t.counts(), t.num_unlabeled()), (vec![3, 0], 0));
    t.remove(b).unwrap();
    assert!(t.remove(b).unwrap_err().to_string().contains(&format!("no item with id {b}")));
    let d = t.add_unlabeled("a question", None).unwrap();
    assert!(d > c, "ids are never reused");

    let dir = common::tempdir("task").join("saved");
    t.save(&dir).unwrap();
    assert_eq!(Task::open(&dir).unwrap(), t);
    // Saving again replaces the directory as a whole.
    t.add_unlabeled("one more", None).unwrap();
    t.save(&dir).unwrap();
    assert_eq!(Task::open(&dir).unwrap().num_unlabeled(), 2);

    // Bad task definitions are refused when the task is made.
    // (A word outside the vocabulary encodes to the unknown token; multi-token words are valid.)
    let bad = TaskSpec { label_words: vec!["terrible".into(), "☃☃".into()], ..spec(&model) };
    let e = Task::new(bad).unwrap_err().to_string();
    assert!(e.contains("☃☃") && e.contains("not in the vocabulary"), "{e}");
    let shared = TaskSpec { label_words: vec!["terrible|great".into(), "great".into()], ..spec(&model) };
    assert!(Task::new(shared).unwrap_err().to_string().contains("also a word of label"));
    // A new task's template is kept without the space around it (a config file's newline
    // read as a token after the last separator).
    let spaced = Task::new(TaskSpec { template: " *cls**sent_0*_It_was*mask*.*sep+*\n".into(), ..spec(&model) }).unwrap();
    assert_eq!(spaced.spec().template, "*cls**sent_0*_It_was*mask*.*sep+*");
    let no_mask = TaskSpec { template: "{text} It was.".into(), ..spec(&model) };
    assert!(Task::new(no_mask).unwrap_err().to_string().contains("no mask"));
    // A model folder whose path is not UTF-8 is named: task.json records it as text (a
    // save failed as an internal error; a training run's model, after the training).
    use std::os::unix::ffi::OsStrExt;
    let latin1 = model.parent().unwrap().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    let e = Task::new(spec(&latin1)).unwrap_err();
    assert!(matches!(e, lmbff::Error::InvalidArgument(_)) && e.to_string().contains("its path is not valid UTF-8"), "{e}");
}

/// Two writers of one task folder never lose each other's labels: a handle whose folder
/// was saved by another since it opened it is refused (nothing written) and saves after
/// reopening; a new task is not saved over another's folder; handles saving at once from
/// several threads leave one whole file, the others told they conflict.
#[test]
fn a_save_never_replaces_what_it_has_not_seen() {
    let model = common::fixtures().join("bert");
    let dir = common::tempdir("task-conflict").join("t");
    let mut first = Task::new(spec(&model)).unwrap();
    first.add_example("a great ride", None, "pos").unwrap();
    first.save(&dir).unwrap();
    let mut a = Task::open(&dir).unwrap();
    let mut b = Task::open(&dir).unwrap();
    a.add_example("a dull ride", None, "neg").unwrap();
    a.save(&dir).unwrap();
    a.add_unlabeled("a later one", None).unwrap();
    a.save(&dir).unwrap();
    b.add_example("a slow ride", None, "neg").unwrap();
    let e = b.save(&dir).unwrap_err();
    assert!(matches!(e, lmbff::Error::Conflict(_)) && e.to_string().contains("reopen the task"), "{e}");
    let on_disk = Task::open(&dir).unwrap();
    assert_eq!(on_disk, a, "the refused save wrote nothing");
    // Reopened, the change applies on top of the other writer's.
    let mut b = Task::open(&dir).unwrap();
    b.add_example("a slow ride", None, "neg").unwrap();
    b.save(&dir).unwrap();
    assert_eq!(Task::open(&dir).unwrap().counts(), vec![2, 1], "neg: two, pos: one");
    // The first handle is now behind, and so is refused too.
    first.add_unlabeled("stale", None).unwrap();
    assert!(matches!(first.save(&dir), Err(lmbff::Error::Conflict(_))));
    // A task of its own is not saved over another task's folder.
    let mut other = Task::new(spec(&model)).unwrap();
    let e = other.save(&dir).unwrap_err().to_string();
    assert!(e.contains("already holds a task"), "{e}");
    assert_eq!(Task::open(&dir).unwrap(), b);
    // Nor over the versions a removed task.json left behind: they would be listed,
    // exported and warm-started from as the new task's own.
    let orphans = dir.parent().unwrap().join("orphans");
    std::fs::create_dir_all(orphans.join("models/v1")).unwrap();
    std::fs::write(orphans.join("models/v1/lmbff.json"), "{}").unwrap();
    std::fs::create_dir_all(orphans.join("models/.v2.deleted")).unwrap();
    std::fs::write(orphans.join("models/README"), "not a version").unwrap();
    let e = other.save(&orphans).unwrap_err().to_string();
    assert!(e.contains("whose task.json is gone (v1)"), "{e}");
    assert!(!orphans.join("task.json").exists());
    std::fs::remove_dir_all(orphans.join("models/v1")).unwrap();
    other.save(&orphans).unwrap();
    // The same folder reached by another path is the handle's own.
    let relative = dir.join("..").join("t");
    b.add_unlabeled("by another path", None).unwrap();
    b.save(&relative).unwrap();
    // A backup copy saved elsewhere keeps the first folder the handle's own, both ways,
    // and a writer that saves the first folder meanwhile is still caught.
    let backup = dir.parent().unwrap().join("backup");
    b.save(&backup).unwrap();
    b.add_unlabeled("after the backup", None).unwrap();
    b.save(&dir).unwrap();
    b.save(&backup).unwrap();
    let mut from_backup = Task::open(&backup).unwrap();
    from_backup.save(&dir.parent().unwrap().join("copy")).unwrap();
    from_backup.add_unlabeled("back in the backup", None).unwrap();
    from_backup.save(&backup).unwrap();
    b.add_unlabeled("behind the backup", None).unwrap();
    assert!(matches!(b.save(&backup), Err(lmbff::Error::Conflict(_))), "b has not seen from_backup's save");
    b.save(&dir).unwrap();

    // Six handles saving at once: whatever wins, the file is one of them, whole.
    let handles: Vec<Task> = (0..6)
        .map(|k| {
            let mut t = Task::open(&dir).unwrap();
            t.add_unlabeled(&format!("writer {k}"), None).unwrap();
            t
        })
        .collect();
    let results: Vec<(Task, lmbff::Result<()>)> = std::thread::scope(|s| {
        let runs: Vec<_> = handles
            .into_iter()
            .map(|mut t| {
                let d = dir.clone();
                s.spawn(move || {
                    let r = t.save(&d);
                    (t, r)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let saved: Vec<&Task> = results.iter().filter(|(_, r)| r.is_ok()).map(|(t, _)| t).collect();
    assert_eq!(saved.len(), 1, "exactly one of the handles saved (all read the same file)");
    for (_, r) in &results {
        assert!(matches!(r, Ok(()) | Err(lmbff::Error::Conflict(_))), "{r:?}");
    }
    assert_eq!(&Task::open(&dir).unwrap(), saved[0]);
    let stray: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.contains("tmp-")).collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");

    // Through the C ABI: the handle that is behind gets LMBFF_ERR_CONFLICT.
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    let text = CString::new("from C").unwrap();
    unsafe {
        let (mut a, mut b) = (null_mut(), null_mut());
        assert_eq!(lmbff_task_open(cdir.as_ptr(), &mut a), LMBFF_OK);
        assert_eq!(lmbff_task_open(cdir.as_ptr(), &mut b), LMBFF_OK);
        assert_eq!(lmbff_task_add_unlabeled(a, text.as_ptr(), null(), null_mut()), LMBFF_OK);
        assert_eq!(lmbff_task_save(a, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_task_add_unlabeled(b, text.as_ptr(), null(), null_mut()), LMBFF_OK);
        assert_eq!(lmbff_task_save(b, cdir.as_ptr()), LMBFF_ERR_CONFLICT);
        assert!(last_error().contains("was saved by another handle or process"), "{}", last_error());
        lmbff_task_free(a);
        lmbff_task_free(b);
    }
}

/// Writes tests/data/task-v1 with this version's code (run once per format version with
/// LMBFF_WRITE_TASK_FIXTURE=1; the committed file then stays as the old format's sample).
#[test]
fn write_format_fixture_when_asked() {
    if std::env::var_os("LMBFF_WRITE_TASK_FIXTURE").is_none() {
        return;
    }
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    t.add_example("a great ride", None, "pos").unwrap();
    t.add_example("a dull ride", None, "neg").unwrap();
    t.add_example("i loved this book", None, "pos").unwrap();
    // (The committed sample, from 0.1.0, also holds a second sentence on this
    // single-sentence task, which tasks now refuse when added; old files keep it.)
    t.add_unlabeled("an unlabeled first sentence", None).unwrap();
    let dir = common::root().join("tests/data/task-v1");
    t.save(&dir).unwrap();
    // The model path of this machine is not part of the sample.
    let file = dir.join("task.json");
    let text = std::fs::read_to_string(&file).unwrap().replace(common::fixtures().join("bert").to_str().unwrap(), "models/some-bert");
    std::fs::write(&file, text).unwrap();
}

/// A task file written by lmbff 0.1.0 (tests/data/task-v1) opens with what it holds;
/// a file from a newer format is refused with a clear message.
#[test]
fn reads_format_1_files_and_refuses_newer_ones() {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    // Its model folder (models/some-bert) is not on this machine: the task opens, and the
    // log says training will need it.
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    lmbff::log::set_sink(Some(lmbff::log::Sink {
        max: lmbff::log::Level::Warn,
        write: Box::new(|_, m| WARNED.lock().unwrap().push(m.to_string())),
    }));
    let t = Task::open(&common::root().join("tests/data/task-v1")).unwrap();
    lmbff::log::set_sink(None);
    assert!(WARNED.lock().unwrap().iter().any(|m| m.contains("models/some-bert has no config.json")), "{:?}", WARNED.lock().unwrap());
    assert_eq!(t.spec().labels, ["neg", "pos"]);
    assert_eq!(t.counts(), [1, 2]);
    assert_eq!(t.num_unlabeled(), 1);
    assert_eq!(t.item(4).unwrap().text_b.as_deref(), Some("and a second sentence"));
    // That pair under a one-sentence template stays unlabeled text: labelled, it would be
    // an example whose second sentence training ignores (and add_example refuses).
    let mut relabelled = t.clone();
    let e = relabelled.relabel(4, "pos").unwrap_err().to_string();
    assert!(e.contains("item 4 cannot be an example") && e.contains("would be ignored"), "{e}");
    assert_eq!(relabelled, t, "nothing changed");
    let dir = common::tempdir("task-newer");
    let text = std::fs::read_to_string(common::root().join("tests/data/task-v1/task.json")).unwrap();
    std::fs::write(dir.join("task.json"), text.replace("\"format_version\": 1", "\"format_version\": 4")).unwrap();
    assert!(Task::open(&dir).unwrap_err().to_string().contains("task format version 4; this lmbff (0.1.0) reads versions 1 to 3"));
}

/// `truncation.demonstrations_first` survives an older lmbff's save, which drops a field
/// it does not know: true, the rule every task is made with, is not written and is what
/// a file without it reads as; false is written at format version 3, which older
/// readers refuse.
#[test]
fn the_demonstrations_first_rule_survives_older_readers() {
    let dir = common::tempdir("task-truncation");
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    t.add_example("a great ride", None, "pos").unwrap();
    t.save(&dir).unwrap();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("task.json")).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1, "{file}");
    assert_eq!(file["spec"]["truncation"], serde_json::json!({"max_len": 64, "first_sent_limit": null, "other_sent_limit": null}));
    assert!(Task::open(&dir).unwrap().spec().truncation.demonstrations_first);
    // The v1 sample, from before the field, trains with the rule of today.
    assert!(Task::open(&common::root().join("tests/data/task-v1")).unwrap().spec().truncation.demonstrations_first);

    let other = common::tempdir("task-truncation-false");
    let mut s = spec(&common::fixtures().join("bert"));
    s.truncation.demonstrations_first = false;
    let mut t = Task::new(s).unwrap();
    t.add_example("a great ride", None, "pos").unwrap();
    t.save(&other).unwrap();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(other.join("task.json")).unwrap()).unwrap();
    assert_eq!((file["format_version"].as_u64(), file["spec"]["truncation"]["demonstrations_first"].as_bool()), (Some(3), Some(false)), "{file}");
    assert!(!Task::open(&other).unwrap().spec().truncation.demonstrations_first);
}

/// A task saved to (or opened from) a relative folder keeps it absolute: the version
/// calls that read it later follow no change of the current directory.
#[test]
fn a_relative_task_folder_is_kept_absolute() {
    let tmp = common::tempdir("task-relative");
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let rel = std::path::PathBuf::from(up).join(tmp.strip_prefix("/").unwrap()).join("task");
    assert!(rel.is_relative());
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    t.save(&rel).unwrap();
    let same = |d: Option<&std::path::Path>| {
        let d = d.unwrap();
        d.is_absolute() && std::fs::canonicalize(d).unwrap() == std::fs::canonicalize(tmp.join("task")).unwrap()
    };
    assert!(same(t.dir()), "{:?}", t.dir());
    let t = Task::open(&rel).unwrap();
    assert!(same(t.dir()), "{:?}", t.dir());
}

/// A task whose folder was deleted since it was saved is refused before any training:
/// the run made the folder anew, holding its version alone.
#[test]
fn a_deleted_task_folder_is_not_made_anew() {
    let dir = common::tempdir("task-deleted").join("task");
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    t.add_example("the movie was fun", None, "pos").unwrap();
    t.add_example("the movie was boring", None, "neg").unwrap();
    t.save(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let p = lmbff::task::RunParams { method: lmbff::task::TrainMethod::Prompt, steps: 1, ..Default::default() };
    let err = lmbff::task::train(&t, &p, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("no longer holds its task.json"), "{err}");
    assert!(!dir.exists(), "the folder was not made again");
}

/// The tests that set the process's one log sink: one at a time.
static LOG_SINK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Versions follow the folder last saved to: a save elsewhere that leaves versions
/// behind says so (a backup copy used to move them silently); one that leaves only
/// deleted versions' tombstones and half-written versions behind does not.
#[test]
fn a_save_that_leaves_versions_behind_says_so() {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let root = common::tempdir("task-versions-follow");
    let saved_elsewhere_warns = |entries: &[&str], to: &str| {
        let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
        let first = root.join(format!("{to}-first"));
        t.save(&first).unwrap();
        for e in entries {
            std::fs::create_dir_all(first.join("models").join(e)).unwrap();
        }
        WARNED.lock().unwrap().clear();
        lmbff::log::set_sink(Some(lmbff::log::Sink { max: lmbff::log::Level::Warn, write: Box::new(|_, m| WARNED.lock().unwrap().push(m.to_string())) }));
        t.save(&root.join(to)).unwrap();
        lmbff::log::set_sink(None);
        let warned = WARNED.lock().unwrap();
        warned.iter().any(|m| m.contains("model versions now follow") && m.contains(to))
    };
    assert!(saved_elsewhere_warns(&["v1"], "backup"));
    assert!(saved_elsewhere_warns(&[".v1.deleted", "v2"], "backup-2"));
    assert!(!saved_elsewhere_warns(&[".v1.deleted", ".v2.lmbff-tmp-1-0"], "moved"));
    assert!(!saved_elsewhere_warns(&[], "moved-2"));
    // The warning goes out with the folder's lock released: the callback may call lmbff,
    // a save to that very folder included (it waited for itself forever).
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    let first = root.join("reentrant-first");
    t.save(&first).unwrap();
    std::fs::create_dir_all(first.join("models/v1")).unwrap();
    let to = root.join("reentrant");
    let other = std::sync::Mutex::new(Task::new(spec(&common::fixtures().join("bert"))).unwrap());
    let (said, heard) = std::sync::mpsc::channel();
    let into = to.clone();
    lmbff::log::set_sink(Some(lmbff::log::Sink {
        max: lmbff::log::Level::Warn,
        write: Box::new(move |_, m| {
            if m.contains("now follow") {
                // Refused (that folder holds another handle's task now), but it returns.
                let _ = said.send(other.lock().unwrap().save(&into).is_err());
            }
        }),
    }));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(t.save(&to).is_ok()));
    let saved = finished.recv_timeout(std::time::Duration::from_secs(60));
    lmbff::log::set_sink(None);
    assert_eq!(saved, Ok(true), "the save returns");
    assert_eq!(heard.try_recv(), Ok(true), "the callback's own save returned");
}

/// A task freed from a log callback inside a call on it is freed when that call returns
/// (it was freed under the call, which then unlocked freed memory); calls on it from
/// inside are BUSY, named as this thread's own, and after the free as freed.
#[test]
fn a_task_freed_inside_its_own_call_goes_when_the_call_returns() {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::tempdir("task-freed-inside");
    static SEEN: std::sync::Mutex<Vec<(lmbff_status, String)>> = std::sync::Mutex::new(Vec::new());
    unsafe {
        let t = abi_task(&["bad", "good"], &["terrible", "great"], 0, (0.0, 1.0));
        let first = CString::new(root.join("first").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_save(t, first.as_ptr()), LMBFF_OK, "{}", last_error());
        std::fs::create_dir_all(root.join("first/models/v1")).unwrap();
        let raw = t as usize;
        lmbff::log::set_sink(Some(lmbff::log::Sink {
            max: lmbff::log::Level::Warn,
            write: Box::new(move |_, m| {
                if m.contains("now follow") {
                    let t = raw as *mut lmbff_task;
                    let text = CString::new("still here").unwrap();
                    let status = lmbff_task_add_unlabeled(t, text.as_ptr(), null(), null_mut());
                    SEEN.lock().unwrap().push((status, last_error()));
                    lmbff_task_free(t);
                    let status = lmbff_task_add_unlabeled(t, text.as_ptr(), null(), null_mut());
                    SEEN.lock().unwrap().push((status, last_error()));
                }
            }),
        }));
        let second = CString::new(root.join("second").to_str().unwrap()).unwrap();
        let saved = lmbff_task_save(t, second.as_ptr());
        lmbff::log::set_sink(None);
        assert_eq!(saved, LMBFF_OK, "{}", last_error());
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].0 == LMBFF_ERR_BUSY && seen[0].1.contains("already in a call on this thread"), "{:?}", seen[0]);
        assert!(seen[1].0 == LMBFF_ERR_BUSY && seen[1].1.contains("was freed from a log callback inside a call on it"), "{:?}", seen[1]);
    }
    assert!(root.join("second/task.json").is_file());
}

/// A cancel that comes after the run saved its version (here from the log callback that
/// hears of the save, after every progress report) still cancels the run, once: it
/// ends CANCELLED and the version is gone, its number kept.
#[test]
fn a_cancel_heard_after_the_save_cancels_the_run() {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = common::tempdir("cancel-after-save-abi").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        let t = abi_task(&["neg", "pos"], &["terrible", "great"], 0, (0.0, 1.0));
        for (text, label) in [("a great ride", "pos"), ("the movie was fun", "pos"), ("a dull ride", "neg"), ("the movie was boring", "neg")] {
            add(t, text, label);
        }
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        // This run's save only (another test's runs log theirs to the same sink).
        let ours = format!("saved model version v1 in {}", dir.display());
        lmbff::log::set_sink(Some(lmbff::log::Sink {
            max: lmbff::log::Level::Info,
            write: Box::new(move |_, m| {
                let run = RUN.load(std::sync::atomic::Ordering::SeqCst);
                if m == ours && run != 0 {
                    assert_eq!(lmbff_run_cancel(run as *const lmbff_run), LMBFF_OK);
                }
            }),
        }));
        let mut tp = cpu_params(2);
        tp.method = LMBFF_METHOD_PROMPT;
        let mut run = null_mut();
        assert_eq!(lmbff_train_start(t, &tp, None, null_mut(), &mut run), LMBFF_OK, "{}", last_error());
        RUN.store(run as usize, std::sync::atomic::Ordering::SeqCst);
        let status = lmbff_run_wait(run);
        lmbff::log::set_sink(None);
        RUN.store(0, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status, LMBFF_ERR_CANCELLED, "{}", last_error());
        assert_eq!(versions(t), "");
        assert!(dir.join("models/.v1.deleted").exists(), "the number is kept");
        lmbff_run_free(run);
        lmbff_task_free(t);
    }
}

/// A task freed from a thread-local's destructor, after lmbff's own thread-locals on that
/// thread are gone (they go first: registered after it), is freed (the free read them
/// and panicked across the C ABI, which aborts the process; a C++ global or
/// thread_local lmbff::Task does this at exit).
#[test]
fn a_task_freed_after_the_threads_locals_are_gone() {
    struct FreeAtExit(usize);
    impl Drop for FreeAtExit {
        fn drop(&mut self) {
            unsafe { lmbff_task_free(self.0 as *mut lmbff_task) };
        }
    }
    thread_local! {
        static HELD: std::cell::RefCell<Option<FreeAtExit>> = const { std::cell::RefCell::new(None) };
    }
    let exited = std::thread::spawn(|| unsafe {
        HELD.with(|h| h.borrow().is_none());
        let t = abi_task(&["bad", "good"], &["terrible", "great"], 0, (0.0, 1.0));
        let text = CString::new("a call before the exit").unwrap();
        assert_eq!(lmbff_task_add_unlabeled(t, text.as_ptr(), null(), null_mut()), LMBFF_OK, "{}", last_error());
        HELD.with(|h| *h.borrow_mut() = Some(FreeAtExit(t as usize)));
    })
    .join();
    assert!(exited.is_ok());
}

/// An export does not take the task: with another thread inside a call on it (a save
/// held in its log callback), lmbff_task_export and lmbff_task_export_with_error go on
/// (they were LMBFF_ERR_BUSY, as any call racing another), while a call that takes the
/// task is BUSY. The task is saved back to `dir` after.
unsafe fn export_while_another_call_holds_the_task(t: *mut lmbff_task, dir: &Path, version: &CStr) {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    let (inside, held) = std::sync::mpsc::channel::<()>();
    let (release, go) = std::sync::mpsc::channel::<()>();
    let go = std::sync::Mutex::new(go);
    lmbff::log::set_sink(Some(lmbff::log::Sink {
        max: lmbff::log::Level::Warn,
        write: Box::new(move |_, m| {
            if m.contains("now follow") {
                let _ = inside.send(());
                let _ = go.lock().unwrap().recv_timeout(std::time::Duration::from_secs(60));
            }
        }),
    }));
    let backup = CString::new(dir.with_file_name("task-backup").to_str().unwrap()).unwrap();
    let task = t as usize;
    let saver = std::thread::spawn(move || lmbff_task_save(task as *mut lmbff_task, backup.as_ptr()));
    let seen = held.recv_timeout(std::time::Duration::from_secs(60));
    let text = CString::new("held").unwrap();
    let busy = lmbff_task_add_unlabeled(t, text.as_ptr(), null(), null_mut());
    let out = CString::new(dir.with_file_name("export-while-held").to_str().unwrap()).unwrap();
    let exported = lmbff_task_export(t, version.as_ptr(), out.as_ptr(), false);
    let message = last_error();
    let mut error = vec![0 as c_char; 4160];
    let exported_too = lmbff_task_export_with_error(t, version.as_ptr(), out.as_ptr(), false, error.as_mut_ptr(), error.len());
    let _ = release.send(());
    let saved = saver.join().unwrap();
    lmbff::log::set_sink(None);
    assert_eq!(seen, Ok(()), "the save logged its warning");
    assert_eq!(busy, LMBFF_ERR_BUSY, "the save holds the task");
    assert_eq!(exported, LMBFF_OK, "{message}");
    assert_eq!(exported_too, LMBFF_OK, "{}", CStr::from_ptr(error.as_ptr()).to_string_lossy());
    assert_eq!(saved, LMBFF_OK);
    let back = CString::new(dir.to_str().unwrap()).unwrap();
    assert_eq!(lmbff_task_save(t, back.as_ptr()), LMBFF_OK, "{}", last_error());
}

/// A task freed from a log callback inside an export of one of its versions (which does
/// not take the task) goes when the export returns: a call on it from the callback
/// meanwhile is BUSY, named so, and the export ends OK. (It was freed at once, under the
/// export, and the call read freed memory.)
unsafe fn export_freeing_the_task_inside(t: *mut lmbff_task, dir: &Path, version: &CStr) {
    let _one = LOG_SINK.lock().unwrap_or_else(|e| e.into_inner());
    static SEEN: std::sync::Mutex<Vec<(lmbff_status, String)>> = std::sync::Mutex::new(Vec::new());
    // An earlier export a crash left moved aside: the export puts it back, and says so.
    let out = dir.with_file_name("export-freeing");
    let aside = dir.with_file_name(".export-freeing.lmbff-old-999999999-0");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::write(aside.join(lmbff::export::EXPORT_MANIFEST), "{}").unwrap();
    let raw = t as usize;
    lmbff::log::set_sink(Some(lmbff::log::Sink {
        max: lmbff::log::Level::Warn,
        write: Box::new(move |_, m| {
            if m.contains("it is back in its place") {
                let t = raw as *mut lmbff_task;
                lmbff_task_free(t);
                let text = CString::new("after the free").unwrap();
                let status = lmbff_task_add_unlabeled(t, text.as_ptr(), null(), null_mut());
                SEEN.lock().unwrap().push((status, last_error()));
            }
        }),
    }));
    let cout = CString::new(out.to_str().unwrap()).unwrap();
    let exported = lmbff_task_export(t, version.as_ptr(), cout.as_ptr(), false);
    let message = last_error();
    lmbff::log::set_sink(None);
    assert_eq!(exported, LMBFF_OK, "{message}");
    assert!(out.join(lmbff::export::EXPORT_MANIFEST).is_file());
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.len(), 1, "the export put the earlier one back");
    assert_eq!(seen[0].0, LMBFF_ERR_BUSY);
    assert!(seen[0].1.contains("was freed from a log callback inside a call on it"), "{}", seen[0].1);
}

/// The task's versions as lmbff_task_versions lists them.
unsafe fn versions(t: *mut lmbff_task) -> String {
    let mut list = vec![0 as c_char; 4096];
    assert_eq!(lmbff_task_versions(t, list.as_mut_ptr(), list.len(), null_mut()), LMBFF_OK, "{}", last_error());
    CStr::from_ptr(list.as_ptr()).to_string_lossy().into_owned()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(lmbff_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn tasks_through_the_c_abi() {
    let model = CString::new(common::fixtures().join("bert").to_str().unwrap()).unwrap();
    let names = [CString::new("neg").unwrap(), CString::new("pos").unwrap()];
    let words = [CString::new("terrible").unwrap(), CString::new("great").unwrap()];
    let name_ptrs: Vec<*const c_char> = names.iter().map(|s| s.as_ptr()).collect();
    let word_ptrs: Vec<*const c_char> = words.iter().map(|s| s.as_ptr()).collect();
    unsafe {
        let mut p = lmbff_task_default_params();
        p.model_dir = model.as_ptr();
        p.max_len = 64;
        p.labels = name_ptrs.as_ptr();
        p.label_words = word_ptrs.as_ptr();
        p.num_labels = 2;
        let mut t = null_mut();
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_task_num_labels(t), 2);
        assert_eq!(CStr::from_ptr(lmbff_task_label(t, 0)).to_str().unwrap(), "neg");
        let (text, pos, odd) = (CString::new("a great ride").unwrap(), CString::new("pos").unwrap(), CString::new("odd").unwrap());
        let mut id = 0u64;
        assert_eq!(lmbff_task_add_example(t, text.as_ptr(), null(), pos.as_ptr(), &mut id), LMBFF_OK);
        assert_eq!(lmbff_task_add_example(t, text.as_ptr(), null(), odd.as_ptr(), &mut id), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("unknown label"));
        assert_eq!(lmbff_task_add_unlabeled(t, text.as_ptr(), null(), &mut id), LMBFF_OK);
        let (mut n, mut free) = (0usize, 0usize);
        assert_eq!(lmbff_task_counts(t, 1, &mut n, &mut free), LMBFF_OK);
        assert_eq!((n, free), (1, 1));
        assert_eq!(lmbff_task_counts(t, 2, &mut n, null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(lmbff_task_relabel(t, id, pos.as_ptr()), LMBFF_OK);
        assert_eq!(lmbff_task_remove(t, 999), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("999"));
        let bad = [0x61u8, 0xfe, 0];
        assert_eq!(lmbff_task_add_unlabeled(t, bad.as_ptr().cast(), null(), null_mut()), LMBFF_ERR_UTF8);

        // Two threads racing on one task: each call succeeds or is refused as BUSY;
        // nothing is lost or corrupted.
        let addr = t as usize;
        let ok: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(move || {
                        let text = CString::new("racing").unwrap();
                        let mut ok = 0;
                        for _ in 0..2000 {
                            match lmbff_task_add_unlabeled(addr as *mut lmbff_task, text.as_ptr(), null(), null_mut()) {
                                LMBFF_OK => ok += 1,
                                LMBFF_ERR_BUSY => {}
                                other => panic!("unexpected status {other:?}"),
                            }
                        }
                        ok
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(lmbff_task_counts(t, 0, null_mut(), &mut free), LMBFF_OK);
        assert_eq!(free, ok, "every accepted call registered exactly one text");

        let dir = common::tempdir("ffi-task").join("t");
        let cdir = CString::new(dir.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let mut back = null_mut();
        assert_eq!(lmbff_task_open(cdir.as_ptr(), &mut back), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_task_counts(back, 1, &mut n, &mut free), LMBFF_OK);
        assert_eq!((n, free), (2, ok));
        lmbff_task_free(back);
        lmbff_task_free(t);
        lmbff_task_free(null_mut());

        p.num_labels = 0;
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("at least two labels"), "{}", last_error());
        assert!(t.is_null());
        // So named with no label words either (lmbff.hpp passes none for no labels).
        let words = p.label_words;
        p.label_words = null();
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("at least two labels"), "{}", last_error());
        p.label_words = words;
        // A model folder that is not one (a mistyped path) is a model error, as the
        // header says, naming what it looked for.
        p.num_labels = 2;
        let nowhere = CString::new(dir.join("no-such-model").to_str().unwrap()).unwrap();
        p.model_dir = nowhere.as_ptr();
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_ERR_MODEL, "{}", last_error());
        assert!(last_error().contains("no-such-model"), "{}", last_error());
        assert!(t.is_null());
    }
}

extern "C" fn count_steps(_stage: i32, step: usize, total: usize, loss: f64, _metric: f64, user_data: *mut std::ffi::c_void) -> bool {
    let seen = unsafe { &mut *(user_data as *mut Vec<(usize, usize, f64)>) };
    seen.push((step, total, loss));
    true
}

extern "C" fn record_progress(stage: i32, step: usize, total: usize, loss: f64, metric: f64, user_data: *mut std::ffi::c_void) -> bool {
    let seen = unsafe { &mut *(user_data as *mut Vec<(i32, usize, usize, f64, f64)>) };
    seen.push((stage, step, total, loss, metric));
    true
}

extern "C" fn stop_at_5(_stage: i32, step: usize, _total: usize, _loss: f64, _metric: f64, _user_data: *mut std::ffi::c_void) -> bool {
    step < 5
}

/// Counts progress reports, and those that came after the host's cancel returned.
#[derive(Default)]
struct AfterCancel {
    calls: std::sync::atomic::AtomicUsize,
    cancelled: std::sync::atomic::AtomicBool,
    late: std::sync::atomic::AtomicUsize,
}

extern "C" fn note_after_cancel(_stage: i32, _step: usize, _total: usize, _loss: f64, _metric: f64, user_data: *mut std::ffi::c_void) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    let s = unsafe { &*(user_data as *const AfterCancel) };
    if s.cancelled.load(SeqCst) {
        s.late.fetch_add(1, SeqCst);
    }
    s.calls.fetch_add(1, SeqCst);
    true
}

/// What `on_self` saw: the run (set once started), and the status its own wait (or its
/// nested lmbff_train on `train_task`) returned, with the message.
#[derive(Default)]
struct SelfCall {
    run: std::sync::atomic::AtomicPtr<lmbff_run>,
    free: bool,
    train_task: std::sync::atomic::AtomicPtr<lmbff_task>,
    status: std::sync::Mutex<Option<(lmbff_status, String)>>,
    done: std::sync::atomic::AtomicBool,
}

/// A progress callback that waits on (or frees) its own run, once the run is known, or
/// trains its task again synchronously.
extern "C" fn on_self(_stage: i32, _step: usize, _total: usize, _loss: f64, _metric: f64, user_data: *mut std::ffi::c_void) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    let s = unsafe { &*(user_data as *const SelfCall) };
    let run = s.run.load(SeqCst);
    if run.is_null() || s.done.load(SeqCst) {
        return !s.done.load(SeqCst);
    }
    let task = s.train_task.load(SeqCst);
    if s.free {
        unsafe { lmbff_run_free(run) };
    } else if !task.is_null() {
        let status = unsafe { lmbff_train(task, &lmbff_train_default_params(), None, null_mut(), null_mut(), 0) };
        *s.status.lock().unwrap() = Some((status, last_error()));
    } else {
        *s.status.lock().unwrap() = Some((unsafe { lmbff_run_wait(run) }, last_error()));
    }
    s.done.store(true, SeqCst);
    false
}

/// The annotation-tool loop through the C ABI on the tiny BERT: register, save, train
/// with progress (a version), stop from the callback and cancel an asynchronous run
/// (no version), warm-start a second version, list and delete versions, export one and
/// predict with it.
#[test]
fn train_versions_and_export_through_the_c_abi() {
    let model = CString::new(common::fixtures().join("bert").to_str().unwrap()).unwrap();
    let names = [CString::new("neg").unwrap(), CString::new("pos").unwrap()];
    let words = [CString::new("terrible").unwrap(), CString::new("great").unwrap()];
    let name_ptrs: Vec<*const c_char> = names.iter().map(|s| s.as_ptr()).collect();
    let word_ptrs: Vec<*const c_char> = words.iter().map(|s| s.as_ptr()).collect();
    let dir = common::tempdir("train-abi").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        lmbff_set_torch_threads(1);
        let mut p = lmbff_task_default_params();
        p.model_dir = model.as_ptr();
        p.labels = name_ptrs.as_ptr();
        p.label_words = word_ptrs.as_ptr();
        p.num_labels = 2;
        p.max_len = 32;
        let mut t = null_mut();
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_OK, "{}", last_error());
        for (text, label) in [("the movie was fun", "pos"), ("i loved this book", "pos"), ("a great ride", "pos"),
                              ("the movie was boring", "neg"), ("i hated this book", "neg"), ("a dull ride", "neg")] {
            let (text, label) = (CString::new(text).unwrap(), CString::new(label).unwrap());
            assert_eq!(lmbff_task_add_example(t, text.as_ptr(), null(), label.as_ptr(), null_mut()), LMBFF_OK);
        }
        let mut tp = lmbff_train_default_params();
        tp.steps = 60;
        tp.batch_size = 4;
        tp.learning_rate = 3e-3;
        tp.device = LMBFF_DEVICE_CPU;
        tp.method = LMBFF_METHOD_PROMPT;
        let mut version = [0 as c_char; 16];
        // Not saved yet: no place for versions.
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("save the task"));
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());

        let mut seen: Vec<(usize, usize, f64)> = Vec::new();
        let ud = &mut seen as *mut _ as *mut std::ffi::c_void;
        assert_eq!(lmbff_train(t, &tp, Some(count_steps), ud, version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(version.as_ptr()).to_str().unwrap(), "v1");
        assert_eq!(seen.len(), 60, "one report per step");
        assert_eq!((seen[59].0, seen[59].1), (60, 60));
        assert!(seen[59].2 < seen[9].2, "the loss (mean of 10 steps) fell: {} -> {}", seen[9].2, seen[59].2);

        // Stopped by the callback, and cancelled from this thread: no version either way.
        assert_eq!(lmbff_train(t, &tp, Some(stop_at_5), null_mut(), null_mut(), 0), LMBFF_ERR_CANCELLED);
        let mut run = null_mut();
        tp.steps = 100_000;
        assert_eq!(lmbff_train_start(t, &tp, None, null_mut(), &mut run), LMBFF_OK);
        let mut state = -1;
        assert_eq!(lmbff_run_poll(run, &mut state, null_mut(), null_mut()), LMBFF_OK);
        assert_eq!(lmbff_run_cancel(run), LMBFF_OK);
        assert_eq!(lmbff_run_wait(run), LMBFF_ERR_CANCELLED);
        assert_eq!(lmbff_run_poll(run, &mut state, null_mut(), null_mut()), LMBFF_OK);
        assert_eq!(state, LMBFF_RUN_CANCELLED);
        assert!(lmbff_run_version(run).is_null());
        lmbff_run_free(run);

        // Once lmbff_run_cancel has returned, the progress callback is not called again
        // (a host may free what its user_data points to): it was, at the next step.
        let after = AfterCancel::default();
        let ud = &after as *const AfterCancel as *mut std::ffi::c_void;
        assert_eq!(lmbff_train_start(t, &tp, Some(note_after_cancel), ud, &mut run), LMBFF_OK);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while after.calls.load(SeqCst) < 2 {
            // A run that ended or stalled before two reports fails here, not by hanging.
            let mut state = -1;
            lmbff_run_poll(run, &mut state, null_mut(), null_mut());
            if state != LMBFF_RUN_RUNNING || std::time::Instant::now() >= until {
                // The run's callback reads `after`: the run ends before the panic frees it.
                let message = last_error();
                lmbff_run_cancel(run);
                lmbff_run_wait(run);
                lmbff_run_free(run);
                panic!("state {state} before two progress reports: {message}");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(lmbff_run_cancel(run), LMBFF_OK);
        after.cancelled.store(true, SeqCst);
        assert_eq!(lmbff_run_wait(run), LMBFF_ERR_CANCELLED);
        assert_eq!(after.late.load(SeqCst), 0, "progress reported after the cancel returned");
        lmbff_run_free(run);

        // A run queued behind another (runs in one process train one at a time) is
        // cancelled while it waits, at once, not when the first run ends.
        let (mut first, mut queued) = (null_mut(), null_mut());
        assert_eq!(lmbff_train_start(t, &tp, None, null_mut(), &mut first), LMBFF_OK);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(lmbff_train_start(t, &tp, None, null_mut(), &mut queued), LMBFF_OK);
        let asked = std::time::Instant::now();
        assert_eq!(lmbff_run_cancel(queued), LMBFF_OK);
        assert_eq!(lmbff_run_wait(queued), LMBFF_ERR_CANCELLED);
        assert!(asked.elapsed() < std::time::Duration::from_secs(5), "the queued run took {:?} to stop", asked.elapsed());
        let mut first_state = -1;
        assert_eq!(lmbff_run_poll(first, &mut first_state, null_mut(), null_mut()), LMBFF_OK);
        assert_eq!(first_state, LMBFF_RUN_RUNNING, "the first run ({} steps) was still going", tp.steps);
        lmbff_run_free(queued);
        lmbff_run_free(first);

        // The run's own callback waits on it: refused at once (joining itself aborted the
        // process, or waited forever behind another waiter); freeing it from there
        // cancels it and lets its thread end.
        use std::sync::atomic::Ordering::SeqCst;
        for free in [false, true] {
            // Leaked: the freed run's thread may outlive this loop.
            let me: &'static SelfCall = Box::leak(Box::new(SelfCall { free, ..Default::default() }));
            let mut run = null_mut();
            assert_eq!(lmbff_train_start(t, &tp, Some(on_self), me as *const SelfCall as *mut _, &mut run), LMBFF_OK);
            me.run.store(run, SeqCst);
            if free {
                let started = std::time::Instant::now();
                while !me.done.load(SeqCst) {
                    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the callback never ran");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                // The run's thread ends by itself; the next run waits its turn behind it.
                continue;
            }
            assert_eq!(lmbff_run_wait(run), LMBFF_ERR_CANCELLED);
            assert_eq!(me.status.lock().unwrap().as_ref().map(|s| s.0), Some(LMBFF_ERR_INVALID_ARGUMENT));
            lmbff_run_free(run);
        }
        // A synchronous train from a run's callback would wait for the run it is called
        // from (the process trains one run at a time): refused at once, nothing started.
        let me: &'static SelfCall = Box::leak(Box::new(SelfCall::default()));
        me.train_task.store(t, SeqCst);
        let versions_before = versions(t);
        let mut run = null_mut();
        assert_eq!(lmbff_train_start(t, &tp, Some(on_self), me as *const SelfCall as *mut _, &mut run), LMBFF_OK);
        me.run.store(run, SeqCst);
        assert_eq!(lmbff_run_wait(run), LMBFF_ERR_CANCELLED, "the callback stopped its run");
        let (status, message) = me.status.lock().unwrap().clone().expect("the callback ran");
        assert_eq!(status, LMBFF_ERR_INVALID_ARGUMENT);
        assert!(message.contains("lmbff_train called from a run's progress or log callback"), "{message}");
        assert_eq!(versions(t), versions_before, "no version from either run");
        lmbff_run_free(run);

        // Warm start from v1 gives v2; bad settings are named.
        tp.steps = 4;
        let v1 = CString::new("v1").unwrap();
        tp.warm_start = v1.as_ptr();
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(version.as_ptr()).to_str().unwrap(), "v2");
        tp.device = 7;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.device is 7"));
        tp.device = LMBFF_DEVICE_CPU;
        tp.method = 9;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.method is 9"));
        tp.method = LMBFF_METHOD_SENTENCE_EMBEDDING;
        tp.demonstrations = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("demonstrations need the prompt method"), "{}", last_error());
        tp.demonstrations = false;

        // The sentence-embedding method: v3, exported and served; its notes say why.
        tp.warm_start = null();
        tp.learning_rate = 1e-3;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(version.as_ptr()).to_str().unwrap(), "v3");
        let v3 = dir.join("models/v3/lmbff.json");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&v3).unwrap()).unwrap();
        assert_eq!((m["method"].as_str(), m["notes"]["method_reason"].as_str()), (Some("sentence-embedding"), Some("asked for")));
        // Label anchors by default: the template's text with each label word.
        assert_eq!(m["notes"]["label_anchors"], serde_json::json!(["It was terrible.", "It was great."]), "{m}");
        let m_v3_steps = m["notes"]["steps"].as_u64().unwrap();
        assert!(m_v3_steps > 3 && m["notes"].get("steps_capped_from").is_none(), "{m}");
        let out3 = CString::new(dir.parent().unwrap().join("export-v3").to_str().unwrap()).unwrap();
        let c3 = CString::new("v3").unwrap();
        assert_eq!(lmbff_task_export(t, c3.as_ptr(), out3.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let mut pred = null_mut();
        assert_eq!(lmbff_predictor_open(out3.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
        let texts = [CString::new("a great ride").unwrap(), CString::new("a dull ride").unwrap()];
        let ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
        let mut r = null_mut();
        assert_eq!(lmbff_predict(pred, ptrs.as_ptr(), null(), 2, &mut r), LMBFF_OK);
        let mut labels = [9u32; 2];
        for (i, l) in labels.iter_mut().enumerate() {
            assert_eq!(lmbff_predictions_get(r, i, l, null_mut(), null_mut()), LMBFF_OK);
        }
        assert_eq!(labels, [1, 0], "the sentence-embedding model labels training examples right");
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);
        assert_eq!(lmbff_task_delete_version(t, c3.as_ptr()), LMBFF_OK);
        // Without anchors (SetFit as published): none recorded.
        tp.disable_label_anchors = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let plain = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        // A deleted version's name is never given again: v3's folder stays, emptied.
        assert_eq!(plain.to_str().unwrap(), "v4");
        assert_eq!(std::fs::read_dir(dir.join("models/.v3.deleted")).unwrap().count(), 0);
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(plain.to_str().unwrap()).join("lmbff.json")).unwrap()).unwrap();
        assert_eq!(m["notes"]["label_anchors"].as_array().map(Vec::len), Some(0), "{m}");
        assert!(m["rendering"].as_str().is_some_and(|r| r.starts_with("fnv1a:")), "a version records how its prompt rendered: {m}");
        assert_eq!(lmbff_task_delete_version(t, plain.as_ptr()), LMBFF_OK);
        tp.disable_label_anchors = false;
        // The default cap (2000 steps) leaves a small task's schedule whole; a lower one
        // trains the first steps of the same shuffled pairs, and the notes say so.
        let full = m_v3_steps;
        assert_eq!(tp.embedding_max_steps, 2000);
        tp.embedding_max_steps = 3;
        let mut seen: Vec<(i32, usize, usize, f64, f64)> = Vec::new();
        assert_eq!(lmbff_train(t, &tp, Some(record_progress), &mut seen as *mut _ as *mut std::ffi::c_void, version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let capped = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(capped.to_str().unwrap()).join("lmbff.json")).unwrap()).unwrap();
        assert_eq!((m["notes"]["steps"].as_u64(), m["notes"]["steps_capped_from"].as_u64(), m["notes"]["pairs"].as_u64()), (Some(3), Some(full), Some(3 * 16)), "{m}");
        let train: Vec<(usize, usize)> = seen.iter().filter(|s| s.0 == LMBFF_STAGE_TRAIN).map(|s| (s.1, s.2)).collect();
        assert_eq!(train, [(1, 3), (2, 3), (3, 3)], "progress counts the capped schedule");
        assert_eq!(lmbff_task_delete_version(t, capped.as_ptr()), LMBFF_OK);
        // A host built before the field: what lies past num_anchor_templates is not read.
        tp.struct_size = std::mem::offset_of!(lmbff_train_params, embedding_max_steps);
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let old = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(old.to_str().unwrap()).join("lmbff.json")).unwrap()).unwrap();
        assert_eq!((m["notes"]["steps"].as_u64(), m["notes"].get("steps_capped_from")), (Some(full), None), "the default cap, not 3: {m}");
        assert_eq!(lmbff_task_delete_version(t, old.as_ptr()), LMBFF_OK);
        tp.struct_size = std::mem::size_of::<lmbff_train_params>();
        tp.embedding_max_steps = 2000;
        // Further anchor templates: their texts join the task template's.
        let extra = [CString::new("{text} A truly {mask} movie.").unwrap(), CString::new("*cls**sent_0*_So*mask*.*sep+*").unwrap()];
        let extra_ptrs: Vec<*const c_char> = extra.iter().map(|s| s.as_ptr()).collect();
        tp.anchor_templates = extra_ptrs.as_ptr();
        tp.num_anchor_templates = 2;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let more = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(more.to_str().unwrap()).join("lmbff.json")).unwrap()).unwrap();
        let want = ["It was terrible.", "It was great.", "A truly terrible movie.", "A truly great movie.", "So terrible.", "So great."];
        assert_eq!(m["notes"]["label_anchors"], serde_json::json!(want), "{m}");
        assert_eq!(lmbff_task_delete_version(t, more.as_ptr()), LMBFF_OK);
        // ... and are refused, before any training, with anchors off, a pair template or
        // a NULL entry.
        tp.disable_label_anchors = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("label anchors turned off"), "{}", last_error());
        tp.disable_label_anchors = false;
        let bad = [CString::new("{text_a} ? {mask} , {text_b}").unwrap()];
        let bad_ptrs: Vec<*const c_char> = bad.iter().map(|s| s.as_ptr()).collect();
        tp.anchor_templates = bad_ptrs.as_ptr();
        tp.num_anchor_templates = 1;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("reads two sentences"), "{}", last_error());
        tp.anchor_templates = null();
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.anchor_templates is NULL"), "{}", last_error());
        tp.num_anchor_templates = 0;

        // Auto on a model with a masked-LM head decides by the zero-shot test and says so.
        tp.method = LMBFF_METHOD_AUTO;
        tp.steps = 2;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let v = CStr::from_ptr(version.as_ptr()).to_str().unwrap().to_string();
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(&v).join("lmbff.json")).unwrap()).unwrap();
        let reason = m["notes"]["method_reason"].as_str().unwrap();
        assert!(reason.contains("zero-shot") && reason.contains("binomial p"), "{reason}");
        let cv = CString::new(v).unwrap();
        assert_eq!(lmbff_task_delete_version(t, cv.as_ptr()), LMBFF_OK);

        // Similarity-filtered demonstrations through the ABI, ranked by the task's model:
        // the version records the filter, its export carries the encoder and predicts.
        tp.method = LMBFF_METHOD_PROMPT;
        tp.demo_filter = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.demo_filter needs params.demonstrations"), "{}", last_error());
        // An empty encoder folder is named (it was taken against the directory of the
        // run's load); NULL is the task's model.
        let empty = CString::new("").unwrap();
        (tp.demonstrations, tp.demo_filter_model) = (true, empty.as_ptr());
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.demo_filter_model is empty"), "{}", last_error());
        (tp.demonstrations, tp.demo_filter_model) = (false, null());
        // A host built before demo_filter passes the older size: what lies past its
        // fields (here demo_filter = true, in its trailing padding) is not read.
        let old_size = std::mem::offset_of!(lmbff_train_params, demo_filter).next_multiple_of(8);
        assert!(old_size < std::mem::size_of::<lmbff_train_params>());
        tp.struct_size = old_size;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let old = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        assert_eq!(lmbff_task_delete_version(t, old.as_ptr()), LMBFF_OK);
        // A size that is no layout (old_size - 8 is one, the layout before `method`).
        tp.struct_size = old_size - 4;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.struct_size"), "{}", last_error());
        // The init function writes only the bytes the host says it has: an earlier
        // layout's host keeps what lies past them; an unknown size or NULL is refused.
        let mut raw = [0xabu8; std::mem::size_of::<lmbff_train_params>() + 8];
        let raw_p = raw.as_mut_ptr().cast::<lmbff_train_params>();
        assert_eq!(lmbff_train_params_init(raw_p, old_size), LMBFF_OK, "{}", last_error());
        assert!(raw[old_size..].iter().all(|&b| b == 0xab), "bytes past the host's {old_size} were written");
        let got = std::ptr::read_unaligned(raw_p.cast::<usize>());
        assert_eq!(got, old_size, "struct_size is the host's size");
        assert_eq!(lmbff_train_params_init(raw_p, std::mem::size_of::<lmbff_train_params>()), LMBFF_OK);
        let full = std::ptr::read_unaligned(raw_p);
        let by_value = lmbff_train_default_params();
        assert_eq!((full.struct_size, full.steps, full.learning_rate, full.method), (by_value.struct_size, by_value.steps, by_value.learning_rate, by_value.method));
        assert_eq!(raw[std::mem::size_of::<lmbff_train_params>()..], [0xab; 8]);
        // Every layout a header has had (before demonstrations, method, demo_filter,
        // calibrate, anchor_templates, embedding_max_steps; the full one) is known to the
        // init function and to lmbff_train_start, which reads it.
        let sizes = [
            std::mem::offset_of!(lmbff_train_params, demonstrations),
            std::mem::offset_of!(lmbff_train_params, method),
            old_size,
            std::mem::offset_of!(lmbff_train_params, calibrate),
            std::mem::offset_of!(lmbff_train_params, anchor_templates),
            std::mem::offset_of!(lmbff_train_params, embedding_max_steps),
            std::mem::size_of::<lmbff_train_params>(),
        ];
        for size in sizes {
            assert_eq!(lmbff_train_params_init(raw_p, size), LMBFF_OK, "size {size}: {}", last_error());
            let mut run = null_mut();
            assert_eq!(lmbff_train_start(t, raw_p, None, null_mut(), &mut run), LMBFF_OK, "size {size}: {}", last_error());
            assert_eq!(lmbff_run_cancel(run), LMBFF_OK);
            let _ = lmbff_run_wait(run);
            lmbff_run_free(run);
        }
        assert_eq!(lmbff_train_params_init(raw_p, 20), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("size 20 is no layout"), "{}", last_error());
        assert_eq!(lmbff_train_params_init(null_mut(), std::mem::size_of::<lmbff_train_params>()), LMBFF_ERR_INVALID_ARGUMENT);
        let mut tparams = std::mem::MaybeUninit::<lmbff_task_params>::uninit();
        assert_eq!(lmbff_task_params_init(tparams.as_mut_ptr(), std::mem::size_of::<lmbff_task_params>()), LMBFF_OK);
        assert_eq!(tparams.assume_init().max_len, lmbff_task_default_params().max_len);
        // A host built before anchor_templates: the fields past disable_label_anchors
        // (here a NULL list said to hold 3 templates) are not read.
        tp.demo_filter = false;
        tp.struct_size = std::mem::offset_of!(lmbff_train_params, anchor_templates);
        (tp.anchor_templates, tp.num_anchor_templates) = (null(), 3);
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let old = CString::new(CStr::from_ptr(version.as_ptr()).to_bytes()).unwrap();
        assert_eq!(lmbff_task_delete_version(t, old.as_ptr()), LMBFF_OK);
        tp.num_anchor_templates = 0;
        tp.demo_filter = true;
        tp.struct_size = std::mem::size_of::<lmbff_train_params>();
        tp.demonstrations = true;
        tp.demo_sets = 2;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let v = CStr::from_ptr(version.as_ptr()).to_str().unwrap().to_string();
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models").join(&v).join("lmbff.json")).unwrap()).unwrap();
        assert_eq!((m["format_version"].as_u64(), m["demo_filter"]["sets"].as_u64()), (Some(9), Some(2)), "{m}");
        assert_eq!(m["demo_filter"]["encoder"].as_str(), model.to_str().ok(), "NULL demo_filter_model: the task's model");
        // With demonstrations a one-sentence task reads twice its max_len (32), as LM-BFF
        // doubles it, at most the model's 64 positions; its export reads the same.
        assert_eq!(m["truncation"]["max_len"].as_u64(), Some(64), "{m}");
        let cv = CString::new(v).unwrap();
        let outf = CString::new(dir.parent().unwrap().join("export-filter").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_export(t, cv.as_ptr(), outf.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.parent().unwrap().join("export-filter/lmbff-export.json")).unwrap()).unwrap();
        assert_eq!(e["demonstrations"]["filter"]["pool"].as_array().map(Vec::len), Some(6));
        assert_eq!(e["truncation"]["max_len"].as_u64(), Some(64), "{e}");
        let mut pred = null_mut();
        assert_eq!(lmbff_predictor_open(outf.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
        let texts = [CString::new("a great ride").unwrap(), CString::new("a dull ride").unwrap()];
        let ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
        let mut r = null_mut();
        assert_eq!(lmbff_predict(pred, ptrs.as_ptr(), null(), 2, &mut r), LMBFF_OK, "{}", last_error());
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);
        assert_eq!(lmbff_task_delete_version(t, cv.as_ptr()), LMBFF_OK);

        let mut list = [0 as c_char; 64];
        let mut needed = 0usize;
        assert_eq!(lmbff_task_versions(t, list.as_mut_ptr(), 64, &mut needed), LMBFF_OK);
        assert_eq!(CStr::from_ptr(list.as_ptr()).to_str().unwrap(), "v1\nv2");
        assert_eq!(lmbff_task_versions(t, list.as_mut_ptr(), 2, &mut needed), LMBFF_ERR_INVALID_ARGUMENT);
        assert_eq!(needed, 6);

        let out = CString::new(dir.parent().unwrap().join("export").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), out.as_ptr(), false), LMBFF_OK, "{}", last_error());
        export_while_another_call_holds_the_task(t, &dir, &v1);
        let mut pred = null_mut();
        assert_eq!(lmbff_predictor_open(out.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
        let texts = [CString::new("a great ride").unwrap()];
        let ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
        let mut r = null_mut();
        assert_eq!(lmbff_predict(pred, ptrs.as_ptr(), null(), 1, &mut r), LMBFF_OK);
        let mut label = 9u32;
        assert_eq!(lmbff_predictions_get(r, 0, &mut label, null_mut(), null_mut()), LMBFF_OK);
        assert_eq!(label, 1, "the trained model labels a training example right");
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);

        assert_eq!(lmbff_task_delete_version(t, v1.as_ptr()), LMBFF_OK);
        assert_eq!(lmbff_task_delete_version(t, v1.as_ptr()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("no model version v1"));
        assert_eq!(lmbff_task_versions(t, list.as_mut_ptr(), 64, null_mut()), LMBFF_OK);
        assert_eq!(CStr::from_ptr(list.as_ptr()).to_str().unwrap(), "v2");
        export_freeing_the_task_inside(t, &dir, &CString::new("v2").unwrap());
    }
}

/// The automatic method choice follows its documented test, never the model's name: a
/// checkpoint without a masked-LM head (the default MiniLM) gets the sentence-embedding
/// method; with adaptation asked for, the zero-shot test decides (a multi-label task takes
/// the yes/no prompt); demonstrations mean the prompt method; an explicit method wins.
#[test]
fn auto_method_follows_the_documented_test() {
    use lmbff::prompt::Example;
    use lmbff::task::{choose_method, RunParams, TrainMethod};
    common::one_thread();
    let dir = common::default_model();
    let model = lmbff::model::MaskedLm::load(&dir, tch::Device::Cpu).unwrap();
    let tok = lmbff::tokenize::Tokenizer::from_dir(&dir).unwrap();
    let prompt = spec(&dir).prompt().unwrap();
    let ex: Vec<Example> = [("a wonderful, moving film", 1), ("dull and far too long", 0), ("great fun", 1), ("a mess", 0)]
        .iter()
        .map(|&(t, l)| Example::single(t, Some(l)))
        .collect();
    let choose = |p: &RunParams| choose_method(&model, &tok, &prompt, &ex, false, p, &mut |_| true).unwrap();
    let (m, why) = choose(&RunParams::default());
    assert_eq!(m, TrainMethod::SentenceEmbedding);
    assert!(why.contains("no masked-LM head"), "{why}");
    // 4 examples can never beat chance at p < 0.05 (4/4 right: p = 1/16).
    let (m, why) = choose(&RunParams { adaptation_steps: 10, ..Default::default() });
    assert_eq!(m, TrainMethod::SentenceEmbedding);
    assert!(why.contains("zero-shot") && why.contains("no better than chance"), "{why}");
    assert!(why.contains("(chance 50%"), "{why}");
    // Imbalanced examples: chance is the largest class's share (a head that answers one
    // word everywhere would beat 1/labels).
    let imbalanced: Vec<Example> = ex.iter().cloned().chain((0..4).map(|i| Example::single(format!("a fine film, part {i}"), Some(1)))).collect();
    let (_, why) = choose_method(&model, &tok, &prompt, &imbalanced, false, &RunParams { adaptation_steps: 10, ..Default::default() }, &mut |_| true).unwrap();
    assert!(why.contains("(chance 75%"), "{why}");
    // The zero-shot pass reports its chunks, and a cancel between them is taken.
    let mut calls = 0;
    let cancelled = choose_method(&model, &tok, &prompt, &ex, false, &RunParams { adaptation_steps: 10, ..Default::default() }, &mut |p| {
        calls += 1;
        assert_eq!(p.stage, lmbff::train::Stage::Evaluate);
        false
    });
    assert!(matches!(cancelled, Err(lmbff::Error::Cancelled)) && calls == 1, "{calls} calls: {cancelled:?}");
    assert_eq!(choose(&RunParams { demonstrations: true, ..Default::default() }).0, TrainMethod::Prompt);
    assert_eq!(choose(&RunParams { method: TrainMethod::Prompt, ..Default::default() }), (TrainMethod::Prompt, "asked for".to_string()));
    // A multi-label task: heads without a masked-LM head, the yes/no prompt with one.
    let choose_multi = |p: &RunParams| choose_method(&model, &tok, &prompt, &ex, true, p, &mut |_| true).unwrap();
    assert_eq!(choose_multi(&RunParams::default()).0, TrainMethod::SentenceEmbedding);
    let (m, why) = choose_multi(&RunParams { adaptation_steps: 10, ..Default::default() });
    assert_eq!(m, TrainMethod::Prompt);
    assert!(why.contains("one yes/no prompt per label"), "{why}");
    assert_eq!(choose_multi(&RunParams { demonstrations: true, ..Default::default() }).0, TrainMethod::Prompt);
}

/// A multi-label task through the C ABI: labels separated by `|` (empty: none), the
/// counts per label, a round trip through task.json (format 2), training by both methods
/// (auto picks the prompt method on a checkpoint with a masked-LM head: one yes/no prompt
/// per label; the sentence-embedding method, asked for, a yes/no head per label,
/// calibrated on dev examples), export and a multi-label predictor for each; bad labels
/// and pairs are named; a host built before `flags` gets a classification task.
#[test]
fn multi_label_tasks_through_the_c_abi() {
    let model = CString::new(common::fixtures().join("bert").to_str().unwrap()).unwrap();
    let names = [CString::new("music").unwrap(), CString::new("acting").unwrap(), CString::new("story").unwrap()];
    let name_ptrs: Vec<*const c_char> = names.iter().map(|s| s.as_ptr()).collect();
    let dir = common::tempdir("multi-abi").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        lmbff_set_torch_threads(1);
        let mut p = lmbff_task_default_params();
        p.model_dir = model.as_ptr();
        p.labels = name_ptrs.as_ptr();
        p.num_labels = 3;
        p.max_len = 40;
        p.flags = LMBFF_TASK_MULTI_LABEL;
        let mut t = null_mut();
        // A multi-label task may ask about one label (a yes/no question), not none.
        p.num_labels = 1;
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_OK, "{}", last_error());
        lmbff_task_free(t);
        p.num_labels = 0;
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("a multi-label task needs at least one label"), "{}", last_error());
        p.num_labels = 3;
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_OK, "{}", last_error());
        let mut ids = Vec::new();
        for (text, labels) in [
            ("the music was bright", "music"),
            ("the acting was bad and the music was slow", "acting|music"),
            ("the story was long", "story"),
            ("the acting was great", "acting"),
            ("the story was fun and the acting was good", "story|acting"),
            ("i liked it", ""),
            ("the music and the story were dull", "music|story"),
            ("the acting was flat", "acting"),
        ] {
            let (text, labels) = (CString::new(text).unwrap(), CString::new(labels).unwrap());
            let mut id = 0u64;
            assert_eq!(lmbff_task_add_example(t, text.as_ptr(), null(), labels.as_ptr(), &mut id), LMBFF_OK, "{}", last_error());
            ids.push(id);
        }
        let (mut n, mut free) = (0usize, 0usize);
        assert_eq!(lmbff_task_counts(t, 1, &mut n, &mut free), LMBFF_OK);
        assert_eq!((n, free), (4, 0), "acting applies to four examples");
        let (x, bad) = (CString::new("x").unwrap(), CString::new("music|plot").unwrap());
        assert_eq!(lmbff_task_add_example(t, x.as_ptr(), null(), bad.as_ptr(), null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("unknown label \"plot\""), "{}", last_error());
        assert_eq!(lmbff_task_add_example(t, x.as_ptr(), x.as_ptr(), names[0].as_ptr(), null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("single texts"), "{}", last_error());
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("task.json")).unwrap()).unwrap();
        assert_eq!((file["format_version"].as_u64(), file["spec"]["multi_label"].as_bool()), (Some(2), Some(true)));
        assert_eq!(file["items"][1]["label_set"], serde_json::json!([0, 1]));
        assert_eq!(Task::open(&dir).unwrap().counts(), vec![3, 4, 3]);

        let mut tp = lmbff_train_default_params();
        tp.steps = 4;
        tp.batch_size = 4;
        tp.learning_rate = 1e-3;
        tp.device = LMBFF_DEVICE_CPU;
        let mut version = [0 as c_char; 16];
        tp.method = LMBFF_METHOD_AUTO;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        // The sentence-embedding method, calibrated on two dev examples.
        for &id in &ids[6..] {
            assert_eq!(lmbff_task_set_dev(t, id, true), LMBFF_OK);
        }
        tp.method = LMBFF_METHOD_SENTENCE_EMBEDDING;
        tp.calibrate = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let manifest = |v: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join(format!("models/{v}/lmbff.json"))).unwrap()).unwrap() };
        let (m1, m2) = (manifest("v1"), manifest("v2"));
        for m in [&m1, &m2] {
            assert_eq!(m["multi_label"], serde_json::json!(["music", "acting", "story"]));
        }
        assert!(m1["notes"]["method_reason"].as_str().unwrap().contains("yes/no prompt per label"));
        assert_eq!((m2["method"].as_str(), m2["format_version"].as_u64()), (Some("sentence-embedding"), Some(7)));
        assert_eq!(m2["classifier"]["weight"].as_array().unwrap().len(), 6, "a yes/no head per label");
        assert_eq!(m2["notes"]["label_anchors"], serde_json::json!(["music", "acting", "story"]), "the labels' names are the anchors");
        let f1 = m2["notes"]["dev_micro_f1"].as_f64().expect("the dev pairs' micro-F1");
        assert!((0.0..=1.0).contains(&f1), "{f1}");
        assert!(m2["temperature"].as_f64().is_some(), "calibrated on the dev examples");
        // Dev examples as the host counts them (two), not their yes/no pairs (six).
        assert_eq!(m2["notes"]["dev_examples"].as_u64(), Some(2), "{}", m2["notes"]);
        assert_eq!((m2["notes"]["calibration"]["dev_examples"].as_u64(), m2["notes"]["calibration"]["dev_rows"].as_u64()), (Some(2), Some(6)));
        // The prompt method keeps the weights with the best micro-F1 of the dev pairs
        // (mostly "no": accuracy would favour answering "no" throughout).
        tp.method = LMBFF_METHOD_PROMPT;
        tp.calibrate = false;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        assert_eq!(manifest("v3")["notes"]["dev_metric"], "micro-f1");
        let v3 = CString::new("v3").unwrap();
        assert_eq!(lmbff_task_delete_version(t, v3.as_ptr()), LMBFF_OK);
        let text = CString::new("the acting and the story were good").unwrap();
        let mut probs_of = Vec::new();
        for v in ["v1", "v2"] {
            let out = CString::new(dir.parent().unwrap().join(format!("export-{v}")).to_str().unwrap()).unwrap();
            let v = CString::new(v).unwrap();
            assert_eq!(lmbff_task_export(t, v.as_ptr(), out.as_ptr(), false), LMBFF_OK, "{}", last_error());
            let mut pred = null_mut();
            assert_eq!(lmbff_predictor_open(out.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
            assert!(lmbff_predictor_multi_label(pred));
            // Its prompt reads the label's name as a second sentence; the host passes one text.
            assert!(!lmbff_predictor_reads_pairs(pred) && !lmbff_predictor_regression(pred, null_mut(), null_mut()));
            assert_eq!(lmbff_predictor_num_labels(pred), 3);
            assert_eq!(CStr::from_ptr(lmbff_predictor_label(pred, 2)).to_str().unwrap(), "story");
            let mut r = null_mut();
            assert_eq!(lmbff_predict(pred, &text.as_ptr(), null(), 1, &mut r), LMBFF_OK, "{}", last_error());
            let mut probs = [0f32; 3];
            assert_eq!(lmbff_predictions_probs(r, 0, probs.as_mut_ptr(), 3), LMBFF_OK);
            assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{probs:?}");
            for l in 0..3 {
                let mut applies = false;
                assert_eq!(lmbff_predictions_applies(r, 0, l, &mut applies), LMBFF_OK);
                assert_eq!(applies, probs[l] >= 0.5, "label {l}: {probs:?}");
            }
            probs_of.push(probs);
            lmbff_predictions_free(r);
            lmbff_predictor_free(pred);
        }
        assert_ne!(probs_of[0], probs_of[1], "two methods, two models");
        lmbff_task_free(t);

        // A host built before `flags` passes the older size: flags is not read, so this
        // is a classification task; unknown flags are refused.
        p.flags = 4;
        assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("params.flags"), "{}", last_error());
        p.flags = LMBFF_TASK_MULTI_LABEL;
        let words = [CString::new("bad").unwrap(), CString::new("good").unwrap(), CString::new("fun").unwrap()];
        let word_ptrs: Vec<*const c_char> = words.iter().map(|s| s.as_ptr()).collect();
        p.label_words = word_ptrs.as_ptr();
        p.template_ = null();
        // A host built before regression_low: its flags are read (multi-label here).
        p.struct_size = std::mem::offset_of!(lmbff_task_params, regression_low);
        let mut multi = null_mut();
        assert_eq!(lmbff_task_create(&p, &mut multi), LMBFF_OK, "{}", last_error());
        let set = CString::new("music|acting").unwrap();
        assert_eq!(lmbff_task_add_example(multi, x.as_ptr(), null(), set.as_ptr(), null_mut()), LMBFF_OK, "multi-label: `|` separates labels: {}", last_error());
        lmbff_task_free(multi);
        p.struct_size = std::mem::offset_of!(lmbff_task_params, flags);
        let mut old = null_mut();
        assert_eq!(lmbff_task_create(&p, &mut old), LMBFF_OK, "{}", last_error());
        let pair_ok = lmbff_task_add_example(old, x.as_ptr(), null(), names[0].as_ptr(), null_mut());
        assert_eq!(pair_ok, LMBFF_OK);
        assert_eq!(lmbff_task_add_example(old, x.as_ptr(), null(), bad.as_ptr(), null_mut()), LMBFF_ERR_INVALID_ARGUMENT, "`|` is no separator there");
        lmbff_task_free(old);
    }
}

/// A task made through the C ABI over the tiny BERT fixture (inputs up to 32 tokens) with
/// `flags` (and, for a regression task, its range).
unsafe fn abi_task(labels: &[&str], words: &[&str], flags: u64, range: (f32, f32)) -> *mut lmbff_task {
    lmbff_set_torch_threads(1);
    let model = CString::new(common::fixtures().join("bert").to_str().unwrap()).unwrap();
    let cstrings = |v: &[&str]| -> Vec<CString> { v.iter().map(|s| CString::new(*s).unwrap()).collect() };
    let (names, words) = (cstrings(labels), cstrings(words));
    let name_ptrs: Vec<*const c_char> = names.iter().map(|s| s.as_ptr()).collect();
    let word_ptrs: Vec<*const c_char> = words.iter().map(|s| s.as_ptr()).collect();
    let mut p = lmbff_task_default_params();
    p.model_dir = model.as_ptr();
    p.labels = name_ptrs.as_ptr();
    p.label_words = word_ptrs.as_ptr();
    p.num_labels = labels.len();
    p.max_len = 32;
    p.flags = flags;
    (p.regression_low, p.regression_high) = range;
    let mut t = null_mut();
    assert_eq!(lmbff_task_create(&p, &mut t), LMBFF_OK, "{}", last_error());
    t
}

/// Registers a labelled example; returns its id.
unsafe fn add(t: *mut lmbff_task, text: &str, label: &str) -> u64 {
    let (text, label) = (CString::new(text).unwrap(), CString::new(label).unwrap());
    let mut id = 0u64;
    assert_eq!(lmbff_task_add_example(t, text.as_ptr(), null(), label.as_ptr(), &mut id), LMBFF_OK, "{}", last_error());
    id
}

/// Training settings for the tiny fixture on CPU.
fn cpu_params(steps: u32) -> lmbff_train_params {
    let mut tp = lmbff_train_default_params();
    tp.steps = steps;
    tp.batch_size = 4;
    tp.learning_rate = 1e-3;
    tp.device = LMBFF_DEVICE_CPU;
    tp
}

/// Dev examples and calibration through the C ABI: dev examples are held out of training
/// and counted apart; with calibrate, the version holds the temperature fitted on them
/// (and its dev ECE before and after), and its export divides the logits by it.
#[test]
fn dev_examples_and_calibration_through_the_c_abi() {
    let dir = common::tempdir("calibrate-abi").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        let t = abi_task(&["neg", "pos"], &["terrible", "great"], 0, (0.0, 1.0));
        let ids: Vec<u64> = [("the movie was fun", "pos"), ("i loved this book", "pos"), ("a great ride", "pos"), ("the music was bright", "pos"),
                             ("the movie was boring", "neg"), ("i hated this book", "neg"), ("a dull ride", "neg"), ("the music was slow", "neg")]
            .iter()
            .map(|(text, label)| add(t, text, label))
            .collect();
        let free = CString::new("no label yet").unwrap();
        let mut unl = 0u64;
        assert_eq!(lmbff_task_add_unlabeled(t, free.as_ptr(), null(), &mut unl), LMBFF_OK);
        assert_eq!(lmbff_task_set_dev(t, unl, true), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("only labelled examples"), "{}", last_error());
        for &id in &[ids[3], ids[7]] {
            assert_eq!(lmbff_task_set_dev(t, id, true), LMBFF_OK);
        }
        assert_eq!(lmbff_task_num_dev(t), 2);
        let mut n = 0usize;
        assert_eq!(lmbff_task_counts(t, 1, &mut n, null_mut()), LMBFF_OK);
        assert_eq!(n, 3, "dev examples are not training examples");
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK);
        assert_eq!(Task::open(&dir).unwrap().num_dev(), 2, "dev marks survive a save");

        let mut tp = cpu_params(10);
        tp.method = LMBFF_METHOD_PROMPT;
        tp.calibrate = true;
        let mut version = [0 as c_char; 16];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models/v1/lmbff.json")).unwrap()).unwrap();
        assert!(m["rendering"].as_str().is_some_and(|r| r.starts_with("fnv1a:")), "{m}");
        let fitted = m["notes"]["calibration"]["temperature"].as_f64().expect("a fitted temperature");
        assert!((0.05..=20.0).contains(&fitted), "{m}");
        assert_eq!(m["notes"]["calibration"]["dev_examples"].as_u64(), Some(2));
        assert_eq!(m["notes"]["dev_examples"].as_u64(), Some(2));
        // Two dev examples all right (or all wrong) leave no finite temperature: noted,
        // and not applied (the model and its export keep their own probabilities).
        let dev_right = m["notes"]["best_dev_metric"].as_f64();
        let warned = m["notes"].get("calibration_warning").is_some();
        println!("dev accuracy {dev_right:?}, calibration warning {warned}");
        if dev_right.is_some_and(|acc| acc == 0.0 || acc == 1.0) {
            assert!(warned, "{m}");
        }
        assert_eq!(m["notes"]["calibration"]["applied"].as_bool(), Some(!warned), "{m}");
        if warned {
            // The version's ECE: no temperature was applied, so after is before.
            assert_eq!(m["notes"]["calibration"]["dev_ece_after"], m["notes"]["calibration"]["dev_ece_before"], "{m}");
        }
        assert_eq!(m["temperature"].as_f64(), (!warned).then_some(fitted), "{m}");
        assert!(m["notes"]["best_step"].as_u64().unwrap().is_multiple_of(2), "dev every fifth of 10 steps");
        let out = CString::new(dir.parent().unwrap().join("export").to_str().unwrap()).unwrap();
        let v1 = CString::new("v1").unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), out.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.parent().unwrap().join("export/lmbff-export.json")).unwrap()).unwrap();
        match m["temperature"].as_f64() {
            Some(t) => assert!((e["temperature"].as_f64().unwrap() - t).abs() < 1e-5, "{e}"),
            None => assert!(e.get("temperature").is_none_or(|t| t.is_null()), "an unsupported temperature was exported: {e}"),
        }

        // The sentence-embedding method selects nothing on dev (one schedule) but is
        // scored on it: the notes and one evaluation in the progress say how it did. Its
        // training loss is reported from the tenth step on (it was NaN but at every tenth).
        tp.method = LMBFF_METHOD_SENTENCE_EMBEDDING;
        tp.calibrate = false;
        let mut seen: Vec<(i32, usize, usize, f64, f64)> = Vec::new();
        assert_eq!(lmbff_train(t, &tp, Some(record_progress), &mut seen as *mut _ as *mut std::ffi::c_void, version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models/v2/lmbff.json")).unwrap()).unwrap();
        assert_eq!(m["notes"]["method"], "sentence-embedding", "{m}");
        assert_eq!(m["notes"]["dev_examples"].as_u64(), Some(2), "{m}");
        let dev_acc = m["notes"]["dev_accuracy"].as_f64().expect("a dev accuracy");
        assert!([0.0, 0.5, 1.0].contains(&dev_acc), "two dev examples: {dev_acc}");
        // The dev pass reports its chunk (of 256: one here, no metric yet), then the score.
        let evals: Vec<f64> = seen.iter().filter(|s| s.0 == LMBFF_STAGE_EVALUATE).map(|s| s.4).collect();
        assert!(evals.len() == 2 && evals[0].is_nan() && evals[1] == dev_acc, "the dev pass, then the dev accuracy: {evals:?}");
        let train: Vec<&(i32, usize, usize, f64, f64)> = seen.iter().filter(|s| s.0 == LMBFF_STAGE_TRAIN).collect();
        assert!(train.len() >= 10, "{} training steps", train.len());
        assert!(train.iter().all(|s| s.3.is_nan() == (s.1 < 10)), "loss from the tenth step on: {train:?}");

        // Without dev examples there is nothing to calibrate on.
        tp.calibrate = true;
        for &id in &[ids[3], ids[7]] {
            assert_eq!(lmbff_task_set_dev(t, id, false), LMBFF_OK);
        }
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("dev examples"), "{}", last_error());
        lmbff_task_free(t);
    }
}

/// A regression task through the C ABI: scores as labels (checked against the range), the
/// prompt trained towards [1 - s, s] over the pole words with dev selection by Pearson,
/// and a version whose export outputs the score.
#[test]
fn regression_tasks_through_the_c_abi() {
    let dir = common::tempdir("regression-abi").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        let t = abi_task(&["low", "high"], &["terrible", "great"], LMBFF_TASK_REGRESSION, (0.0, 5.0));
        let ids: Vec<u64> = [("the movie was fun", "4.5"), ("i loved this book", "5"), ("a great ride", "4"), ("the music was bright", "3.5"),
                             ("the movie was boring", "0.5"), ("i hated this book", "0"), ("a dull ride", "1"), ("the music was slow", "1.5")]
            .iter()
            .map(|(text, score)| add(t, text, score))
            .collect();
        let (x, bad) = (CString::new("x").unwrap(), CString::new("7").unwrap());
        assert_eq!(lmbff_task_add_example(t, x.as_ptr(), null(), bad.as_ptr(), null_mut()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("a number from 0 to 5"), "{}", last_error());
        let mut n = 0usize;
        assert_eq!(lmbff_task_counts(t, 1, &mut n, null_mut()), LMBFF_OK);
        assert_eq!(n, 4, "four examples on the upper side");
        for &id in &[ids[3], ids[7]] {
            assert_eq!(lmbff_task_set_dev(t, id, true), LMBFF_OK);
        }
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK);
        let reopened = Task::open(&dir).unwrap();
        assert_eq!(reopened.spec().regression, Some((0.0, 5.0)));
        assert_eq!(reopened.item(ids[0]).unwrap().score, Some(4.5));
        // A file whose score left the range is refused at open, by item.
        let bad_dir = dir.parent().unwrap().join("bad");
        std::fs::create_dir_all(&bad_dir).unwrap();
        let text = std::fs::read_to_string(dir.join("task.json")).unwrap().replacen("\"score\": 4.5", "\"score\": 9.0", 1);
        std::fs::write(bad_dir.join("task.json"), text).unwrap();
        let err = Task::open(&bad_dir).unwrap_err().to_string();
        assert!(err.contains(&format!("item {} is inconsistent", ids[0])), "{err}");

        let mut tp = cpu_params(10);
        tp.calibrate = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("calibration is for classification"), "{}", last_error());
        tp.calibrate = false;
        let mut version = [0 as c_char; 16];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models/v1/lmbff.json")).unwrap()).unwrap();
        assert_eq!(m["regression"], serde_json::json!([0.0, 5.0]));
        assert!(m["notes"]["method_reason"].as_str().unwrap().contains("pole words"), "{m}");
        let out = CString::new(dir.parent().unwrap().join("export").to_str().unwrap()).unwrap();
        let v1 = CString::new("v1").unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), out.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let mut pred = null_mut();
        assert_eq!(lmbff_predictor_open(out.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
        // A host that did not make the export asks what it is.
        let (mut low, mut high) = (f32::NAN, f32::NAN);
        assert!(lmbff_predictor_regression(pred, &mut low, &mut high) && (low, high) == (0.0, 5.0));
        assert!(lmbff_predictor_regression(pred, null_mut(), null_mut()) && !lmbff_predictor_reads_pairs(pred));
        let text = CString::new("a fun ride").unwrap();
        let mut r = null_mut();
        assert_eq!(lmbff_predict(pred, &text.as_ptr(), null(), 1, &mut r), LMBFF_OK);
        let (mut score, mut probs) = (f32::NAN, [0f32; 2]);
        assert_eq!(lmbff_predictions_score(r, 0, &mut score), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_predictions_probs(r, 0, probs.as_mut_ptr(), 2), LMBFF_OK);
        assert!((score - 5.0 * probs[1]).abs() < 1e-5, "score {score} = 0 + 5 p(upper) ({probs:?})");
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);
        // The CLI's export of the version keeps its range as the task API's does.
        let cli_out = dir.parent().unwrap().join("export-cli");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lmbff"))
            .env("OMP_NUM_THREADS", "1")
            .args(["export", "--model"])
            .arg(dir.join("models/v1"))
            .arg("--out")
            .arg(&cli_out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cli_out.join("lmbff-export.json")).unwrap()).unwrap();
        assert_eq!((e["task"].as_str(), &e["regression"]), (Some("regression"), &serde_json::json!({"low": 0.0, "high": 5.0})), "{e}");
        lmbff_task_free(t);
    }
}

/// A regression task trains with every score on one side of its range (its loss needs
/// none on the other; demonstrations, which show each pole, name the empty half);
/// settings the method cannot honour are refused before the model adapts; adaptation
/// reads every text but the dev examples'.
#[test]
fn one_sided_regression_early_refusals_and_adaptation_texts() {
    let dir = common::tempdir("regression-one-side").join("task");
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    unsafe {
        let t = abi_task(&["low", "high"], &["terrible", "great"], LMBFF_TASK_REGRESSION, (0.0, 5.0));
        for (text, score) in [("the movie was fun", "4.5"), ("i loved this book", "5"), ("a great ride", "4")] {
            add(t, text, score);
        }
        let dev = add(t, "the music was bright", "3.5");
        assert_eq!(lmbff_task_set_dev(t, dev, true), LMBFF_OK);
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let mut tp = cpu_params(4);
        tp.demonstrations = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("lower half (0 to 2.5)"), "{}", last_error());
        tp.demonstrations = false;
        // The sentence-embedding method cannot train a regression: said before 50
        // adaptation steps run (it was said after them).
        tp.adaptation_steps = 50;
        tp.method = LMBFF_METHOD_SENTENCE_EMBEDDING;
        let mut seen: Vec<(i32, usize, usize, f64, f64)> = Vec::new();
        let ud = &mut seen as *mut _ as *mut std::ffi::c_void;
        assert_eq!(lmbff_train(t, &tp, Some(record_progress), ud, null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("needs the prompt method"), "{}", last_error());
        assert!(seen.is_empty(), "{} steps reported before the refusal", seen.len());
        tp.method = LMBFF_METHOD_PROMPT;
        tp.adaptation_steps = 2;
        let mut version = [0 as c_char; 16];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("models/v1/lmbff.json")).unwrap()).unwrap();
        assert_eq!((m["notes"]["adaptation_texts"].as_u64(), &m["notes"]["examples_per_label"]), (Some(3), &serde_json::json!([0, 3])), "{m}");
        lmbff_task_free(t);
    }
}

/// LMBFF_METHOD_ZERO_SHOT_WORDS through the C ABI: a task with no labelled example gets a
/// version (nothing trained), exported and served with the probabilities of the word
/// anchors' zero-shot head on the task's model, its dev examples scored in its notes;
/// demonstrations, a multi-label task and a regression task are named errors.
#[test]
fn zero_shot_words_through_the_c_abi() {
    let dir = common::tempdir("zero-shot-words-abi");
    unsafe {
        let t = abi_task(&["neg", "pos"], &["terrible", "great"], 0, (0.0, 1.0));
        let dev = [add(t, "a dull ride", "neg"), add(t, "a great ride", "pos")];
        for id in dev {
            assert_eq!(lmbff_task_set_dev(t, id, true), LMBFF_OK);
        }
        let cdir = CString::new(dir.join("task").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let mut tp = cpu_params(10);
        // Another method needs an example of every label.
        tp.method = LMBFF_METHOD_SENTENCE_EMBEDDING;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("has no training examples: its 1 labelled example(s) are all held out as dev"), "{}", last_error());
        tp.method = LMBFF_METHOD_ZERO_SHOT_WORDS;
        tp.demonstrations = true;
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("not LMBFF_METHOD_ZERO_SHOT_WORDS"), "{}", last_error());
        tp.demonstrations = false;
        tp.calibrate = true;
        let mut version = [0 as c_char; 16];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), version.as_mut_ptr(), 16), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(version.as_ptr()).to_str().unwrap(), "v1");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("task/models/v1/lmbff.json")).unwrap()).unwrap();
        assert_eq!((m["method"].as_str(), m["notes"]["method"].as_str()), (Some("sentence-embedding"), Some("zero-shot-words")), "{m}");
        assert_eq!(m["notes"]["examples_per_label"], serde_json::json!([0, 0]));
        assert_eq!(m["notes"]["dev_examples"].as_u64(), Some(2));
        let temperature = m["temperature"].as_f64().expect("calibrated on the dev examples");

        // A warm start names its version when the run starts, and that version cannot be
        // deleted by this process until the run ends (a run waiting its turn has not
        // read it yet: it failed later with "no model version").
        let v9 = CString::new("v9").unwrap();
        tp.warm_start = v9.as_ptr();
        let mut run = null_mut();
        assert_eq!(lmbff_train_start(t, &tp, None, null_mut(), &mut run), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("has no model version v9"), "{}", last_error());
        let from = CString::new("v1").unwrap();
        tp.warm_start = from.as_ptr();
        HOLD.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(lmbff_train_start(t, &tp, Some(hold_while_asked), null_mut(), &mut run), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_task_delete_version(t, from.as_ptr()), LMBFF_ERR_BUSY);
        assert!(last_error().contains("warm-starts from this version"), "{}", last_error());
        HOLD.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(lmbff_run_wait(run), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(lmbff_run_version(run)).to_str().unwrap(), "v2");
        lmbff_run_free(run);
        let v2 = CString::new("v2").unwrap();
        assert_eq!(lmbff_task_delete_version(t, v2.as_ptr()), LMBFF_OK, "{}", last_error());
        tp.warm_start = std::ptr::null();

        let out = dir.join("export");
        let cout = CString::new(out.to_str().unwrap()).unwrap();
        let v1 = CString::new("v1").unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), cout.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let texts = ["the movie was fun", "i hated this book", "a dull ride , really", "the music was bright and warm"];
        let ctexts: Vec<CString> = texts.iter().map(|s| CString::new(*s).unwrap()).collect();
        let ptrs: Vec<*const c_char> = ctexts.iter().map(|s| s.as_ptr()).collect();
        let mut pred = null_mut();
        assert_eq!(lmbff_predictor_open(cout.as_ptr(), null(), &mut pred), LMBFF_OK, "{}", last_error());
        let mut r = null_mut();
        assert_eq!(lmbff_predict(pred, ptrs.as_ptr(), null(), texts.len(), &mut r), LMBFF_OK, "{}", last_error());
        // The same head computed here on the task's model, divided by the temperature.
        let fixture = common::fixtures().join("bert");
        let model = lmbff::model::MaskedLm::load(&fixture, tch::Device::Cpu).unwrap();
        let tok = lmbff::tokenize::Tokenizer::from_dir(&fixture).unwrap();
        let prompt = Task::open(&dir.join("task")).unwrap().spec().prompt().unwrap();
        let head = lmbff::train::word_anchor_zero_shot(&model, &tok, &prompt, &[]).unwrap();
        let ex: Vec<lmbff::prompt::Example> = texts.iter().map(|s| lmbff::prompt::Example::single(s.to_string(), None)).collect();
        let logits: Vec<Vec<f32>> = lmbff::train::embedding_logits(&model, &tok, &prompt, &head, &ex, 4)
            .unwrap()
            .into_iter()
            .map(|row| row.iter().map(|x| x / temperature as f32).collect())
            .collect();
        let want = lmbff::train::softmax_rows(&logits);
        for (i, w) in want.iter().enumerate() {
            let mut probs = [0f32; 2];
            assert_eq!(lmbff_predictions_probs(r, i, probs.as_mut_ptr(), 2), LMBFF_OK);
            assert!(probs.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-5), "{}: {probs:?} against {w:?}", texts[i]);
        }
        lmbff_predictions_free(r);
        lmbff_predictor_free(pred);
        lmbff_task_free(t);

        // A long dev pass reports its chunks, and a cancel during it ends the run there
        // (it used to be read once, before the pass, and the version was saved).
        let t = abi_task(&["neg", "pos"], &["terrible", "great"], 0, (0.0, 1.0));
        for i in 0..600 {
            let id = add(t, &format!("a ride of {i} minutes"), if i % 2 == 0 { "neg" } else { "pos" });
            assert_eq!(lmbff_task_set_dev(t, id, true), LMBFF_OK);
        }
        let cdir = CString::new(dir.join("task-long-dev").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let mut reports = 0usize;
        tp.calibrate = false;
        assert_eq!(lmbff_train(t, &tp, Some(stop_at_second_report), (&mut reports as *mut usize).cast(), null_mut(), 0), LMBFF_ERR_CANCELLED, "{}", last_error());
        assert_eq!(reports, 2);
        assert!(!dir.join("task-long-dev/models/v1").exists(), "nothing saved");
        lmbff_task_free(t);

        for (flags, labels, what) in [(LMBFF_TASK_MULTI_LABEL, ["neg", "pos"], "a multi-label task"), (LMBFF_TASK_REGRESSION, ["low", "high"], "a regression task")] {
            let t = abi_task(&labels, &["terrible", "great"], flags, (0.0, 5.0));
            let cdir = CString::new(dir.join(format!("task-{flags}")).to_str().unwrap()).unwrap();
            assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
            assert_eq!(lmbff_train(t, &tp, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
            assert!(last_error().contains(&format!("cannot train {what}")), "{}", last_error());
            lmbff_task_free(t);
        }
    }
}

/// Counts its reports in the `usize` at `user_data` and stops the run at the second.
static HOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps the run going (its first report waits) while HOLD is set, at most 60 s.
extern "C" fn hold_while_asked(_stage: i32, _step: usize, _total: usize, _loss: f64, _metric: f64, _user_data: *mut std::ffi::c_void) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while HOLD.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

extern "C" fn stop_at_second_report(_stage: i32, _step: usize, _total: usize, _loss: f64, _metric: f64, user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: the test passes a live `usize` that outlives the run.
    let n = unsafe { &mut *user_data.cast::<usize>() };
    *n += 1;
    *n < 2
}

extern "C" fn stop_now(_stage: i32, _step: usize, _total: usize, _loss: f64, _metric: f64, _user_data: *mut std::ffi::c_void) -> bool {
    false
}

/// What a careless or unlucky host can do to its data through the C ABI, each refused by
/// name with nothing lost: exporting over a folder that is not an earlier export (the
/// user's, or the task's own), ids that ran out, a task file with two items of one id or
/// bad settings (FORMAT), an empty path, a max_len past the model's positions, a
/// demonstration-set count that would exhaust memory, a version-name buffer too small
/// (the version is saved and named), and a zero-shot run cancelled at its one step.
#[test]
fn misuse_through_the_c_abi_loses_nothing() {
    let dir = common::tempdir("misuse-abi");
    unsafe {
        let t = abi_task(&["neg", "pos"], &["terrible", "great"], 0, (0.0, 1.0));
        add(t, "a dull ride", "neg");
        add(t, "a great ride", "pos");
        let task_dir = dir.join("task");
        let cdir = CString::new(task_dir.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_save(t, cdir.as_ptr()), LMBFF_OK, "{}", last_error());
        let empty = CString::new("").unwrap();
        assert_eq!(lmbff_task_save(t, empty.as_ptr()), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("empty path"), "{}", last_error());
        let mut other = null_mut();
        assert_eq!(lmbff_task_open(empty.as_ptr(), &mut other), LMBFF_ERR_INVALID_ARGUMENT);
        // A folder that is not there is IO; one that holds no task file is FORMAT.
        let gone = CString::new(dir.join("no-such-task").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_open(gone.as_ptr(), &mut other), LMBFF_ERR_IO);
        assert!(last_error().contains("does not exist"), "{}", last_error());
        // A file where the folder should be is named as one, not as missing.
        let file = dir.join("a-file");
        std::fs::write(&file, "").unwrap();
        let cfile = CString::new(file.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_open(cfile.as_ptr(), &mut other), LMBFF_ERR_IO);
        assert!(last_error().contains("this is a file, not the directory"), "{}", last_error());
        let bare = CString::new(dir.to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_open(bare.as_ptr(), &mut other), LMBFF_ERR_FORMAT, "{}", last_error());
        // A message that would echo a 1 MB argument keeps its first 4 KiB and says so.
        let huge = CString::new(format!("/{}", "a".repeat(1 << 20))).unwrap();
        assert_ne!(lmbff_task_open(huge.as_ptr(), &mut other), LMBFF_OK);
        let e = last_error();
        let all: usize = e.rsplit("the message had ").next().unwrap().trim_end_matches(" bytes]").parse().unwrap_or(0);
        assert!(e.len() < 4200 && all > 1 << 20, "{} ... {}", &e[..100.min(e.len())], &e[e.len().saturating_sub(100)..]);

        // A version-name buffer too small: the version is made, and the error names it.
        let mut tp = cpu_params(1);
        tp.method = LMBFF_METHOD_ZERO_SHOT_WORDS;
        let mut small = [0 as c_char; 2];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), small.as_mut_ptr(), 2), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("version v1 was trained and saved"), "{}", last_error());
        assert!(task_dir.join("models/v1/lmbff.json").is_file());
        // Cancelled at its one step, the zero-shot method saves nothing.
        assert_eq!(lmbff_train(t, &tp, Some(stop_now), null_mut(), null_mut(), 0), LMBFF_ERR_CANCELLED, "{}", last_error());
        assert!(!task_dir.join("models/v2").exists());
        // Demonstration sets beyond the bound are refused before anything runs.
        let mut demos = cpu_params(1);
        (demos.method, demos.demonstrations, demos.demo_sets) = (LMBFF_METHOD_PROMPT, true, 4_000_000_000);
        assert_eq!(lmbff_train(t, &demos, None, null_mut(), null_mut(), 0), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("at most 64 sets"), "{}", last_error());

        // Exports replace only an empty folder or an earlier export.
        let v1 = CString::new("v1").unwrap();
        let mine = dir.join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("precious.txt"), "keep me").unwrap();
        // (A folder holding the version exported is named as such.)
        for (target, named) in [(&mine, "is not an earlier output of this kind"), (&task_dir, "is inside the export's folder"), (&task_dir.join("models/v1"), "is inside the export's folder")] {
            let c = CString::new(target.to_str().unwrap()).unwrap();
            assert_eq!(lmbff_task_export(t, v1.as_ptr(), c.as_ptr(), false), LMBFF_ERR_INVALID_ARGUMENT, "{}", target.display());
            assert!(last_error().contains(named), "{}", last_error());
        }
        assert_eq!(std::fs::read_to_string(mine.join("precious.txt")).unwrap(), "keep me");
        assert!(task_dir.join("task.json").is_file() && task_dir.join("models/v1/lmbff.json").is_file());
        let out = CString::new(dir.join("export").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), out.as_ptr(), false), LMBFF_OK, "{}", last_error());
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), out.as_ptr(), false), LMBFF_OK, "an earlier export is replaced: {}", last_error());
        // An export where the next version would go: training takes the name after it.
        let at_v2 = CString::new(task_dir.join("models/v2").to_str().unwrap()).unwrap();
        assert_eq!(lmbff_task_export(t, v1.as_ptr(), at_v2.as_ptr(), false), LMBFF_OK, "{}", last_error());
        let mut name = [0 as c_char; 8];
        assert_eq!(lmbff_train(t, &tp, None, null_mut(), name.as_mut_ptr(), 8), LMBFF_OK, "{}", last_error());
        assert_eq!(CStr::from_ptr(name.as_ptr()).to_str().unwrap(), "v3");
        assert!(task_dir.join("models/v2/lmbff-export.json").is_file(), "the export is kept");
        lmbff_task_free(t);
        let mut t = null_mut();
        assert_eq!(lmbff_task_open(cdir.as_ptr(), &mut t), LMBFF_OK, "{}", last_error());
        lmbff_task_free(t);

        // Hand-edited task files.
        let text = std::fs::read_to_string(task_dir.join("task.json")).unwrap();
        let edited = |name: &str, f: &dyn Fn(&mut serde_json::Value)| -> CString {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            f(&mut v);
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("task.json"), v.to_string()).unwrap();
            CString::new(d.to_str().unwrap()).unwrap()
        };
        let last = edited("last-id", &|v| v["next_id"] = (u64::MAX - 1).into());
        assert_eq!(lmbff_task_open(last.as_ptr(), &mut t), LMBFF_OK, "{}", last_error());
        let (x, pos) = (CString::new("one more").unwrap(), CString::new("pos").unwrap());
        let mut id = 0u64;
        assert_eq!(lmbff_task_add_example(t, x.as_ptr(), null(), pos.as_ptr(), &mut id), LMBFF_OK, "{}", last_error());
        assert_eq!(id, u64::MAX - 1);
        assert_eq!(lmbff_task_add_example(t, x.as_ptr(), null(), pos.as_ptr(), &mut id), LMBFF_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("every item id"), "{}", last_error());
        let mut counts = [0usize; 2];
        for (label, n) in counts.iter_mut().enumerate() {
            assert_eq!(lmbff_task_counts(t, label, n, null_mut()), LMBFF_OK);
        }
        assert_eq!(counts, [1, 2], "nothing overwritten");
        lmbff_task_free(t);
        // An example with a second sentence its template does not read (an older lmbff
        // saved such): the file still opens, with a warning.
        let stray = edited("text-b", &|v| v["items"][0]["text_b"] = "a second sentence".into());
        assert_eq!(lmbff_task_open(stray.as_ptr(), &mut t), LMBFF_OK, "{}", last_error());
        lmbff_task_free(t);
        let cases: [(&str, &dyn Fn(&mut serde_json::Value), &str); 5] = [
            ("dup-ids", &|v| v["items"][1]["id"] = v["items"][0]["id"].clone(), "two items have id"),
            ("dup-labels", &|v| v["spec"]["labels"] = serde_json::json!(["pos", "pos"]), "\"pos\" is listed twice"),
            ("bad-words", &|v| v["spec"]["label_words"] = serde_json::json!(["terrible"]), "2 labels but 1 label words"),
            ("bad-template", &|v| v["spec"]["template"] = "{text} It was.".into(), "settings do not hold"),
            ("newer", &|v| v["format_version"] = 99.into(), "format version 99"),
        ];
        for (name, f, want) in cases {
            let d = edited(name, f);
            assert_eq!(lmbff_task_open(d.as_ptr(), &mut t), LMBFF_ERR_FORMAT, "{name}: {}", last_error());
            assert!(last_error().contains(want) && t.is_null(), "{name}: {}", last_error());
        }
    }
    // A max_len past the model's positions is refused when the task is made.
    let long = TaskSpec { truncation: Truncation { max_len: 100_000, ..Truncation::default() }, ..spec(&common::fixtures().join("bert")) };
    let e = Task::new(long).unwrap_err().to_string();
    assert!(e.contains("max_len 100000 is longer than the model's 64 positions"), "{e}");
    // A template whose own text leaves no room for the input is refused when made.
    let wordy = TaskSpec { template: format!("{{text}} {} It was {{mask}}.", "very ".repeat(100)), ..spec(&common::fixtures().join("bert")) };
    let e = Task::new(wordy).unwrap_err().to_string();
    assert!(e.contains("alone takes") && e.contains("max_len is 64"), "{e}");
    // A pair task's example without its second sentence is refused when it is added.
    let pair = TaskSpec { template: "{text_a} ? {mask} , {text_b}".into(), ..spec(&common::fixtures().join("bert")) };
    let mut t = Task::new(pair).unwrap();
    let e = t.add_example("a question", None, "pos").unwrap_err().to_string();
    assert!(e.contains("reads two sentences and the item has no second (text_b): pass one that does"), "{e}");
    assert!(t.add_unlabeled("a question", None).is_err());
    t.add_example("a question", Some("an answer"), "pos").unwrap();
    let dir = common::tempdir("task-pair").join("saved");
    t.save(&dir).unwrap();
    assert_eq!(Task::open(&dir).unwrap(), t, "a pair's second text round-trips");
    // A single-sentence task refuses a second text it would never read.
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    let e = t.add_example("a review", Some("stray"), "pos").unwrap_err().to_string();
    assert!(e.contains("reads one sentence, so the item's second (text_b) would be ignored"), "{e}");
    assert!(t.add_unlabeled("a review", Some("stray")).is_err() && t.items().count() == 0, "nothing was added");
}

/// Review fixes on what a save or a delete may touch: a task is not saved into a model's
/// or an export's folder (a later write of that output replaced the folder whole, task
/// and all); an export is not written over a folder holding a task; deleting a version
/// that is a symbolic link removes the link, not what it points to; a task file that is
/// not UTF-8 is a format error; a model keeps its tokenizer files from load to save, so
/// a source folder deleted meanwhile (a warm start's version) leaves no version without
/// its tokenizer.
#[test]
fn saves_and_deletes_touch_only_their_own_folders() {
    let model = common::fixtures().join("bert");
    let root = common::tempdir("own-folders");
    let mut t = Task::new(spec(&model)).unwrap();
    t.add_example("a great ride", None, "pos").unwrap();
    t.add_example("a dull ride", None, "neg").unwrap();

    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    std::fs::write(export.join(lmbff::export::EXPORT_MANIFEST), "{}").unwrap();
    let e = t.save(&export).unwrap_err().to_string();
    assert!(e.contains("holds a model or an export") && e.contains("lmbff-export.json"), "{e}");
    assert!(!export.join("task.json").exists());
    // A folder holding both (saved there before this check) is not replaced as an export.
    std::fs::write(export.join("task.json"), "{}").unwrap();
    let e = lmbff::checkpoint::write_dir_atomic(&export, lmbff::export::EXPORT_MANIFEST, |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("already exists and is not an earlier output"), "{e}");
    assert!(export.join("task.json").exists());
    // A folder inside an output is refused too (the output's next write replaced it
    // whole, the task with it), and one saved there before this check keeps the output
    // from being replaced.
    let export2 = root.join("export2");
    std::fs::create_dir_all(&export2).unwrap();
    std::fs::write(export2.join(lmbff::export::EXPORT_MANIFEST), "{}").unwrap();
    let e = t.save(&export2.join("mytask")).unwrap_err().to_string();
    assert!(e.contains("is inside") && e.contains("lmbff-export.json"), "{e}");
    assert!(!export2.join("mytask").exists());
    // A path through the output by `..` names a folder beside it: saved.
    t.save(&export2.join("../beside-export2")).unwrap();
    assert!(root.join("beside-export2/task.json").is_file());
    std::fs::create_dir_all(export2.join("a/mytask")).unwrap();
    std::fs::write(export2.join("a/mytask/task.json"), "{}").unwrap();
    let e = lmbff::checkpoint::write_dir_atomic(&export2, lmbff::export::EXPORT_MANIFEST, |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("already exists and is not an earlier output"), "{e}");
    assert!(export2.join("a/mytask/task.json").exists());

    let dir = root.join("task");
    t.save(&dir).unwrap();
    // A save killed half-way left its temporary file (a process gone, two hours ago): the
    // next save removes it (an earlier version's name for it too); a fresh one, possibly
    // another writer's, stays. So does a user's file of two hours named like an earlier
    // version's temporary file (the task's folder is the user's too).
    let stale = [dir.join(".task.json.lmbff-tmp-999999999-1"), dir.join("task.json.tmp-999999999-4")];
    let fresh = dir.join(".task.json.lmbff-tmp-999999999-2");
    let users = dir.join("notes.tmp-999999999-3");
    for f in stale.iter().chain([&fresh, &users]) {
        std::fs::write(f, "{").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in stale.iter().chain([&users]) {
        std::fs::File::options().write(true).open(f).unwrap().set_modified(two_hours_ago).unwrap();
    }
    t.save(&dir).unwrap();
    assert!(stale.iter().all(|f| !f.exists()));
    for f in [&fresh, &users] {
        assert_eq!(std::fs::read_to_string(f).unwrap(), "{", "{} kept", f.display());
        std::fs::remove_file(f).unwrap();
    }
    let precious = root.join("shared-model");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("lmbff.json"), "{}").unwrap();
    std::fs::write(precious.join("weights"), "keep me").unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::os::unix::fs::symlink(&precious, dir.join("models/v7")).unwrap();
    lmbff::task::delete_version(&dir, "v7").unwrap();
    assert_eq!(std::fs::read_to_string(precious.join("weights")).unwrap(), "keep me");
    assert!(!lmbff::task::versions(&dir).unwrap().contains(&"v7".to_string()));
    // The link was replaced in one step by a tombstone that keeps the number, and no
    // temporary file is left.
    assert!(dir.join("models/.v7.deleted").is_file() && !dir.join("models/.v7.deleted").is_symlink());
    let left: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.contains("tmp-")).collect();
    assert!(left.is_empty(), "{left:?}");
    // A version holding a task saved in a folder inside it is not deleted.
    std::fs::create_dir_all(dir.join("models/v8/notes/keep")).unwrap();
    std::fs::write(dir.join("models/v8/lmbff.json"), "{}").unwrap();
    std::fs::write(dir.join("models/v8/notes/keep/task.json"), "{}").unwrap();
    let e = lmbff::task::delete_version(&dir, "v8").unwrap_err().to_string();
    assert!(e.contains("holds a task"), "{e}");
    assert!(dir.join("models/v8/notes/keep/task.json").exists());

    std::fs::write(dir.join("task.json"), b"{\"format\": \"\xff\xfe\"}").unwrap();
    assert!(matches!(Task::open(&dir), Err(lmbff::Error::Format { .. })), "{:?}", Task::open(&dir));

    let src = root.join("source-model");
    std::fs::create_dir_all(&src).unwrap();
    for f in std::fs::read_dir(&model).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, src.join(f.file_name().unwrap())).unwrap();
        }
    }
    let m = lmbff::model::MaskedLm::load(&src, tch::Device::Cpu).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    let saved = root.join("saved-model");
    std::fs::create_dir_all(&saved).unwrap();
    m.save_pretrained(&saved).unwrap();
    assert_eq!(std::fs::read(saved.join("tokenizer.json")).unwrap(), std::fs::read(model.join("tokenizer.json")).unwrap());
}

/// A cancel that comes after the last step (while the version is evaluated or saved)
/// still cancels: the run's caller settles it with the run's end (the C ABI's run, in
/// one atomic step) by cancel_saved, and the version it saved is gone, its number kept
/// by the tombstone, rather than a version the host never learns of.
#[test]
fn a_cancel_after_the_last_step_deletes_the_saved_version() {
    use lmbff::task::{cancel_saved, pin_warm_start, train_when_free, versions, RunParams, TrainMethod};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    common::one_thread();
    let dir = common::tempdir("cancel-after-save").join("task");
    let mut t = Task::new(spec(&common::fixtures().join("bert"))).unwrap();
    for (text, label) in [("the movie was fun", "pos"), ("a great ride", "pos"), ("the movie was boring", "neg"), ("a dull ride", "neg")] {
        t.add_example(text, None, label).unwrap();
    }
    t.save(&dir).unwrap();
    let p = RunParams { steps: 3, batch_size: 2, lr: 1e-3, device: "cpu".into(), method: TrainMethod::Prompt, ..RunParams::default() };
    let last_step = AtomicBool::new(false);
    let mut progress = |s: lmbff::train::Progress| {
        if s.step == s.total {
            last_step.store(true, SeqCst);
        }
        true
    };
    let pin = pin_warm_start(&t, &p).unwrap();
    // The cancel comes once the last step is reported: the run saves its version all the
    // same, and its caller, seeing the cancel, takes it back.
    let v = train_when_free(&t, &p, pin, &mut progress, &|| last_step.load(SeqCst)).unwrap();
    assert!(last_step.load(SeqCst), "the run reached its last step before the cancel");
    assert_eq!(versions(&dir).unwrap(), ["v1"]);
    let r = cancel_saved(&t, v);
    assert!(matches!(r, Err(lmbff::Error::Cancelled)), "{r:?}");
    assert_eq!(versions(&dir).unwrap(), Vec::<String>::new());
    assert!(dir.join("models/.v1.deleted").exists(), "the number is kept");
    // Without a cancel the same run saves v2 (v1 stays taken).
    let pin = pin_warm_start(&t, &p).unwrap();
    assert_eq!(train_when_free(&t, &p, pin, &mut |_| true, &|| false).unwrap(), "v2");
}
