//! Atomic, durable writes of lmbff's folders and files, and the lock that keeps two
//! writers of one task folder apart.
//!
//! Temporary names carry the process id and a per-process counter, so neither two
//! processes nor two handles in one process ever write into the same temporary file or
//! folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// The lock file inside a task folder ([`DirLock`]).
pub(crate) const LOCK_FILE: &str = ".lmbff.lock";

/// The mark in the name of every temporary file or folder lmbff writes,
/// `.<name>.lmbff-tmp-<pid>-<n>` ([`temp_name`]), and of an output moved aside while it
/// is replaced, `.<name>.lmbff-old-<pid>-<n>`: hidden, and marked as lmbff's, so that the
/// stale sweep never takes a user's file. (Versions before 2026-12-07 wrote
/// `<file>.tmp-<pid>-<n>` and `.<name>.tmp-` / `.old-`, names a user's file can have:
/// their temporary names are swept only in folders lmbff owns whole, [`Owner`], and a
/// moved-aside folder is still put back.)
const TMP_MARK: &str = ".lmbff-tmp-";
const OLD_MARK: &str = ".lmbff-old-";
const LEGACY_TMP_MARK: &str = ".tmp-";
const LEGACY_OLD_MARK: &str = ".old-";

/// A temporary name for a writer of `name` (a file or folder name) beside it,
/// `.<name>.lmbff-tmp-<pid>-<n>`, that no other writer uses.
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}{TMP_MARK}{}", tmp_suffix())
}

/// The prefix of the names a replaced `name` is moved aside under,
/// `.<name>.lmbff-old-` (then `<pid>-<n>`, [`aside_name`]).
fn aside_prefix(name: &str) -> String {
    format!(".{name}{OLD_MARK}")
}

/// A name to move a replaced `name` aside under, `.<name>.lmbff-old-<pid>-<n>`.
fn aside_name(name: &str) -> String {
    format!("{}{}", aside_prefix(name), tmp_suffix())
}

/// Whether `name` is a temporary name of a writer of `file` ([`temp_name`], or an earlier
/// version's `<file>.tmp-<pid>-<n>`).
#[cfg(feature = "train")]
pub(crate) fn is_temp_of(name: &str, file: &str) -> bool {
    [format!(".{file}{TMP_MARK}"), format!("{file}{LEGACY_TMP_MARK}")].iter().any(|p| name.strip_prefix(p.as_str()).is_some_and(is_temp_suffix))
}

/// A suffix for a temporary name that no other writer, in this process or another, uses.
pub(crate) fn tmp_suffix() -> String {
    // The count starts at the clock's nanoseconds, not 0: a process whose pid an earlier
    // one had (a container's first process is pid 1 on every start) would otherwise
    // meet that one's leftover names and fail to create its own.
    static SEQ: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let seq = SEQ.get_or_init(|| {
        AtomicU64::new(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
    });
    format!("{}-{}", std::process::id(), seq.fetch_add(1, Ordering::Relaxed))
}

/// Whether a task (its task.json) was saved anywhere inside `dir`: such a folder is a
/// user's, never replaced or deleted whole by a later write. Links are not followed; a
/// folder that cannot be read, or one nested deeper than lmbff writes, counts as holding
/// one (the safe answer).
pub(crate) fn holds_task(dir: &Path) -> bool {
    const DEPTH: usize = 8;
    fn walk(dir: &Path, depth: usize) -> bool {
        if dir.join(crate::task::TASK_FILE).exists() {
            return true;
        }
        // A folder that cannot be read may hold one: taken as a user's, to be safe.
        let Ok(entries) = std::fs::read_dir(dir) else { return true };
        // A folder deeper than any lmbff writes is taken as a user's, to be safe.
        entries.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && (depth == 0 || walk(&e.path(), depth - 1)))
    }
    walk(dir, DEPTH)
}

/// Creates `dir` and any missing folder above it, and syncs the folder each new one was
/// made in (its entry there), from the top down: a new folder survives a power loss
/// once this returns.
pub(crate) fn create_dir_all_synced(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => at = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for made in missing.iter().rev() {
        sync_dir(parent_of(made))?;
    }
    Ok(())
}

/// An exclusive advisory lock (`flock`) on `dir/.lmbff.lock`, held until dropped. Every
/// lmbff writer of the folder takes it, in this process (each lock is its own open file)
/// or another, and waits while another holds it; a process that dies releases it. On
/// systems without `flock` nothing is locked.
pub(crate) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    pub(crate) fn exclusive(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        #[cfg(unix)]
        loop {
            use std::os::unix::io::AsRawFd;
            // SAFETY: the descriptor is open for as long as `file` lives.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io(&path, e));
            }
        }
        Ok(DirLock { _file: file })
    }
}

/// An exclusive lock on the file `path` if no one else holds it (`flock` without
/// waiting): None while another process, or another lock in this one, holds it.
#[cfg(feature = "train")]
pub(crate) fn try_lock_file(path: &Path) -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    loop {
        use std::os::unix::io::AsRawFd;
        // SAFETY: the descriptor is open for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(Error::io(path, e)),
        }
    }
    Ok(Some(file))
}

/// Writes the file `path` atomically: `bytes` go to a temporary file of this writer's
/// own beside it, which is synced and renamed onto `path`. Two writers never rename each
/// other's half-written file, and a power loss leaves the old file or the new one. (The
/// folder itself is not synced: [`sync_dir`] when the rename must last too.) A file
/// written again keeps its permissions (a task.json made private stays private).
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let tmp = parent_of(path).join(temp_name(&name.to_string_lossy()));
    let mode = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.permissions().mode() & 0o777);
    // The temporary file stays locked ([`TempLock`]) until it is renamed: the lock goes
    // when `f` closes.
    let written = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|mut f| {
        try_flock(&f);
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// An advisory lock (`flock`) its writer holds on a temporary file or folder for as long
/// as it uses it: the stale sweep ([`remove_stale_temps`]) and the moved-aside restore
/// ([`restore_moved_aside`]) take only what no writer holds. A dead writer's lock is
/// gone with it, whatever its pid, so a container's pid 1 finds its own earlier run's
/// leftovers stale too. (The lock is on the file or folder itself, and follows it
/// through renames; closing the descriptor, when this drops, releases it.)
pub(crate) struct TempLock {
    _file: std::fs::File,
}

impl TempLock {
    /// Opens and locks the file or folder `path`: `None` when another holds it, or it
    /// cannot be opened or locked. A writer goes on without the lock where the file system
    /// cannot lock.
    pub(super) fn open(path: &Path) -> Option<TempLock> {
        match Self::probe(path) {
            Probe::Taken(lock) => Some(lock),
            Probe::Held | Probe::CannotLock => None,
        }
    }

    /// Tries the lock on `path`, telling a file system that cannot lock (where no writer
    /// can show that it is alive) from a lock another holds.
    fn probe(path: &Path) -> Probe {
        // One that cannot be opened (its permissions) is taken for held.
        let Ok(file) = std::fs::File::open(path) else { return Probe::Held };
        match try_flock(&file) {
            Some(true) => Probe::Taken(TempLock { _file: file }),
            Some(false) => Probe::Held,
            None => Probe::CannotLock,
        }
    }
}

/// What [`TempLock::probe`] found.
enum Probe {
    Taken(TempLock),
    Held,
    CannotLock,
}

/// How long a temporary file or folder must have been left alone before a sweep or a
/// restore takes it where the file system cannot lock, so that no writer can show it is
/// alive: a day, far longer than any write takes (with locks: [`STALE_AFTER`]).
const STALE_UNLOCKED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether a sweep or a restore may take the temporary `path`, idle for `idle`: once a
/// lock is taken on it (returned, to hold while it goes) and it has been idle for
/// `locked_after` (a sweep: [`STALE_AFTER`]; a restore: `None`, no wait), or, where the
/// file system cannot lock, once it has been idle for [`STALE_UNLOCKED_AFTER`].
fn take_stale(path: &Path, idle: Option<std::time::Duration>, locked_after: Option<std::time::Duration>) -> Option<Option<TempLock>> {
    let idle_for = |after: std::time::Duration| idle.is_some_and(|d| d > after);
    if !locked_after.is_none_or(idle_for) {
        return None;
    }
    match TempLock::probe(path) {
        Probe::Taken(lock) => Some(Some(lock)),
        Probe::CannotLock if idle_for(STALE_UNLOCKED_AFTER) => Some(None),
        Probe::CannotLock | Probe::Held => None,
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: this thread's `flock` calls act as on a file system that cannot lock.
    pub(super) static NO_FLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: [`replace`]'s swap back (of what it may not take out) fails.
    pub(super) static FAIL_SWAP_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The swap back of [`replace`]: [`exchange`], failing where a test asks.
fn swap_back(tmp: &Path, dest: &Path) -> std::io::Result<bool> {
    #[cfg(test)]
    if FAIL_SWAP_BACK.with(|f| f.get()) {
        return Err(std::io::Error::other("the swap back failed (a test's)"));
    }
    exchange(tmp, dest)
}

/// Takes `flock(LOCK_EX | LOCK_NB)` on `file`: `Some(true)` taken, `Some(false)` another
/// holds it, `None` the file system cannot lock.
fn try_flock(file: &std::fs::File) -> Option<bool> {
    use std::os::unix::io::AsRawFd;
    #[cfg(test)]
    if NO_FLOCK.with(|n| n.get()) {
        return None;
    }
    loop {
        // SAFETY: the descriptor is open for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Some(false),
            _ => return None,
        }
    }
}

/// Syncs a folder itself (its entries: names created, renamed or removed in it).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// The folder `dest` is in (`.` for a bare name).
fn parent_of(dest: &Path) -> &Path {
    dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates a fresh temporary folder beside `dest`, lets `fill` write into it, and syncs
/// its files and the folder; on any error the temporary folder is removed. The folder is
/// locked ([`TempLock`]) for as long as the caller keeps the lock returned with it.
pub(super) fn filled_temp(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<(PathBuf, Option<TempLock>)> {
    let parent = parent_of(dest);
    // Synced: the output's own entry is synced once it is placed, and it must not sit in
    // a new folder that a power loss could take back.
    create_dir_all_synced(parent)?;
    let name = dest.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} is not a directory path", dest.display())))?;
    let tmp = parent.join(temp_name(&name.to_string_lossy()));
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let held = TempLock::open(&tmp);
    match fill(&tmp).and_then(|()| list_output(&tmp)).and_then(|()| sync_dir_files(&tmp)).and_then(|()| sync_dir(&tmp)) {
        Ok(()) => Ok((tmp, held)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Writes a directory atomically: `fill` writes into a fresh temporary directory beside
/// `dest`, whose files are then synced and which then takes `dest`'s place. An
/// interrupted write leaves `dest` as it was (the old version or nothing), never
/// half-written. On Linux an existing `dest` is swapped with the new folder in one step
/// (`renameat2` with `RENAME_EXCHANGE`); where the file system cannot, it is moved aside
/// first, and a crash between the two renames leaves it beside `dest` as
/// `.<name>.lmbff-old-<pid>-<n>`, which the next write to `dest` ([`check_dest`]) puts back.
///
/// An existing `dest` is replaced only when it is an empty folder or an earlier output of
/// the same kind, a folder holding the file `marker` (an export's `lmbff-export.json`, a
/// model's `lmbff.json`): anything else (a user's folder, a task's own folder, the model
/// being exported) is refused with `InvalidArgument` and left as it is.
pub fn write_dir_atomic(dest: &Path, marker: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_dest(dest, marker)?;
    let (tmp, _held) = filled_temp(dest, fill)?;
    // `dest` may have changed while `fill` ran (another writer's output, or a task saved
    // there): `replace` checks what it takes out again.
    // (`replace` removes `tmp` itself where it fails: `tmp` may hold what it took out.)
    if dest.exists() {
        replace(&tmp, dest, marker)?;
    } else if let Err(e) = std::fs::rename(&tmp, dest) {
        if !dest.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::io(dest, e));
        }
        // Another writer placed something there meanwhile: replace it only as an empty
        // folder or an earlier output (the last writer wins, whole).
        replace(&tmp, dest, marker)?;
    }
    remove_stale_temps(dest, marker);
    sync_dir(parent_of(dest))
}

/// The file in each written folder that lists its entries (paths inside it, `/`
/// between folders, one a line, after the line [`NESTED`]): a later write replaces the
/// folder only while it holds nothing else, at any depth.
const OUTPUT_LIST: &str = ".lmbff-output";

/// The first line of a list that names what folders inside hold too. A list without it
/// (written before) names the top level only, and only the top level is checked.
const NESTED: &str = "# nested";

/// How deep a written folder's entries are listed and checked (an export's Triton model,
/// `triton/NAME/1/model.onnx`, is four deep).
const LIST_DEPTH: usize = 8;

/// The entries of `dir`, `depth` folders deep, as paths relative to it (`a`, `a/b`).
fn entries_under(dir: &Path, depth: usize) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if depth > 1 && e.file_type()?.is_dir() {
            out.extend(entries_under(&e.path(), depth - 1)?.into_iter().map(|inner| format!("{name}/{inner}")));
        }
        out.push(name);
    }
    Ok(out)
}

/// Writes [`OUTPUT_LIST`] into the filled folder `dir`.
fn list_output(dir: &Path) -> Result<()> {
    let mut names = entries_under(dir, LIST_DEPTH).map_err(|e| Error::io(dir, e))?;
    names.sort();
    let path = dir.join(OUTPUT_LIST);
    let text: String = std::iter::once(NESTED).chain(names.iter().map(String::as_str)).map(|n| format!("{n}\n")).collect();
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Whether the output folder `dir` holds the list of what its write made (outputs
/// written before lists were kept do not).
#[cfg(feature = "train")]
pub(crate) fn lists_its_output(dir: &Path) -> bool {
    dir.join(OUTPUT_LIST).is_file()
}

/// The entries of the earlier output `dir` that its write did not make (a user's notes,
/// input files put there since, a version added beside an export's Triton model), which
/// replacing it would delete. An output written before the list was kept has none on
/// record, and nothing is taken for foreign.
fn foreign_entries(dir: &Path) -> Vec<String> {
    let Ok(list) = std::fs::read_to_string(dir.join(OUTPUT_LIST)) else { return Vec::new() };
    let depth = if list.lines().next() == Some(NESTED) { LIST_DEPTH } else { 1 };
    let ours: std::collections::HashSet<&str> = list.lines().collect();
    // A folder that cannot be read is taken for foreign: it is not replaced unread.
    let mut foreign = entries_under(dir, depth).unwrap_or_else(|e| vec![format!("(unreadable: {e})")]);
    foreign.retain(|n| n != OUTPUT_LIST && !ours.contains(n.as_str()));
    foreign.sort();
    foreign
}

/// A folder holding `marker`, no task file at any depth and nothing its write did not
/// make: an earlier output of this kind (a task saved into an earlier output, or into a
/// folder inside it, wins, and so do files put there since).
fn is_earlier_output(dest: &Path, marker: &str) -> bool {
    dest.join(marker).is_file() && !holds_task(dest) && foreign_entries(dest).is_empty()
}

/// Whether the folder `dir` is one a write of this kind may replace: empty, or an
/// earlier output ([`is_earlier_output`]).
fn replaceable(dir: &Path, marker: &str) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none() || is_earlier_output(dir, marker))
}

/// Whether [`write_dir_atomic`] may write `dest`: it does not exist, or it is an empty
/// folder or an earlier output of this kind (holding `marker`). Commands call it before
/// long work, so that a wrong destination is named before the work, not after it.
pub fn check_dest(dest: &Path, marker: &str) -> Result<()> {
    restore_moved_aside(dest, marker)?;
    check_parent(dest)?;
    if !(dest.exists() || dest.is_symlink()) {
        return Ok(());
    }
    if !dest.is_dir() {
        return Err(Error::InvalidArgument(format!("{} is a file: give a new or empty folder to write into", dest.display())));
    }
    if !replaceable(dest, marker).map_err(|e| Error::io(dest, e))? {
        let foreign = foreign_entries(dest);
        if dest.join(marker).is_file() && !foreign.is_empty() {
            const SHOWN: usize = 5;
            let more = if foreign.len() > SHOWN { format!(" and {} more", foreign.len() - SHOWN) } else { String::new() };
            return Err(Error::InvalidArgument(format!(
                "{} is an earlier output, but it now also holds what lmbff did not write there ({}{more}): replacing the \
                 output would delete it; move it out or choose another folder",
                dest.display(),
                foreign.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        return Err(Error::InvalidArgument(format!(
            "{} already exists and is not an earlier output of this kind (it holds no {marker}); lmbff replaces only \
             an empty folder or its own earlier output there: choose a new or empty folder",
            dest.display()
        )));
    }
    Ok(())
}

/// Whether the write can make its folders beside `dest`: the nearest folder above it
/// that exists must be a folder (not a file where a folder goes) in which a folder can
/// be made (tried, and removed), so that a long run does not end failing to save.
fn check_parent(dest: &Path) -> Result<()> {
    // The write makes its folder beside `dest`, by `dest`'s name: `.` or `..` has none,
    // and the write failed after the work.
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return Err(Error::InvalidArgument(format!("{}: give the folder by its name (the write makes its own beside it), not `.` or `..`", dest.display())));
    };
    // That folder's name is longer than `dest`'s: one that does not fit the file
    // system's names failed after the work, naming the hidden folder.
    let longest = temp_name(&name).len().max(aside_name(&name).len());
    let existing = existing_above(dest);
    let limit = existing.map_or(NAME_MAX, name_max);
    if longest > limit {
        return Err(Error::InvalidArgument(format!(
            "{}: its name is {} bytes, and the folder lmbff writes beside it first needs {longest} (at most {limit} here): give a shorter name",
            dest.display(),
            name.len()
        )));
    }
    let Some(existing) = existing else { return Ok(()) };
    if !existing.is_dir() {
        return Err(Error::InvalidArgument(format!("{}: {} is a file, not a folder", dest.display(), existing.display())));
    }
    can_make_folder_in(existing).map_err(|e| Error::InvalidArgument(format!("{}: no folder can be made in {} ({e})", dest.display(), existing.display())))
}

/// The longest file name most file systems take, in bytes, where the system does not say.
const NAME_MAX: usize = 255;

/// The longest file name the file system of `dir` takes (`pathconf`), else [`NAME_MAX`].
fn name_max(dir: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return NAME_MAX };
    // SAFETY: a NUL-terminated path that lives across the call.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    if n > 0 { n as usize } else { NAME_MAX }
}

/// The nearest folder above `dest` that exists (`.` for a relative path none of whose
/// folders does), where a write of `dest` makes the missing ones: a file there, or a
/// folder nothing can be made in, fails that write.
pub(crate) fn existing_above(dest: &Path) -> Option<&Path> {
    let existing = parent_of(dest).ancestors().find(|a| a.as_os_str().is_empty() || a.exists())?;
    Some(if existing.as_os_str().is_empty() { Path::new(".") } else { existing })
}

/// Makes a folder in `dir` and removes it again: whether a write can make its own there
/// (a read-only mount cannot; root passes permission checks that `access` would not).
pub(crate) fn can_make_folder_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(temp_name("lmbff-probe"));
    std::fs::create_dir(&probe)?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}

/// Puts back the folder a writer moved aside (`.<name>.lmbff-old-<pid>-<n>`, [`replace`]
/// where the file system cannot swap two folders in one step) and never replaced, as a
/// crash between its two renames leaves it: only while `dest` is missing, only one no
/// writer holds ([`TempLock`]), the latest if there are several. Without this the
/// earlier output would sit hidden until [`remove_stale_temps`] deleted it.
pub(crate) fn restore_moved_aside(dest: &Path, marker: &str) -> Result<()> {
    if dest.exists() || dest.is_symlink() {
        return Ok(());
    }
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().to_string()) else { return Ok(()) };
    let Ok(entries) = std::fs::read_dir(parent_of(dest)) else { return Ok(()) };
    let ours = aside_prefix(&name);
    // An earlier version's moved-aside name (`.<name>.old-<pid>-<n>`, which a user's
    // folder could have) only where it holds the output's `marker`.
    let legacy = format!(".{name}{LEGACY_OLD_MARK}");
    let mut latest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let marked = file.strip_prefix(&ours).is_some_and(is_temp_suffix);
        let legacy_output = || file.strip_prefix(&legacy).is_some_and(is_temp_suffix) && entry.path().join(marker).is_file();
        if !(marked || legacy_output()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let when = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if latest.as_ref().is_none_or(|(t, _)| when > *t) {
            latest = Some((when, entry.path()));
        }
    }
    // The latest, unless a writer holds it (its move aside is under way); where the file
    // system cannot lock, once it has been left a day ([`STALE_UNLOCKED_AFTER`]).
    if let Some((when, old)) = latest {
        let Some(_taken) = take_stale(&old, when.elapsed().ok(), None) else { return Ok(()) };
        match std::fs::rename(&old, dest) {
            Ok(()) => {
                crate::log::log(crate::log::Level::Warn, || {
                    format!("{} was missing: an interrupted write had moved it aside as {}; it is back in its place", dest.display(), old.display())
                });
                sync_dir(parent_of(dest))?;
            }
            // Another process put something there, or restored it, meanwhile.
            Err(_) if dest.exists() => {}
            Err(e) => return Err(Error::io(&old, e)),
        }
    }
    Ok(())
}

/// How long a temporary folder must have been left alone before it counts as stale: a
/// writer on another machine sharing the folder (whose process this one cannot see)
/// touches its folder while it writes.
pub(crate) const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary folders (`.<name>.lmbff-tmp-<pid>-<n>`,
/// `.<name>.lmbff-old-<pid>-<n>`, [`TMP_MARK`]; an earlier version's
/// `.<name>.tmp-<pid>-<n>` and `.<name>.old-<pid>-<n>`, hidden and named after `dest`)
/// that writers of `dest` killed half-way left beside it: those no writer holds
/// ([`TempLock`]), untouched for an hour. A live writer's, and any other name, are left
/// alone.
fn remove_stale_temps(dest: &Path, marker: &str) {
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().to_string()) else { return };
    let parent = parent_of(dest);
    let marked = |marks: [&str; 2], file: &str| marks.iter().find_map(|k| file.strip_prefix(&format!(".{name}{k}"))).map(str::to_string);
    remove_stale(parent, |file| {
        // A moved-aside folder is an earlier output or an empty folder, which the sweep
        // may take; anything else under that name is what a write could not put back,
        // kept.
        marked([TMP_MARK, LEGACY_TMP_MARK], file)
            .or_else(|| marked([OLD_MARK, LEGACY_OLD_MARK], file).filter(|_| replaceable(&parent.join(file), marker).unwrap_or(false)))
    });
}

/// Whose files share a folder that [`remove_stale_temps_in`] sweeps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Owner {
    /// lmbff's alone (a task's `models/`, a harness's `runs/<task>/`): earlier versions'
    /// temporary names (`<name>.tmp-<pid>-<n>`) go too.
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    Lmbff,
    /// A folder a user may keep files in (a task's folder, a harness's `--out`): names
    /// with lmbff's mark, and earlier versions' temporary names of the files lmbff
    /// writes there (`task.json.tmp-<pid>-<n>` for `&["task.json"]`), no other.
    Shared(&'static [&'static str]),
}

/// Removes, in the folder `dir`, every temporary file or folder a writer killed half-way
/// left there: any name `.<name>.lmbff-tmp-<pid>-<n>` ([`write_file_atomic`]'s files,
/// [`write_dir_atomic`]'s folders; in a folder lmbff owns, an earlier version's
/// `<name>.tmp-<pid>-<n>` too) that no writer holds ([`TempLock`]), untouched for an hour.
pub(crate) fn remove_stale_temps_in(dir: &Path, owner: Owner) {
    remove_stale(dir, |file| {
        let marked = file.strip_prefix('.').and_then(|f| f.rsplit_once(TMP_MARK)).map(|(_, rest)| rest);
        let legacy = || {
            let (name, rest) = file.rsplit_once(LEGACY_TMP_MARK)?;
            match owner {
                Owner::Lmbff => Some(rest),
                Owner::Shared(ours) => ours.contains(&name).then_some(rest),
            }
        };
        marked.or_else(legacy).map(str::to_string)
    });
}

/// The entries of `dir` whose name `suffix` maps to `<pid>-<n>` (exactly, as
/// [`tmp_suffix`] writes it), removed when stale: idle for [`STALE_AFTER`] and held by
/// no writer (the lock is taken, and kept while it goes), or idle for a day where the
/// file system cannot lock ([`take_stale`]).
fn remove_stale(dir: &Path, suffix: impl Fn(&str) -> Option<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !suffix(&entry.file_name().to_string_lossy()).as_deref().is_some_and(is_temp_suffix) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        // A folder holding a task is a user's, whatever its name (one parked under a
        // temporary name where it could not be put back): never swept.
        if meta.is_dir() && holds_task(&entry.path()) {
            continue;
        }
        let idle = meta.modified().ok().and_then(|t| t.elapsed().ok());
        if let Some(_taken) = take_stale(&entry.path(), idle, Some(STALE_AFTER)) {
            let _ = if meta.is_dir() { std::fs::remove_dir_all(entry.path()) } else { std::fs::remove_file(entry.path()) };
        }
    }
}

/// Whether a temporary name's suffix is `<pid>-<n>`, exactly as [`tmp_suffix`] writes
/// it (digits on both sides).
fn is_temp_suffix(rest: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-').is_some_and(|(p, n)| digits(p) && digits(n))
}

/// Puts the folder `tmp` in the place of the existing folder `dest` and removes the old
/// one, if that is an empty folder or an earlier output holding `marker`; otherwise
/// `dest` stays as it was and the error says so. Where it fails, `tmp` (the new output)
/// is removed; what was at `dest` never is: one that cannot be put back is kept under
/// its moved-aside name, which the next write to `dest` puts back once `dest` is free,
/// and the error names where it is.
pub(super) fn replace(tmp: &Path, dest: &Path, marker: &str) -> Result<()> {
    let result = replace_kept(tmp, dest, marker);
    if tmp.exists() && result.as_ref().is_err_and(|(_, ours)| *ours) {
        let _ = std::fs::remove_dir_all(tmp);
    }
    result.map_err(|(e, _)| e)
}

/// [`replace`]'s work; an error says whether `tmp` still holds the new output (and may
/// go) or what was taken out of `dest` (which must not).
fn replace_kept(tmp: &Path, dest: &Path, marker: &str) -> std::result::Result<(), (Error, bool)> {
    // What was at `dest` is checked once it has been moved out, so that nothing placed
    // there since `check_dest` (a task saved into the folder while an export was being
    // written) is removed: anything but an empty folder or an earlier output goes back.
    let may_take_out = |old: &Path| old.is_dir() && replaceable(old, marker).unwrap_or(false);
    // Held while it sits under a temporary name (swapped into `tmp`'s, or moved aside):
    // another process's sweep or restore must not take it from under us.
    let _held = TempLock::open(dest);
    let refused = || {
        Error::InvalidArgument(format!(
            "{} changed while lmbff wrote its output: it now holds something other than an earlier output (no {marker}, or a task); \
             it was left as it is",
            dest.display()
        ))
    };
    let name = dest.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let aside = || parent_of(dest).join(aside_name(&name));
    // What was at `dest`, now at `at`, could not be put back: the error names it.
    let kept_at = |at: &Path, e: std::io::Error| {
        Error::InvalidArgument(format!(
            "{} changed while lmbff wrote its output, and what was there could not be put back ({e}): it is kept at {} \
             (the next write to {} puts it back once that path is free)",
            dest.display(),
            at.display(),
            dest.display()
        ))
    };
    if exchange(tmp, dest).map_err(|e| (Error::io(dest, e), true))? {
        // `tmp` now holds the old folder.
        if !may_take_out(tmp) {
            // Swapped back: `dest` as it was, our output in `tmp`.
            if let Err(e) = swap_back(tmp, dest) {
                // Parked under the moved-aside name (a temporary name is swept).
                let parked = aside();
                return Err(match std::fs::rename(tmp, &parked) {
                    Ok(()) => (kept_at(&parked, e), false),
                    Err(_) => (kept_at(tmp, e), false),
                });
            }
            return Err((refused(), true));
        }
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(());
    }
    let old = aside();
    std::fs::rename(dest, &old).map_err(|e| (Error::io(dest, e), true))?;
    if !may_take_out(&old) {
        return match std::fs::rename(&old, dest) {
            Ok(()) => Err((refused(), true)),
            Err(e) => Err((kept_at(&old, e), true)),
        };
    }
    if let Err(e) = std::fs::rename(tmp, dest) {
        // An earlier output or an empty folder: put back where it can be.
        let _ = std::fs::rename(&old, dest);
        return Err((Error::io(dest, e), true));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Swaps two paths in one step; `Ok(false)` where the system or file system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path holds a NUL byte"));
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    if unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Writes a new directory at `dest`, an empty folder the caller created to reserve the
/// name (`create_dir` succeeds for one writer only): `fill` writes into a temporary
/// folder, which is synced and renamed onto the empty `dest` in one step. On error the
/// reserved folder is left empty.
#[cfg(feature = "train")]
pub(crate) fn write_new_dir(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (tmp, _held) = filled_temp(dest, fill)?;
    if let Err(e) = std::fs::rename(&tmp, dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(dest, e));
    }
    sync_dir(parent_of(dest))
}

/// Syncs every file under `dir` and every folder below it (a Triton repository's
/// `name/1/`), so the rename that publishes `dir` publishes whole files.
fn sync_dir_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path: PathBuf = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            sync_dir_files(&path)?;
            sync_dir(&path)?;
        } else if path.is_file() {
            let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lmbff-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A file written again keeps its permissions (a private task.json became 0644 on
    /// the next save); a new one gets the process's default.
    #[test]
    fn a_file_written_again_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let root = scratch("mode");
        let file = root.join("task.json");
        write_file_atomic(&file, b"one").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_file_atomic(&file, b"two").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, std::fs::read(&file).unwrap()), (0o640, b"two".to_vec()));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A folder that appears at the destination while the output is being written (a
    /// task saved there meanwhile) is kept, and the write refused; an empty folder or an
    /// earlier output that appears is replaced, as before. (The first was removed whole.)
    #[test]
    fn what_appears_at_the_destination_meanwhile_is_checked_again() {
        let root = scratch("race");
        let write = |dest: &Path, appears: &dyn Fn(&Path)| {
            write_dir_atomic(dest, "out.json", |tmp| {
                appears(dest);
                std::fs::write(tmp.join("out.json"), "new").map_err(|e| Error::io(tmp, e))
            })
        };
        let task = root.join("task");
        let e = write(&task, &|d| {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join(crate::task::TASK_FILE), "a task").unwrap();
        })
        .unwrap_err();
        assert!(e.to_string().contains("changed while lmbff wrote its output"), "{e}");
        assert_eq!(std::fs::read_to_string(task.join(crate::task::TASK_FILE)).unwrap(), "a task");
        assert!(!task.join("out.json").exists());
        for (name, appears) in [("empty", &(|d: &Path| std::fs::create_dir(d).unwrap()) as &dyn Fn(&Path)), ("earlier", &|d: &Path| {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("out.json"), "old").unwrap();
        })] {
            let dest = root.join(name);
            write(&dest, appears).unwrap();
            assert_eq!(std::fs::read_to_string(dest.join("out.json")).unwrap(), "new", "{name}");
        }
        // No temporary folder is left behind.
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
