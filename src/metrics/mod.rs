//! Scores from label logits: argmax, softmax, the mean over demonstration sets, and the
//! metrics the evaluation reports. Plain Rust (no libtorch): training and serving share it.

/// Element-wise mean of several [n][labels] logit tables (LM-BFF averages the label
/// logits over demonstration sets, not the probabilities). Tables must agree in shape.
pub fn mean_rows(tables: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let Some(first) = tables.first() else { return Vec::new() };
    let k = tables.len() as f32;
    first
        .iter()
        .enumerate()
        .map(|(r, row)| (0..row.len()).map(|j| tables.iter().map(|t| t[r][j]).sum::<f32>() / k).collect())
        .collect()
}

/// Fraction of rows whose argmax equals the gold class.
pub fn accuracy(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    if logits.is_empty() {
        return f64::NAN;
    }
    let hits = logits.iter().zip(gold).filter(|(row, &g)| argmax(row) == g).count();
    hits as f64 / logits.len() as f64
}

/// Accuracy after subtracting each class's mean logit over the set: a diagnostic of
/// whether the logits rank examples correctly, whatever their bias towards one label
/// word. It uses the set's own (unlabelled) statistics, so it is not a deployable score.
pub fn centered_accuracy(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    if logits.is_empty() {
        return f64::NAN;
    }
    let k = logits[0].len();
    let mean: Vec<f32> = (0..k).map(|j| logits.iter().map(|r| r[j]).sum::<f32>() / logits.len() as f32).collect();
    let centered: Vec<Vec<f32>> = logits.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect();
    accuracy(&centered, gold)
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Row-wise softmax.
pub fn softmax_rows(logits: &[Vec<f32>]) -> Vec<Vec<f32>> {
    logits
        .iter()
        .map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        })
        .collect()
}

/// P(X >= k) for X ~ Binomial(n, p): the one-sided p-value of k successes in n trials
/// against a success rate of `p` (exact sum, in logs for stability).
pub fn binomial_upper_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // ln C(n, i), built up from ln C(n, 0) = 0.
    let mut ln_c = 0.0f64;
    let mut total = 0.0f64;
    for i in 0..=n {
        if i > 0 {
            ln_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        if i >= k {
            total += (ln_c + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp();
        }
    }
    total.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_centering() {
        // Always prefers class 1, but ranks correctly.
        let logits = vec![vec![0.0, 1.0], vec![0.0, 3.0], vec![0.0, 1.2], vec![0.0, 2.8]];
        let gold = [0, 1, 0, 1];
        assert_eq!(accuracy(&logits, &gold), 0.5);
        assert_eq!(centered_accuracy(&logits, &gold), 1.0);
        assert!(accuracy(&[], &[]).is_nan());
        let p = softmax_rows(&[vec![0.0, 0.0]]);
        assert_eq!(p, vec![vec![0.5, 0.5]]);
        let m = mean_rows(&[vec![vec![1.0, 2.0]], vec![vec![3.0, -2.0]]]);
        assert_eq!(m, vec![vec![2.0, 0.0]]);
        assert!(mean_rows(&[]).is_empty());
    }

    #[test]
    fn binomial_tail_matches_hand_sums() {
        // P(X >= 2), X ~ Bin(3, 0.5) = (3 + 1) / 8.
        assert!((binomial_upper_tail(3, 2, 0.5) - 0.5).abs() < 1e-12);
        // P(X >= 3), X ~ Bin(3, 1/3) = 1/27.
        assert!((binomial_upper_tail(3, 3, 1.0 / 3.0) - 1.0 / 27.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_upper_tail(10, 11, 0.3), 0.0);
        // 22 of 32 at chance 1/2: p = 0.025 (significant); 20 of 32: p = 0.108.
        assert!((binomial_upper_tail(32, 22, 0.5) - 0.025051).abs() < 1e-5);
        assert!((binomial_upper_tail(32, 20, 0.5) - 0.107664).abs() < 1e-5);
    }
}
