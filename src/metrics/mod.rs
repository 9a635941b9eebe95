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
}
