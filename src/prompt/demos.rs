//! Demonstrations (LM-BFF): one labelled example per class appended to the query. During
//! training a fresh set is drawn for every query at every step, never the query itself
//! (nor a copy of its text registered again);
//! at inference a few fixed sets are drawn once and the label logits averaged over them.
//! With similarity filtering (LM-BFF's `demo_filter`), the candidates of each class are
//! its examples most similar to the query by sentence embedding, and the sets are the
//! query's own.

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Example;
use crate::{Error, Result};

/// Most demonstration sets averaged at evaluation and prediction (LM-BFF averages 16;
/// each set is one more forward pass per input); a predictor refuses an export asking
/// for more.
pub const MAX_DEMO_SETS: usize = 64;

/// The labelled examples demonstrations are drawn from, indexed by class.
#[derive(Debug, Clone)]
pub struct DemoPool {
    examples: Vec<Example>,
    by_class: Vec<Vec<usize>>,
    /// L2-normalised sentence embeddings of `examples` (similarity filtering only).
    embeddings: Option<Vec<Vec<f32>>>,
    /// Examples of one group are one query's: a query's demonstrations come from the
    /// other groups (examples with the same text, or with [`DemoPool::grouped_by_input`]
    /// the same first text, are one group).
    groups: Vec<usize>,
}

impl DemoPool {
    /// A pool over `examples`, which must all be labelled with a class below `num_labels`.
    /// A text registered twice is one group: the query's copy never demonstrates it (its
    /// label word would give the answer away, as the query itself would). Texts are
    /// compared by [`same_text_key`]: case and runs of white space aside, so a copy an
    /// uncased vocabulary renders the same ("Great film." and "great  film.") is one too.
    pub fn new(examples: &[Example], num_labels: usize) -> Result<Self> {
        let mut by_class = vec![Vec::new(); num_labels];
        for (i, e) in examples.iter().enumerate() {
            let l = e.label.ok_or_else(|| Error::InvalidArgument("a demonstration example has no label".into()))?;
            by_class
                .get_mut(l)
                .ok_or_else(|| Error::InvalidArgument(format!("demonstration label {l} is out of range ({num_labels} labels)")))?
                .push(i);
        }
        let mut first: std::collections::HashMap<(String, Option<String>), usize> = std::collections::HashMap::new();
        let groups = examples
            .iter()
            .enumerate()
            .map(|(i, e)| *first.entry((same_text_key(&e.text_a), e.text_b.as_deref().map(same_text_key))).or_insert(i))
            .collect();
        Ok(DemoPool { examples: examples.to_vec(), by_class, embeddings: None, groups })
    }

    /// The pool with examples that share their first text in one group: a multi-label
    /// task's (input, label) pairs of one input. A query then never sees its own input
    /// as a demonstration (with another label's answer, it would give its own away).
    pub fn grouped_by_input(mut self) -> Self {
        let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        self.groups = self.examples.iter().enumerate().map(|(i, e)| *first.entry(same_text_key(&e.text_a)).or_insert(i)).collect();
        self
    }

    /// Whether example `i` may be a demonstration for the pool's example `query`.
    fn allowed(&self, i: usize, query: Option<usize>) -> bool {
        query.is_none_or(|q| self.groups.get(q) != Some(&self.groups[i]))
    }

    /// The pool with a sentence embedding (L2-normalised) for each example, in order, for
    /// similarity-filtered demonstrations.
    pub fn with_embeddings(mut self, embeddings: Vec<Vec<f32>>) -> Result<Self> {
        let dim = embeddings.first().map_or(0, Vec::len);
        if embeddings.len() != self.examples.len() || dim == 0 || embeddings.iter().any(|e| e.len() != dim) {
            return Err(Error::InvalidArgument(format!(
                "demonstration filter: {} embeddings (of sizes {:?}) for {} examples",
                embeddings.len(),
                embeddings.iter().map(Vec::len).collect::<std::collections::BTreeSet<_>>(),
                self.examples.len()
            )));
        }
        self.embeddings = Some(embeddings);
        Ok(self)
    }

    /// The examples, in the order given.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Similarity filtering: each class's examples other than `exclude`, ranked by cosine
    /// similarity to `query` (a dot product of normalised embeddings), most similar first
    /// (ties: the earlier example), cut to the most similar half, rounded up. LM-BFF
    /// samples from the top half of each class by SBERT similarity.
    pub fn most_similar(&self, query: &[f32], exclude: Option<usize>) -> Result<Vec<Vec<usize>>> {
        let emb = self.embeddings.as_ref().ok_or_else(|| Error::InvalidArgument("this demonstration pool has no embeddings to filter by".into()))?;
        if query.len() != emb[0].len() {
            return Err(Error::InvalidArgument(format!("demonstration filter: a query embedding of size {}, the pool's are {}", query.len(), emb[0].len())));
        }
        let sim = |i: usize| -> f32 { emb[i].iter().zip(query).map(|(a, b)| a * b).sum() };
        Ok(self
            .by_class
            .iter()
            .map(|members| {
                let mut ranked: Vec<(f32, usize)> = members.iter().copied().filter(|&i| self.allowed(i, exclude)).map(|i| (sim(i), i)).collect();
                ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                ranked.truncate(ranked.len().div_ceil(2));
                ranked.into_iter().map(|(_, i)| i).collect()
            })
            .collect())
    }

    /// Training with filtering: one example per class, drawn uniformly from its most
    /// similar half to `query` (never `exclude`, the query itself).
    pub fn sample_similar(&self, rng: &mut ChaCha8Rng, query: &[f32], exclude: Option<usize>) -> Result<Vec<Example>> {
        Ok(self.most_similar(query, exclude)?.iter().filter_map(|c| c.choose(rng).map(|&i| self.examples[i].clone())).collect())
    }

    /// Training with filtering, for the pool's own example `member` as the query: a set
    /// drawn as `sample_similar` draws it, never `member` itself.
    pub fn sample_similar_for(&self, rng: &mut ChaCha8Rng, member: usize) -> Result<Vec<Example>> {
        let query = self.embeddings.as_ref().and_then(|e| e.get(member)).ok_or_else(|| Error::InvalidArgument(format!("demonstration filter: no embedding for example {member}")))?;
        self.sample_similar(rng, query, Some(member))
    }

    /// Inference with filtering: `n` sets for `query`. Set k takes each class's k-th most
    /// similar example, cycling through the most similar half, so a query's sets depend on
    /// its embedding alone (no random draw: the exported model picks the same ones), and
    /// one set is each class's nearest example.
    pub fn similar_sets(&self, query: &[f32], n: usize) -> Result<Vec<Vec<Example>>> {
        let ranked = self.most_similar(query, None)?;
        Ok((0..n).map(|k| ranked.iter().filter(|c| !c.is_empty()).map(|c| self.examples[c[k % c.len()]].clone()).collect()).collect())
    }

    /// One example per class, in class order, never example `exclude` (the query) or one
    /// of its group; a class whose only examples are those is left out of the set.
    pub fn sample(&self, rng: &mut ChaCha8Rng, exclude: Option<usize>) -> Vec<Example> {
        self.by_class
            .iter()
            .filter_map(|members| {
                let candidates: Vec<usize> = members.iter().copied().filter(|&i| self.allowed(i, exclude)).collect();
                candidates.choose(rng).map(|&i| self.examples[i].clone())
            })
            .collect()
    }

    /// `n` demonstration sets for inference, drawn from `seed` alone.
    pub fn inference_sets(&self, seed: u64, n: usize) -> Vec<Vec<Example>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x64656d6f); // "demo": apart from the training stream
        (0..n).map(|_| self.sample(&mut rng, None)).collect()
    }
}

/// What two texts share when they are copies of one input for the demonstrations' rule:
/// the words, lowercased, one space apart (space around the text renders as none, and an
/// uncased vocabulary reads case away; a cased one keeps it, and such a near-copy is kept
/// out all the same, as it would give its answer away too).
fn same_text_key(text: &str) -> String {
    text.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: &str, l: usize) -> Example {
        Example::single(t, Some(l))
    }

    #[test]
    fn one_per_class_never_the_query() {
        let pool = DemoPool::new(&[ex("a", 0), ex("b", 1), ex("c", 0), ex("d", 1)], 2).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let set = pool.sample(&mut rng, Some(0));
            assert_eq!(set.iter().map(|e| e.label.unwrap()).collect::<Vec<_>>(), vec![0, 1]);
            assert_eq!(set[0].text_a, "c", "the query (a) is never its own demonstration");
        }
        let lone = DemoPool::new(&[ex("a", 0), ex("b", 1)], 2).unwrap();
        assert_eq!(lone.sample(&mut rng, Some(0)).len(), 1, "a class with only the query is skipped");
        // A text registered twice: its copy is not a demonstration for it either.
        // (Space around a text renders as none, and case is aside: " A  b " is "a b"
        // registered twice.)
        let twice = DemoPool::new(&[ex("a b", 0), ex("b", 1), ex(" A  b ", 0), ex("c", 0)], 2).unwrap();
        for _ in 0..50 {
            assert_eq!(twice.sample(&mut rng, Some(0))[0].text_a, "c");
            assert_eq!(twice.sample(&mut rng, Some(2))[0].text_a, "c");
        }
        assert_eq!(pool.inference_sets(7, 3), pool.inference_sets(7, 3), "inference sets depend on the seed alone");
        assert!(DemoPool::new(&[Example::single("x", None)], 2).is_err());
        assert!(DemoPool::new(&[ex("x", 2)], 2).is_err());
    }

    /// A multi-label task's pairs: (input, label name) with its yes/no answer. Grouped
    /// by input, a query's demonstrations never come from its own input, by sampling or
    /// by similarity (where its sibling pairs would be the nearest).
    #[test]
    fn grouped_pairs_never_show_the_query_its_own_input() {
        let pair = |x: &str, label: &str, yes: usize| Example { text_a: x.into(), text_b: Some(label.into()), label: Some(yes) };
        let examples = [pair("x", "music", 1), pair("x", "story", 0), pair("y", "music", 0), pair("y", "story", 1), pair("z", "music", 1)];
        let emb: Vec<Vec<f32>> = [1.0f32, 1.0, 0.0, 0.0, 0.5].iter().map(|&a| vec![a, (1.0 - a * a).sqrt()]).collect();
        let plain = DemoPool::new(&examples, 2).unwrap();
        let grouped = plain.clone().grouped_by_input().with_embeddings(emb.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen_sibling = false;
        for _ in 0..50 {
            assert!(grouped.sample(&mut rng, Some(0)).iter().all(|e| e.text_a != "x"));
            assert!(grouped.sample_similar_for(&mut rng, 0).unwrap().iter().all(|e| e.text_a != "x"));
            seen_sibling |= plain.sample(&mut rng, Some(0)).iter().any(|e| e.text_a == "x");
        }
        assert!(seen_sibling, "ungrouped, the sibling pair is drawn (what grouping prevents)");
    }

    #[test]
    fn similarity_filter_takes_each_class_nearest_half() {
        // Class 0: a (near the query), c (far), e (middle); class 1: b (far), d (near).
        let examples = [ex("a", 0), ex("b", 1), ex("c", 0), ex("d", 1), ex("e", 0)];
        let unit = |x: f32| vec![x, (1.0 - x * x).sqrt()];
        let emb = vec![unit(0.9), unit(-0.5), unit(-0.9), unit(0.8), unit(0.2)];
        let pool = DemoPool::new(&examples, 2).unwrap().with_embeddings(emb).unwrap();
        let q = unit(1.0);
        assert_eq!(pool.most_similar(&q, None).unwrap(), vec![vec![0, 4], vec![3]], "top half, rounded up, most similar first");
        assert_eq!(pool.most_similar(&q, Some(0)).unwrap(), vec![vec![4], vec![3]], "the query is never a candidate");
        let sets = pool.similar_sets(&q, 3).unwrap();
        let texts: Vec<Vec<&str>> = sets.iter().map(|s| s.iter().map(|e| e.text_a.as_str()).collect()).collect();
        assert_eq!(texts, vec![vec!["a", "d"], vec!["e", "d"], vec!["a", "d"]], "set k: the k-th nearest, cycling");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let s = pool.sample_similar(&mut rng, &q, Some(4)).unwrap();
            assert_eq!((s[0].text_a.as_str(), s[1].text_a.as_str()), ("a", "d"));
            // For example c as the query: e is nearer to it than a is, and c never its own.
            let own = pool.sample_similar_for(&mut rng, 2).unwrap();
            assert_eq!(own[0].text_a, "e");
            assert_eq!(own[1].text_a, "b", "b is c's nearest of class 1");
        }
        assert!(pool.most_similar(&[1.0], None).is_err(), "a query of the wrong size");
        assert!(DemoPool::new(&examples, 2).unwrap().most_similar(&q, None).is_err(), "no embeddings");
        assert!(DemoPool::new(&examples, 2).unwrap().with_embeddings(vec![unit(0.0)]).is_err());
    }
}
