//! Datasets on disk: labelled TSV files with a header naming a `sentence` (or `text`)
//! column (and, for pairs, `sentence1`/`sentence2` or `question`/`sentence`...) and a
//! `label` column, as in GLUE and LM-BFF's k-shot splits, names in any case; CSV files,
//! LM-BFF's headerless `label,sentence` or with such a header row; plain text files of
//! unlabeled lines.

use std::path::Path;

use crate::prompt::Example;
use crate::{Error, Result};

/// A labelled row with its label as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line in the file.
    pub line: usize,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: String,
}

/// Reads a TSV file with a header row. Single-sentence files need `sentence` and
/// `label` columns; pair files `sentence1`/`sentence2` (or `question`+`sentence`,
/// `question1`/`question2`, MRPC's `#1 String`/`#2 String`) and `label` (or GLUE's
/// `gold_label`, `is_duplicate`, MRPC's `Quality`, STS-B's `score`).
pub fn read_tsv(path: &Path) -> Result<Vec<Row>> {
    Ok(read_rows(path, true)?.0)
}

/// [`read_tsv`] for inputs that may be unlabelled: without a label column every row's
/// label is empty, and the flag says there was none.
pub fn read_tsv_inputs(path: &Path) -> Result<(Vec<Row>, bool)> {
    read_rows(path, false)
}

/// The text of `path`; bytes that are not UTF-8 are a data error naming their line (they
/// read as an I/O failure).
pub(crate) fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        Error::Data { path: path.to_path_buf(), line, message: format!("not valid UTF-8 (at byte {column} of the line)") }
    })
}

/// The text of a file read line by line ([`read_utf8`]), without a byte-order mark at
/// its start (not text); lines ended by a carriage return alone (classic Mac OS), which
/// would read as one line, are refused.
fn read_lines_text(path: &Path) -> Result<String> {
    let mut text = read_utf8(path)?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.contains('\r') && !text.contains('\n') {
        return Err(Error::Data { path: path.to_path_buf(), line: 1, message: CR_ONLY.into() });
    }
    Ok(text)
}

fn read_rows(path: &Path, need_label: bool) -> Result<(Vec<Row>, bool)> {
    let text = read_lines_text(path)?;
    // Blank lines are skipped everywhere, before the header too.
    let mut lines = text.lines().enumerate().skip_while(|(_, l)| l.trim().is_empty());
    let bad = |line: usize, message: String| Error::Data { path: path.to_path_buf(), line, message };
    let (at, header) = lines.next().ok_or_else(|| bad(1, "empty file: expected a header row".into()))?;
    let bad_header = |message: String| {
        // LM-BFF's CSV splits (and a CSV named .tsv) have no tab in their first line.
        let hint = if !header.contains('\t') && header.contains(',') {
            "; the first line holds no tab but a comma: a TSV needs a header row, and LM-BFF's `label,sentence` files are read as such when named .csv"
        } else if header.split('\t').any(|c| looks_quoted(c.trim())) {
            QUOTED_HINT
        } else {
            ""
        };
        bad(at + 1, format!("{message}{hint}"))
    };
    // Column names and label values are identifiers: spaces around them (a spreadsheet's
    // export) are not part of the name. Texts are kept as written.
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let Columns { label, a, b, gold_last } = match columns(&cols, need_label) {
        Ok(c) => c,
        Err(ColumnError::Twice(m)) => return Err(bad(at + 1, m)),
        Err(ColumnError::Missing(m)) => return Err(bad_header(m)),
    };
    const MORE_ANNOTATORS: usize = 4;
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let mut f: Vec<&str> = line.split('\t').collect();
        // More fields than the header names would shift or cut a text (a tab inside a
        // sentence): refused, but for the extra annotator labels above, and for empty
        // ones after the last (a spreadsheet's trailing tab).
        let extra = f.len().saturating_sub(cols.len());
        if extra != 0 && !gold_last && f[cols.len()..].iter().all(|x| x.trim().is_empty()) {
            f.truncate(cols.len());
        } else if extra != 0 && !(gold_last && extra == MORE_ANNOTATORS) {
            return Err(bad(i + 1, format!("{} tab-separated fields where the header names {} (a tab inside a text?)", f.len(), cols.len())));
        }
        let get = |c: usize| f.get(c).map(|s| s.to_string()).ok_or_else(|| bad(i + 1, format!("expected {} tab-separated fields, found {}", cols.len(), f.len())));
        let label = match label {
            Some(_) if gold_last && f.len() >= cols.len() => f.last().map(|s| s.trim().to_string()),
            Some(l) => Some(get(l)?.trim().to_string()),
            None => None,
        };
        // A text is kept as written even where it looks CSV-quoted (`"a ""hit"" it is"`):
        // GLUE's and LM-BFF's own files hold such texts (QQP's questions, mr's
        // `" "" it's all about the image . """`), and LM-BFF reads them as written.
        rows.push(Row { line: i + 1, text_a: get(a)?, text_b: b.map(get).transpose()?, label: label.unwrap_or_default() });
    }
    Ok((rows, label.is_some()))
}

/// Column names a header row may give, matched in any case: the label, the first and
/// second sentence of a pair, a single sentence.
const LABEL: &[&str] = &["label", "gold_label", "is_duplicate", "Quality", "score"];
const FIRST: &[&str] = &["sentence1", "question1", "question", "#1 String"];
const SECOND: &[&str] = &["sentence2", "question2", "sentence", "#2 String"];
const SINGLE: &[&str] = &["sentence", "text"];

/// Whether `c` (trimmed) is one of `names`, in any case.
fn named_in(c: &str, names: &[&str]) -> bool {
    names.iter().any(|n| c.trim().eq_ignore_ascii_case(n))
}

/// Whether `c` is the name of a column this reader reads.
fn is_column_name(c: &str) -> bool {
    [LABEL, FIRST, SECOND, SINGLE].iter().any(|names| named_in(c, names))
}

/// Where a header row's columns are.
struct Columns {
    label: Option<usize>,
    a: usize,
    b: Option<usize>,
    /// GLUE's MNLI and SNLI list one annotator label column (`label1`) before
    /// `gold_label`, the last, while a row holds as many as it had annotators (SNLI:
    /// one or five): the gold label is a row's last field there. Only there: in another
    /// file a field past the header's is a tab inside a text.
    gold_last: bool,
}

enum ColumnError {
    /// A column read, named twice (it would be read from its first place without a word).
    Twice(String),
    /// A column needed is not named.
    Missing(String),
}

/// The columns of the header `cols` (names trimmed); a label column only where
/// `need_label` (else it may be missing).
fn columns(cols: &[&str], need_label: bool) -> std::result::Result<Columns, ColumnError> {
    if let Some(twice) = cols.iter().enumerate().find(|(i, c)| is_column_name(c) && cols[..*i].iter().any(|d| d.eq_ignore_ascii_case(c))).map(|(_, c)| c) {
        return Err(ColumnError::Twice(format!("column `{twice}` is named twice in header {cols:?}")));
    }
    // The first of the names that the header has, in the lists' order (`label` before
    // a `score` column beside it), not the first column with any of them.
    let find = |names: &[&str]| names.iter().find_map(|n| cols.iter().position(|c| c.eq_ignore_ascii_case(n)));
    let label = find(LABEL);
    if label.is_none() && need_label {
        return Err(ColumnError::Missing(format!("no `label` column in header {cols:?}")));
    }
    let (a, b) = if let (Some(a), Some(b)) = (find(FIRST), find(SECOND)) {
        (a, Some(b))
    } else {
        (find(SINGLE).ok_or_else(|| ColumnError::Missing(format!("no `sentence` or `text` column in header {cols:?}")))?, None)
    };
    let gold_last =
        label.is_some_and(|l| l + 1 == cols.len() && cols[l].eq_ignore_ascii_case("gold_label")) && cols.iter().any(|c| c.eq_ignore_ascii_case("label1"));
    Ok(Columns { label, a, b, gold_last })
}

/// Why a file whose lines end in a carriage return alone is refused (it would read as
/// one line).
pub(crate) const CR_ONLY: &str = "its lines end in a carriage return alone (classic Mac OS): save it with LF or CRLF line ends";

/// Why a quoted TSV is refused, and how to write one that is read.
const QUOTED_HINT: &str = "; TSV files are read as written, with no quoting (GLUE's and LM-BFF's layout): write it without \
     quotes (pandas: `quoting=csv.QUOTE_NONE`; R: `quote = FALSE`)";

/// A field wrapped whole in double quotes (`"sentence"`).
fn looks_quoted(field: &str) -> bool {
    field.len() >= 2 && field.starts_with('"') && field.ends_with('"')
}

/// Converts rows to examples, mapping each file label to its class index.
pub fn to_examples(rows: &[Row], labels: &[String], path: &Path) -> Result<Vec<Example>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let idx = labels.iter().position(|l| *l == r.label).ok_or_else(|| {
                // A first row of column names this reader did not take for a header
                // (`text,sentiment` in a CSV).
                let header = if i == 0 && (is_column_name(&r.label) || is_column_name(&r.text_a)) {
                    "; a header row? a CSV's header names a `label` column (and `text` or `sentence`), else its rows are LM-BFF's `label,sentence`"
                } else {
                    ""
                };
                Error::Data {
                    path: path.to_path_buf(),
                    line: r.line,
                    message: format!("label {:?} is not one of the task's labels {labels:?}{}{header}", r.label, float_hint(&r.label, labels)),
                }
            })?;
            Ok(Example { text_a: r.text_a.clone(), text_b: r.text_b.clone(), label: Some(idx) })
        })
        .collect()
}

/// A hint for a label not among `labels` that is one of them written as a float (pandas
/// writes an integer column holding a gap so: `1.0`); "" otherwise.
pub fn float_hint(label: &str, labels: &[String]) -> String {
    let whole = label.trim().parse::<f64>().ok().filter(|v| v.fract() == 0.0 && v.abs() < 1e15).map(|v| format!("{v}"));
    whole.filter(|v| labels.contains(v)).map_or(String::new(), |v| format!(" (a number written as a float? the label {v:?} is one)"))
}

/// Whether `path` names a `.csv` file (the extension in any case): LM-BFF's `label,sentence`
/// layout without a header, or columns named by a header row ([`read_csv_rows`]).
pub fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Reads labelled examples from a TSV file with a header ([`read_tsv`]), or from a
/// `.csv` file ([`is_csv`]): LM-BFF's single-sentence layout, `label,sentence` without
/// a header (its sst-5, mr, cr, mpqa, subj and trec splits), or with a header row
/// ([`read_csv_rows`]).
pub fn read_examples(path: &Path, labels: &[String]) -> Result<Vec<Example>> {
    if is_csv(path) {
        return read_csv_examples(path, labels);
    }
    to_examples(&read_tsv(path)?, labels, path)
}

/// The examples of a CSV file ([`read_csv_rows`]); a label not among `labels` is named
/// by its line.
pub fn read_csv_examples(path: &Path, labels: &[String]) -> Result<Vec<Example>> {
    to_examples(&read_csv_rows(path)?, labels, path)
}

/// The rows of a CSV file, labels trimmed and sentences as written: LM-BFF's
/// `label,sentence` layout without a header, or columns named by a header row as a TSV's
/// are ([`read_tsv`]: `text,label`, `sentence1,sentence2,label`, names in any case). The
/// first record is a header when it names a label column (`label`, `score`...), or when
/// every field is a column name and one a text column's (`text`): LM-BFF's rows are a
/// label value and a sentence. A row of another shape (a sentence with an unquoted
/// comma) is named by its line.
#[cfg(feature = "train")]
pub fn read_csv_rows(path: &Path) -> Result<Vec<Row>> {
    Ok(read_csv(path, true)?.0)
}

/// [`read_csv_rows`] for inputs that may be unlabelled (a header without a label
/// column): every row's label is then empty, and the flag says there was none.
#[cfg(feature = "train")]
pub fn read_csv_inputs(path: &Path) -> Result<(Vec<Row>, bool)> {
    read_csv(path, false)
}

#[cfg(feature = "train")]
fn read_csv(path: &Path, need_label: bool) -> Result<(Vec<Row>, bool)> {
    let records = read_csv_records(path)?;
    let data = |line: usize, message: String| Error::Data { path: path.to_path_buf(), line, message };
    // Empty fields after the last are a spreadsheet's trailing comma, not data.
    let fields = |record: &csv::StringRecord, width: usize| -> Vec<String> {
        let mut f: Vec<String> = record.iter().map(str::to_string).collect();
        while f.len() > width && f.last().is_some_and(|x| x.trim().is_empty()) {
            f.pop();
        }
        f
    };
    let Some((first_line, first)) = records.first() else { return Ok((Vec::new(), true)) };
    // (Empty names after the last are a trailing separator, not columns.)
    let mut names: Vec<&str> = first.iter().map(str::trim).collect();
    while names.len() > 1 && names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    let is = |list: &[&str]| names.iter().any(|c| named_in(c, list));
    if !(is(LABEL) || (names.iter().all(|c| is_column_name(c)) && (is(SINGLE) || is(FIRST)))) {
        let rows = records
            .iter()
            .map(|(line, record)| {
                // A third field is a sentence with an unquoted comma: refused, not cut there.
                let f = fields(record, 2);
                let [label, text] = f.as_slice() else {
                    let hint = if f.len() == 1 { "; one text a line? give a .txt file, or name the column with a header row `text`" } else { "" };
                    return Err(data(*line, format!("expected `label,sentence` (LM-BFF's CSV layout; a sentence with a comma in quotes), found {} field(s){hint}", f.len())));
                };
                Ok(Row { line: *line, text_a: text.clone(), text_b: None, label: label.trim().to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((rows, true));
    }
    let Columns { label, a, b, .. } = columns(&names, need_label).map_err(|e| match e {
        ColumnError::Twice(m) | ColumnError::Missing(m) => data(*first_line, format!("{m} (the first row is read as a header: it names columns)")),
    })?;
    let mut rows = Vec::with_capacity(records.len() - 1);
    for (line, record) in &records[1..] {
        let f = fields(record, names.len());
        if f.len() != names.len() {
            let hint = if f.len() > names.len() { " (a comma inside a text that is not in quotes?)" } else { "" };
            return Err(data(*line, format!("{} field(s) where the header names {}{hint}", f.len(), names.len())));
        }
        let row = Row { line: *line, text_a: f[a].clone(), text_b: b.map(|b| f[b].clone()), label: label.map(|l| f[l].trim().to_string()).unwrap_or_default() };
        rows.push(row);
    }
    Ok((rows, label.is_some()))
}

#[cfg(not(feature = "train"))]
pub fn read_csv_rows(path: &Path) -> Result<Vec<Row>> {
    Ok(read_csv_inputs(path)?.0)
}

#[cfg(not(feature = "train"))]
pub fn read_csv_inputs(path: &Path) -> Result<(Vec<Row>, bool)> {
    Err(Error::InvalidArgument(format!("{}: reading CSV files needs a training build of lmbff", path.display())))
}

/// Reads the texts of a file (an unlabeled pool, or texts to exclude from one), by its
/// extension in any case: a `.tsv` file with a header contributes its sentence column(s);
/// a `.csv` file ([`read_csv_inputs`]) its sentences; any other file its non-empty
/// lines, a text per line (a byte-order mark at the start is not text).
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("tsv") => {
            let (rows, _) = read_tsv_inputs(path)?;
            Ok(rows.into_iter().flat_map(|r| std::iter::once(r.text_a).chain(r.text_b)).collect())
        }
        Some("csv") => read_csv_sentences(path),
        _ => {
            let text = read_lines_text(path)?;
            Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        }
    }
}

/// The sentences of a CSV file ([`read_csv_inputs`]: LM-BFF's sst-5, mr, cr, mpqa, subj
/// and trec splits, or a file with a header row, labelled or not), trimmed; a row of
/// another shape is named.
fn read_csv_sentences(path: &Path) -> Result<Vec<String>> {
    Ok(read_csv_inputs(path)?.0.into_iter().flat_map(|r| std::iter::once(r.text_a).chain(r.text_b)).map(|t| t.trim().to_string()).collect())
}

/// The records of a CSV file without a header, each with the file line it starts on. No
/// text of LM-BFF's CSV tasks spans lines: a field that does is a quote left open, which
/// would swallow the rows after it, and is refused, naming its line.
#[cfg(feature = "train")]
pub(crate) fn read_csv_records(path: &Path) -> Result<Vec<(usize, csv::StringRecord)>> {
    if path.is_dir() {
        // (A folder opens on Linux; its read failed as a CSV error at "line 0".)
        return Err(Error::io(path, std::io::Error::other("a folder, not a file")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // The file line of a record's byte offset (the reader's own line count is short after
    // a CRLF). A record's position is where the reader began looking for it: before the
    // line ends (and blank lines) it skipped, which no record starts with. A line ends in
    // LF, CRLF, or a carriage return alone (the reader's own rule: classic Mac OS files).
    // Counted on from the last record's offset (records come in order).
    let counted = std::cell::Cell::new((0usize, 0usize)); // (offset, line ends before it)
    let ends_line = |i: usize| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
    let line_at = |byte: u64| {
        let mut at = (byte as usize).min(bytes.len());
        while bytes.get(at).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            at += 1;
        }
        let (from, mut feeds) = counted.get();
        let from = if at < from { feeds = 0; 0 } else { from };
        feeds += (from..at).filter(|&i| ends_line(i)).count();
        counted.set((at, feeds));
        feeds + 1
    };
    // Flexible: a row of another length is named at its own line by the caller (the
    // reader's own check named the row after the first, "the previous record has 3").
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes.as_slice());
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let data = |line: usize, message: String| Error::Data { path: path.to_path_buf(), line, message };
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(p.byte()));
            match e.kind() {
                // (The reader's own words give its 0-based record and a line of its count.)
                csv::ErrorKind::Utf8 { err, .. } => data(line, format!("not valid UTF-8 (field {} of the row)", err.field() + 1)),
                _ => data(line, e.to_string()),
            }
        })?;
        // The file line the record starts on (a quoted field may span lines).
        let line = record.position().map_or(i + 1, |p| line_at(p.byte()));
        // A line of spaces is a blank line, skipped as a TSV's is.
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.iter().any(|f| f.contains('\n')) {
            return Err(data(line, "a field holds a line break (a quote left open?)".to_string()));
        }
        out.push((line, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labelled examples from LM-BFF's headerless CSV layout (by the extension); a TSV
    /// without a header that looks like one is told so; blank lines before a header are
    /// skipped as they are elsewhere.
    #[cfg(feature = "train")]
    #[test]
    fn examples_from_csv_and_hints_for_headerless_files() {
        let dir = std::env::temp_dir().join(format!("lmbff-examples-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let labels = vec!["0".to_string(), "1".to_string()];
        let csv = dir.join("train.CSV");
        std::fs::write(&csv, "1,\"fun, warm\"\n0,dull\n").unwrap();
        let ex = read_examples(&csv, &labels).unwrap();
        assert_eq!((ex[0].text_a.as_str(), ex[0].label, ex[1].label), ("fun, warm", Some(1), Some(0)));
        std::fs::write(&csv, "2,dull\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("label \"2\" is not one of"), "{e}");
        // A row of another length is named at its own line (the CSV reader named the
        // row after it: "the previous record has 3").
        std::fs::write(&csv, "0,fun, warm\n1,dull\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("found 3 field(s)"), "{e}");
        let tsv = dir.join("train.tsv");
        std::fs::write(&tsv, "1,fun\n0,dull\n").unwrap();
        let e = read_examples(&tsv, &labels).unwrap_err().to_string();
        assert!(e.contains("no `label` column") && e.contains("read as such when named .csv"), "{e}");
        std::fs::write(&tsv, "\n\nsentence\tlabel\nfun\t1\n").unwrap();
        let ex = read_examples(&tsv, &labels).unwrap();
        assert_eq!((ex.len(), ex[0].label), (1, Some(1)));
        std::fs::write(&tsv, "\ntext\tlabel\tlabel\n").unwrap();
        assert!(read_examples(&tsv, &labels).unwrap_err().to_string().contains("line 2"), "the header's own line");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The files users have: a CSV with a header row (its columns by name, in any case;
    /// the label column optional for inputs), column names capitalised in a TSV, a
    /// trailing empty field, a line of spaces. LM-BFF's headerless CSV reads as before.
    #[cfg(feature = "train")]
    #[test]
    fn headers_in_any_case_csv_headers_and_trailing_empty_fields() {
        let dir = std::env::temp_dir().join(format!("lmbff-headers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let csv = dir.join("mine.csv");
        std::fs::write(&csv, "Text,Label\r\n\"fun, warm\",pos\r\ndull,neg,\r\n   \r\n").unwrap();
        let ex = read_examples(&csv, &labels).unwrap();
        assert_eq!(ex.len(), 2, "the header is no example, a line of spaces none either");
        assert_eq!((ex[0].text_a.as_str(), ex[0].label, ex[1].text_a.as_str(), ex[1].label), ("fun, warm", Some(1), "dull", Some(0)));
        let lines: Vec<usize> = read_csv_rows(&csv).unwrap().iter().map(|r| r.line).collect();
        std::fs::write(dir.join("lf.csv"), "Text,Label\n\"fun, warm\",pos\ndull,neg,\n").unwrap();
        let lf: Vec<usize> = read_csv_rows(&dir.join("lf.csv")).unwrap().iter().map(|r| r.line).collect();
        assert_eq!((lines, lf), (vec![2, 3], vec![2, 3]), "lines of the file");
        assert_eq!(read_texts(&csv).unwrap(), vec!["fun, warm", "dull"]);
        // Inputs without labels; pairs by their columns.
        std::fs::write(&csv, "Text\nfun\ndull\n").unwrap();
        let (rows, labelled) = read_csv_inputs(&csv).unwrap();
        assert!(!labelled && rows.len() == 2 && rows[1].text_a == "dull");
        std::fs::write(&csv, "sentence1,sentence2,label\na,b,pos\n").unwrap();
        assert_eq!(read_csv_rows(&csv).unwrap()[0].text_b.as_deref(), Some("b"));
        // A header row missing the label is named as one; a row of another width too.
        std::fs::write(&csv, "Text,Sentence2\nfun,x\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("no `label` column") && e.contains("read as a header"), "{e}");
        std::fs::write(&csv, "text,label\nfun, warm,pos\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("3 field(s) where the header names 2"), "{e}");
        // LM-BFF's layout: a label first, never read as a header; a trailing comma is
        // no third field.
        std::fs::write(&csv, "pos,the text\nneg,a sentence,\n").unwrap();
        let ex = read_examples(&csv, &labels).unwrap();
        assert_eq!((ex.len(), ex[0].text_a.as_str(), ex[1].text_a.as_str()), (2, "the text", "a sentence"));
        // Lines after blank ones, with LF or CRLF, are the file's.
        std::fs::write(&csv, "\n\npos,a\n\n\nneg,b\r\n\r\npos,c\n").unwrap();
        assert_eq!(read_csv_rows(&csv).unwrap().iter().map(|r| r.line).collect::<Vec<_>>(), vec![3, 6, 8]);
        std::fs::write(&csv, "pos,a\r\n\r\nneg,b,x\r\n").unwrap();
        assert!(read_examples(&csv, &labels).unwrap_err().to_string().contains("line 3"), "the bad row's own line");
        // A first row that names a label column is a header (a text column missing is
        // said so); one that names a text column among other words is LM-BFF's row.
        std::fs::write(&csv, "label,review\npos,fun\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("no `sentence` or `text` column"), "{e}");
        let intents = vec!["question".to_string(), "request".to_string()];
        std::fs::write(&csv, "question,How do I go?\nrequest,Book it\n").unwrap();
        assert_eq!(read_examples(&csv, &intents).unwrap().len(), 2, "a label named as a column is data");
        std::fs::write(&csv, "Text,sentiment\nfun,pos\n").unwrap();
        let e = read_examples(&csv, &labels).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("a header row? a CSV's header names a `label` column"), "{e}");
        std::fs::write(&csv, "fun\ndull\n").unwrap();
        assert!(read_examples(&csv, &labels).unwrap_err().to_string().contains("one text a line? give a .txt file"));
        // A header's trailing comma names no column; a file of lone carriage returns is
        // named as such, not read as one row.
        std::fs::write(&csv, "text,label,\nfun,pos\n").unwrap();
        assert_eq!(read_examples(&csv, &labels).unwrap().len(), 1);
        // The CSV reader ends a line at a carriage return alone (classic Mac OS), and
        // names rows by those lines.
        std::fs::write(&csv, "pos,a\rneg,b\rpos,c,d\r").unwrap();
        assert!(read_examples(&csv, &labels).unwrap_err().to_string().contains("line 3"));
        let txt = dir.join("pool.txt");
        std::fs::write(&txt, "a\rb\r").unwrap();
        assert!(read_texts(&txt).unwrap_err().to_string().contains("carriage return alone"));
        let tsv = dir.join("mine.tsv");
        std::fs::write(&tsv, "Sentence\tLabel\t\nfun\tpos\t\n").unwrap();
        let ex = read_examples(&tsv, &labels).unwrap();
        assert_eq!((ex[0].text_a.as_str(), ex[0].label), ("fun", Some(1)));
        std::fs::write(&tsv, "sentence\tlabel\nfun\tpos\tx\n").unwrap();
        assert!(read_examples(&tsv, &labels).unwrap_err().to_string().contains("a tab inside a text?"), "a field with text is refused");
        std::fs::write(&tsv, "Sentence\tsentence\tlabel\n").unwrap();
        assert!(read_examples(&tsv, &labels).unwrap_err().to_string().contains("named twice"), "in any case");
        std::fs::write(&tsv, "sentence\tlabel\rfun\tpos\r").unwrap();
        assert!(read_examples(&tsv, &labels).unwrap_err().to_string().contains("carriage return alone"));
        std::fs::write(&tsv, "sentence\tlabel\nfun\t1.0\n").unwrap();
        let e = read_examples(&tsv, &["0".to_string(), "1".to_string()]).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("written as a float? the label \"1\" is one"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A TSV written with CSV quoting is named by its quoted header; texts are kept as
    /// written, also where they look CSV-quoted (GLUE's files hold such texts: QQP's
    /// k-shot splits and mr's training set could not be read while they were refused).
    #[test]
    fn quoted_tsv_headers_are_named_and_texts_kept() {
        let dir = std::env::temp_dir().join(format!("lmbff-quoted-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tsv = dir.join("train.tsv");
        std::fs::write(&tsv, "\"sentence\"\t\"label\"\nfun\t1\n").unwrap();
        let e = read_tsv(&tsv).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("no `label` column") && e.contains("QUOTE_NONE"), "{e}");
        std::fs::write(&tsv, "sentence\tlabel\n\"a \"\"hit\"\" it is\"\t1\n\" \"\" it's all about the image . \"\"\"\t0\n").unwrap();
        let rows = read_tsv(&tsv).unwrap();
        assert_eq!((rows[0].text_a.as_str(), rows[1].text_a.as_str()), ("\"a \"\"hit\"\" it is\"", "\" \"\" it's all about the image . \"\"\""));
        std::fs::write(&tsv, "sentence\tlabel\n\"the movie\"\t1\nit is \"\"fine\"\"\t0\n").unwrap();
        let rows = read_tsv(&tsv).unwrap();
        assert_eq!((rows[0].text_a.as_str(), rows[1].text_a.as_str()), ("\"the movie\"", "it is \"\"fine\"\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Texts to exclude are read by the file's layout: LM-BFF's `label,sentence` CSV test
    /// sets gave `0,"simplistic ."` as the text, which matched nothing, silently.
    #[cfg(feature = "train")]
    #[test]
    fn texts_are_read_by_layout() {
        let dir = std::env::temp_dir().join(format!("lmbff-texts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let csv = write("test.CSV", "0,\"simplistic , silly and tedious .\"\r\n1,fun\n");
        assert_eq!(read_texts(&csv).unwrap(), ["simplistic , silly and tedious .", "fun"]);
        let tsv = write("t.tsv", "sentence\tlabel\nfun\t1\n");
        assert_eq!(read_texts(&tsv).unwrap(), ["fun"]);
        let txt = write("pool.txt", "\u{feff}first line\n\n second \n");
        assert_eq!(read_texts(&txt).unwrap(), ["first line", "second"]);
        let bad = write("bad.csv", "0,a,b\n");
        let e = read_texts(&bad).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("expected `label,sentence`"), "{e}");
        // Bytes that are not UTF-8 are named by line (they read as an I/O failure), and a
        // folder named .csv is a folder (it was a CSV error at "line 0").
        let latin1 = dir.join("latin1.txt");
        std::fs::write(&latin1, b"fine\nna\xefve\n").unwrap();
        let e = read_texts(&latin1).unwrap_err().to_string();
        assert!(e.contains("latin1.txt, line 2: not valid UTF-8 (at byte 3 of the line)"), "{e}");
        let folder = dir.join("folder.csv");
        std::fs::create_dir_all(&folder).unwrap();
        let e = read_texts(&folder).unwrap_err().to_string();
        assert!(e.contains("cannot read or write") && e.contains("a folder, not a file"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    fn read(name: &str, text: &str) -> Result<Vec<Row>> {
        let dir = std::env::temp_dir().join(format!("lmbff-data-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tsv");
        std::fs::write(&path, text).unwrap();
        let rows = read_tsv(&path);
        std::fs::remove_dir_all(&dir).ok();
        rows
    }

    /// SNLI's layout: the header names `label1` and `gold_label`, a row holds one or five
    /// annotator labels and the gold label last. It used to take the second annotator's.
    #[test]
    fn snli_gold_label_is_the_last_field() {
        let text = "index\tsentence1\tsentence2\tlabel1\tgold_label\n\
                    1\tA man sleeps.\tA man rests.\tentailment\tentailment\n\
                    2\tA dog runs.\tA cat sits.\tneutral\tcontradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\n";
        let rows = read("snli", text).unwrap();
        let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.text_b.as_deref().unwrap(), r.label.as_str())).collect();
        assert_eq!(got, [("A man rests.", "entailment"), ("A cat sits.", "contradiction")]);
        // One or five annotators, nothing between: a tab inside a sentence there shifted
        // the texts without a word.
        let tabbed = "index\tsentence1\tsentence2\tlabel1\tgold_label\n1\tA man\tsleeps.\tA man rests.\tneutral\tneutral\n";
        let err = read("snli-tab", tabbed).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("6 tab-separated fields where the header names 5"), "{err}");
    }

    /// A column is taken by the first of its names the header has (`label` before a
    /// `score` beside it; `sentence` before `text`), not by its place.
    #[test]
    fn columns_go_by_name_order_not_place() {
        let rows = read("scored.tsv", "sentence\tscore\tlabel\nfun\t0.93\t1\n").unwrap();
        assert_eq!((rows[0].text_a.as_str(), rows[0].label.as_str()), ("fun", "1"));
        let rows = read("texts.tsv", "text\tsentence\tlabel\nid-7\tfun\t1\n").unwrap();
        assert_eq!(rows[0].text_a, "fun");
    }

    /// Elsewhere a row with more fields than the header is refused, naming its line (a
    /// tab inside a sentence used to cut the sentence there, silently).
    #[test]
    fn a_column_named_twice_is_refused() {
        let err = read("twice.tsv", "sentence\tlabel\tlabel\nfun\t1\t0\n").unwrap_err().to_string();
        assert!(err.contains("column `label` is named twice"), "{err}");
        // Columns it does not read may repeat.
        assert_eq!(read("notes.tsv", "note\tsentence\tnote\tlabel\na\tfun\tb\t1\n").unwrap()[0].text_a, "fun");
    }

    #[test]
    fn extra_fields_are_refused() {
        // A header ending in gold_label without annotator columns is no SNLI file: a tab
        // in its second sentence was read as the extra annotators' (that sentence lost).
        let e = read("gold", "sentence1\tsentence2\tgold_label\nA man\tsleeps\tA man rests.\tentailment\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("4 tab-separated fields where the header names 3"), "{e}");
        let e = read("extra", "sentence\tlabel\nfine\t1\ngood\tmovie\t1\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("3 tab-separated fields where the header names 2"), "{e}");
        let e = read("fewer", "sentence\tlabel\nfine\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("found 1"), "{e}");
    }

    /// A spreadsheet's export: spaces around column names and label values, Windows
    /// line ends. Names and labels are read without them; texts as written.
    #[test]
    fn spaces_around_names_and_labels_are_not_part_of_them() {
        let rows = read("spaces", "sentence \t label\r\n a fine film \t 1 \r\nbad\t0\r\n").unwrap();
        let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.text_a.as_str(), r.label.as_str())).collect();
        assert_eq!(got, [(" a fine film ", "1"), ("bad", "0")]);
    }
}
