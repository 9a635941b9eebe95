//! Demonstrations (LM-BFF): one labelled example per class appended to the query. During
//! training a fresh set is drawn for every query at every step, never the query itself;
//! at inference a few fixed sets are drawn once and the label logits averaged over them.

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Example;
use crate::{Error, Result};

/// The labelled examples demonstrations are drawn from, indexed by class.
#[derive(Debug, Clone)]
pub struct DemoPool {
    examples: Vec<Example>,
    by_class: Vec<Vec<usize>>,
}

impl DemoPool {
    /// A pool over `examples`, which must all be labelled with a class below `num_labels`.
    pub fn new(examples: &[Example], num_labels: usize) -> Result<Self> {
        let mut by_class = vec![Vec::new(); num_labels];
        for (i, e) in examples.iter().enumerate() {
            let l = e.label.ok_or_else(|| Error::InvalidArgument("a demonstration example has no label".into()))?;
            by_class
                .get_mut(l)
                .ok_or_else(|| Error::InvalidArgument(format!("demonstration label {l} is out of range ({num_labels} labels)")))?
                .push(i);
        }
        Ok(DemoPool { examples: examples.to_vec(), by_class })
    }

    /// One example per class, in class order, never example `exclude` (the query); a
    /// class whose only example is the query is left out of the set.
    pub fn sample(&self, rng: &mut ChaCha8Rng, exclude: Option<usize>) -> Vec<Example> {
        self.by_class
            .iter()
            .filter_map(|members| {
                let candidates: Vec<usize> = members.iter().copied().filter(|&i| Some(i) != exclude).collect();
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
        assert_eq!(pool.inference_sets(7, 3), pool.inference_sets(7, 3), "inference sets depend on the seed alone");
        assert!(DemoPool::new(&[Example::single("x", None)], 2).is_err());
        assert!(DemoPool::new(&[ex("x", 2)], 2).is_err());
    }
}
