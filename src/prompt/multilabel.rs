//! Multi-label tasks as one yes/no prompt per label (PET's and OpenPrompt's usual answer):
//! each input is read once per label as a sentence pair, the input and the label's name
//! (`{text_a} Is it about {text_b}? {mask}.`), and a two-class prompt model (class 0
//! "no", class 1 "yes") says whether the label applies. One masked LM serves every label:
//! training, evaluation, export and the predictor all work on the expanded pairs, and
//! the predictor gathers each input's P(yes) per label.

use super::Example;
use crate::{Error, Result};

/// Class index of "the label applies" in the per-label yes/no prompt (0 is "no").
pub const YES: usize = 1;

/// A label applies when its probability is at least this.
pub const MULTI_LABEL_THRESHOLD: f32 = 0.5;

/// The labels of a multi-label task; their names are what the template reads as
/// sentence 1 (`text_b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiLabel {
    names: Vec<String>,
}

impl MultiLabel {
    pub fn new(names: &[String]) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::InvalidArgument("a multi-label task needs at least one label".into()));
        }
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(Error::InvalidArgument(format!("multi-label name {i} is empty: the template reads it as text")));
            }
            // Rendering trims a name, and a template may change its first letter's case
            // (`*+sentl_1*`): names that could render alike would share one answer.
            let same = |m: &String| m.trim().to_lowercase() == n.trim().to_lowercase();
            if let Some(m) = names[..i].iter().find(|m| same(m)) {
                return Err(Error::InvalidArgument(format!(
                    "multi-label names {m:?} and {n:?} are one name (rendered without surrounding spaces, and a template may change the case): \
                     each label is asked about by its name"
                )));
            }
        }
        Ok(MultiLabel { names: names.to_vec() })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The yes/no pairs of `inputs` (single sentences), input by input and label by label
    /// within an input (`inputs.len() * self.len()` pairs). With `labels` (one set per
    /// input), a pair's class is yes when its label is in the input's set.
    pub fn expand(&self, inputs: &[Example], labels: Option<&[Vec<usize>]>) -> Result<Vec<Example>> {
        if let Some(l) = labels {
            if l.len() != inputs.len() {
                return Err(Error::InvalidArgument(format!("{} label sets for {} inputs", l.len(), inputs.len())));
            }
            if let Some(bad) = l.iter().flatten().find(|&&x| x >= self.len()) {
                return Err(Error::InvalidArgument(format!("multi-label index {bad} is out of range ({} labels)", self.len())));
            }
        }
        let mut out = Vec::with_capacity(inputs.len() * self.len());
        for (i, ex) in inputs.iter().enumerate() {
            if ex.text_b.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "input {i}: a multi-label task reads single texts (its template's second sentence is the label's name)"
                )));
            }
            for l in 0..self.names.len() {
                let mut pair = self.pair(ex, l);
                pair.label = labels.map(|sets| if sets[i].contains(&l) { YES } else { 1 - YES });
                out.push(pair);
            }
        }
        Ok(out)
    }

    /// The yes/no pair of one single-sentence input and label `l` (no class), as
    /// [`MultiLabel::expand`] makes it.
    pub fn pair(&self, input: &Example, l: usize) -> Example {
        Example { text_a: input.text_a.clone(), text_b: Some(self.names[l].clone()), label: None }
    }

    /// Gathers per-pair P(yes) (`rows`: the two-class probabilities of `expand`'s pairs,
    /// in its order) into one row per input of each label's probability.
    pub fn gather(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if !rows.len().is_multiple_of(self.len()) || rows.iter().any(|r| r.len() != 2) {
            return Err(Error::InvalidArgument(format!("{} yes/no rows do not cover {} labels per input", rows.len(), self.len())));
        }
        Ok(rows.chunks(self.len()).map(|c| c.iter().map(|r| r[YES]).collect()).collect())
    }

    /// Splits rows of per-label yes/no logits side by side (`[no_0, yes_0, no_1, yes_1,
    /// ...]`, one row per input: a multi-label sentence-embedding model's classifier) into
    /// one two-class row per (input, label) pair, in [`MultiLabel::expand`]'s order.
    pub fn split_heads(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if let Some(bad) = rows.iter().find(|r| r.len() != 2 * self.len()) {
            return Err(Error::InvalidArgument(format!("a row of {} logits does not hold a yes/no pair for each of {} labels", bad.len(), self.len())));
        }
        Ok(rows.iter().flat_map(|r| r.chunks(2).map(<[f32]>::to_vec)).collect())
    }
}

/// The labels whose probability reaches [`MULTI_LABEL_THRESHOLD`].
pub fn applied(probs: &[f32]) -> Vec<usize> {
    probs.iter().enumerate().filter(|(_, &p)| p >= MULTI_LABEL_THRESHOLD).map(|(i, _)| i).collect()
}

/// The yes/no answer of each (input, label) pair's two logits by the predictor's rule:
/// [`YES`] when P(yes) reaches [`MULTI_LABEL_THRESHOLD`] (so an exact tie is yes, where
/// an argmax would take the first class, no), 0 otherwise, and
/// [`crate::metrics::NO_CLASS`] for a row holding NaN (a diverged model), which the
/// metrics count wrong. Training's dev selection and the harness score multi-label pairs
/// with it, so they count what a host is served.
pub fn decisions(rows: &[Vec<f32>]) -> Vec<usize> {
    crate::metrics::softmax_rows(rows)
        .iter()
        .zip(rows)
        .map(|(p, r)| match p.get(YES) {
            _ if r.iter().any(|v| v.is_nan()) => crate::metrics::NO_CLASS,
            Some(&y) if y >= MULTI_LABEL_THRESHOLD => YES,
            _ => 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_inputs_into_yes_no_pairs_and_gathers_them_back() {
        let m = MultiLabel::new(&["sports".into(), "money".into(), "travel".into()]).unwrap();
        let ex = [Example::single("a", None), Example::single("b", None)];
        let pairs = m.expand(&ex, Some(&[vec![0, 2], vec![]])).unwrap();
        let got: Vec<(&str, &str, usize)> = pairs.iter().map(|p| (p.text_a.as_str(), p.text_b.as_deref().unwrap(), p.label.unwrap())).collect();
        assert_eq!(got, vec![("a", "sports", 1), ("a", "money", 0), ("a", "travel", 1), ("b", "sports", 0), ("b", "money", 0), ("b", "travel", 0)]);
        assert!(m.expand(&ex, None).unwrap().iter().all(|p| p.label.is_none()));
        let rows: Vec<Vec<f32>> = [0.9, 0.2, 0.6, 0.1, 0.5, 0.3].iter().map(|&y| vec![1.0 - y, y]).collect();
        let probs = m.gather(&rows).unwrap();
        assert_eq!(probs, vec![vec![0.9, 0.2, 0.6], vec![0.1, 0.5, 0.3]]);
        assert_eq!((applied(&probs[0]), applied(&probs[1])), (vec![0, 2], vec![1]));
        // A tie is yes, as the predictor's p >= 0.5 has it (argmax would say no).
        let rows = [vec![0.3, 0.3], vec![0.2, 0.1], vec![0.1, 0.2], vec![f32::NAN, 0.0]];
        assert_eq!(decisions(&rows), vec![YES, 0, YES, crate::metrics::NO_CLASS]);
        assert_eq!(crate::metrics::argmax_rows(&rows)[0], 0, "the tie the rule settles");
        assert!(m.gather(&rows[..4]).is_err());
        assert!(m.expand(&ex, Some(&[vec![3], vec![]])).is_err(), "label out of range");
        assert!(m.expand(&[Example { text_b: Some("x".into()), ..Example::single("a", None) }], None).is_err(), "pairs are refused");
        assert!(MultiLabel::new(&["a".into(), "a".into()]).is_err());
        // Names that render alike (trimmed; a template may lower the first letter).
        assert!(MultiLabel::new(&["sports".into(), "sports ".into()]).is_err());
        assert!(MultiLabel::new(&["Sports".into(), "sports".into()]).is_err());
        assert!(MultiLabel::new(&[" ".into()]).is_err());
        // Heads side by side split into the pairs' order.
        let heads = vec![vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]];
        let split = m.split_heads(&heads).unwrap();
        assert_eq!(split.len(), pairs.len());
        assert_eq!((split[1].clone(), split[5].clone()), (vec![2.0, 3.0], vec![10.0, 11.0]));
        assert!(m.split_heads(&[vec![0.0; 4]]).is_err());
    }
}
