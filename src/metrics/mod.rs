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

/// Fraction of rows whose argmax equals the gold class; a row holding NaN (a diverged
/// model) is wrong, not the first class.
pub fn accuracy(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    same_len(logits.len(), gold.len());
    if logits.is_empty() {
        return f64::NAN;
    }
    let hits = logits.iter().zip(gold).filter(|(row, &g)| !row.iter().any(|v| v.is_nan()) && argmax(row) == g).count();
    hits as f64 / logits.len() as f64
}

/// Accuracy after subtracting each class's mean logit over the set: a diagnostic of
/// whether the logits rank examples correctly, whatever their bias towards one label
/// word. It uses the set's own (unlabelled) statistics, so it is not a deployable score.
pub fn centered_accuracy(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    same_len(logits.len(), gold.len());
    if logits.is_empty() {
        return f64::NAN;
    }
    let k = logits[0].len();
    let mean: Vec<f32> = (0..k).map(|j| logits.iter().map(|r| r[j]).sum::<f32>() / logits.len() as f32).collect();
    let centered: Vec<Vec<f32>> = logits.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect();
    accuracy(&centered, gold)
}

/// The metrics pair row i of their first argument with gold label i: tables of
/// different lengths are a caller's bug (zip would score a prefix silently).
fn same_len(rows: usize, gold: usize) {
    assert_eq!(rows, gold, "metrics: {rows} prediction rows against {gold} gold labels");
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// The prediction of a row holding NaN (a diverged model) in [`argmax_rows`]: no class.
/// The metrics count it wrong whatever the gold class, as [`accuracy`] does.
pub const NO_CLASS: usize = usize::MAX;

/// The predicted class of each row ([`argmax`]); [`NO_CLASS`] for a row holding NaN
/// (argmax alone would take it for the first class: a true negative of F1 and MCC).
pub fn argmax_rows(logits: &[Vec<f32>]) -> Vec<usize> {
    logits.iter().map(|r| if r.iter().any(|v| v.is_nan()) { NO_CLASS } else { argmax(r) }).collect()
}

/// Two-class confusion counts of `pred` against `gold`, class `positive` against the
/// rest: (TP, FP, FN, TN). A [`NO_CLASS`] prediction is wrong: a false negative of a
/// positive, a false positive of a negative.
fn confusion(pred: &[usize], gold: &[usize], positive: usize) -> (usize, usize, usize, usize) {
    same_len(pred.len(), gold.len());
    let mut c = (0, 0, 0, 0);
    for (&p, &g) in pred.iter().zip(gold) {
        let said_positive = if p == NO_CLASS { g != positive } else { p == positive };
        match (said_positive, g == positive) {
            (true, true) => c.0 += 1,
            (true, false) => c.1 += 1,
            (false, true) => c.2 += 1,
            (false, false) => c.3 += 1,
        }
    }
    c
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

/// Pearson correlation of two equally long series (NaN when either is constant or they
/// are shorter than 2).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    same_len(x.len(), y.len());
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n as f64, y.iter().sum::<f64>() / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Regression with two pole words: the Pearson correlation of p(upper pole) (the
/// softmax of each row's second logit) with the gold `scores`; a constant prediction has
/// no correlation and scores 0, not NaN. A row holding NaN or an infinity (a diverged
/// model) makes it NaN: the harness stores that as a diverged run's score, not as chance.
pub fn upper_pole_pearson(logits: &[Vec<f32>], scores: &[f32]) -> f64 {
    if logits.iter().flatten().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let upper: Vec<f64> = softmax_rows(logits).iter().map(|q| q[1] as f64).collect();
    let gold: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    let c = pearson(&upper, &gold);
    if c.is_nan() {
        0.0
    } else {
        c
    }
}

/// The expected calibration error (`bins` bins) of `logits` against `gold`, as they are
/// and divided by the temperature `t`.
pub fn ece_before_after(logits: &[Vec<f32>], gold: &[usize], t: f64, bins: usize) -> (f64, f64) {
    (
        expected_calibration_error(&softmax_rows(logits), gold, bins),
        expected_calibration_error(&softmax_rows(&scale_rows(logits, t)), gold, bins),
    )
}

/// F1 of class `positive`: 2 TP / (2 TP + FP + FN); 0 when there is no positive in
/// either the predictions or the gold labels.
pub fn f1_binary(pred: &[usize], gold: &[usize], positive: usize) -> f64 {
    let (tp, fp, fn_, _) = confusion(pred, gold, positive);
    let denom = 2 * tp + fp + fn_;
    if denom == 0 { 0.0 } else { 2.0 * tp as f64 / denom as f64 }
}

/// Matthews correlation coefficient of two-class predictions against gold classes
/// (class 1 positive): (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 when a
/// factor is 0 (every prediction or every gold label one class), as scikit-learn's.
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    let (tp, fp, fn_, tn) = confusion(pred, gold, 1);
    let (tp, fp, fn_, tn) = (tp as f64, fp as f64, fn_ as f64, tn as f64);
    let denom = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    if denom == 0.0 { 0.0 } else { (tp * tn - fp * fn_) / denom }
}

/// Multi-label F1 of predicted label sets against gold ones, over `labels` labels:
/// (micro, macro). Micro pools every (input, label) decision; macro averages each
/// label's F1 (a label neither present nor predicted scores 0, as scikit-learn's
/// default does).
pub fn multi_label_f1(pred: &[Vec<usize>], gold: &[Vec<usize>], labels: usize) -> (f64, f64) {
    same_len(pred.len(), gold.len());
    let flat = |sets: &[Vec<usize>], l: usize| -> Vec<usize> { sets.iter().map(|s| usize::from(s.contains(&l))).collect() };
    let (mut all_p, mut all_g) = (Vec::new(), Vec::new());
    let mut per_label = Vec::with_capacity(labels);
    for l in 0..labels {
        let (p, g) = (flat(pred, l), flat(gold, l));
        per_label.push(f1_binary(&p, &g, 1));
        all_p.extend(p);
        all_g.extend(g);
    }
    let macro_f1 = if labels == 0 { f64::NAN } else { per_label.iter().sum::<f64>() / labels as f64 };
    (f1_binary(&all_p, &all_g, 1), macro_f1)
}

/// Expected calibration error: the confidence (top probability) of each row is binned
/// into `bins` equal-width bins over [0, 1]; the ECE is the mean over rows of
/// |accuracy - mean confidence| of the row's bin (Guo et al. 2017). NaN for no rows.
pub fn expected_calibration_error(probs: &[Vec<f32>], gold: &[usize], bins: usize) -> f64 {
    same_len(probs.len(), gold.len());
    if probs.is_empty() || bins == 0 {
        return f64::NAN;
    }
    let (mut conf, mut right, mut count) = (vec![0.0f64; bins], vec![0.0f64; bins], vec![0usize; bins]);
    for (p, &g) in probs.iter().zip(gold) {
        let top = argmax(p);
        let c = p[top] as f64;
        // Bins ((k - 1) / M, k / M] as Guo et al.: a confidence on a bin edge joins the
        // lower bin (a two-class tie, 0.5, the bin it tops). Compared in f32, as their
        // code compares float32 confidences with float32 edges: 0.3f32 lies a hair above
        // 0.3 in f64 and would have joined the bin above its edge.
        let cf = p[top];
        let b = (1..=bins).find(|&k| cf <= k as f32 / bins as f32).unwrap_or(bins) - 1;
        conf[b] += c;
        right[b] += f64::from(u8::from(top == g));
        count[b] += 1;
    }
    let n = probs.len() as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (right[b] - conf[b]).abs() / n).sum()
}

/// Mean negative log-likelihood of `gold` under softmax(`logits` / `t`).
pub fn nll_at_temperature(logits: &[Vec<f32>], gold: &[usize], t: f64) -> f64 {
    same_len(logits.len(), gold.len());
    let mut total = 0.0;
    for (row, &g) in logits.iter().zip(gold) {
        let z: Vec<f64> = row.iter().map(|&v| v as f64 / t).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - z[g];
    }
    total / logits.len().max(1) as f64
}

/// Temperature scaling: the `t` in [0.05, 20] minimising the NLL of `gold` under
/// softmax(logits / t) (golden-section search on ln t; the NLL is convex in 1 / t).
/// Divide logits by it before the softmax. 1 for no rows and for logits that are not
/// all finite (no temperature mends a diverged model). A dev set the logits separate
/// perfectly drives it to the lower bound (the NLL falls as t does): see
/// [`no_temperature_fits`].
pub fn fit_temperature(logits: &[Vec<f32>], gold: &[usize]) -> f64 {
    if logits.is_empty() || logits.iter().flatten().any(|v| !v.is_finite()) {
        return 1.0;
    }
    let f = |u: f64| nll_at_temperature(logits, gold, u.exp());
    let (mut a, mut b) = (TEMPERATURE_MIN.ln(), TEMPERATURE_MAX.ln());
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - r * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Whether no temperature fits: every row right (the NLL falls as t does, down to the
/// search's lower bound) or every row's gold class scored lowest (it falls as t grows).
/// The fitted value is then the search's bound, and its probabilities say more than the
/// dev set can tell. (Rows merely wrong are not enough past two classes: a gold class
/// second of three gains from a sharper softmax too, and a temperature inside the
/// range can fit.)
pub fn no_temperature_fits(logits: &[Vec<f32>], gold: &[usize]) -> bool {
    same_len(logits.len(), gold.len());
    let right = logits.iter().zip(gold).filter(|(row, &g)| row.iter().enumerate().all(|(j, &v)| j == g || v < row[g])).count();
    let lowest =
        logits.iter().zip(gold).filter(|(row, &g)| row.iter().all(|&v| v >= row[g]) && row.iter().any(|&v| v > row[g])).count();
    !logits.is_empty() && (right == logits.len() || lowest == logits.len())
}

/// Whether a fitted temperature `t` says nothing the dev set can back: no temperature
/// fits ([`no_temperature_fits`]), or the dev NLL at one of the search's bounds (0.05,
/// 20) is as low as at `t`, to 1e-9 nats an example: the NLL still falls, or lies flat,
/// all the way there, as when a tied row (the same loss at any temperature) joins rows
/// all right. The search then stops wherever the flat NLL stops telling points apart,
/// 0.06 as readily as 0.05, so `t` alone near a bound does not show it. Such a
/// temperature is reported, never applied: at 0.06 a margin of 0.5 would read as
/// 0.9997, and hosts accept labels above a probability.
pub fn temperature_unsupported(logits: &[Vec<f32>], gold: &[usize], t: f64) -> bool {
    if no_temperature_fits(logits, gold) {
        return true;
    }
    let at_t = nll_at_temperature(logits, gold, t);
    [TEMPERATURE_MIN, TEMPERATURE_MAX].iter().any(|&b| nll_at_temperature(logits, gold, b) <= at_t + 1e-9)
}

/// A temperature fitted on dev as the library applies one: `applied` is false for a
/// temperature the dev set does not back ([`temperature_unsupported`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedTemperature {
    pub temperature: f64,
    pub applied: bool,
}

impl FittedTemperature {
    /// The expected calibration error (`bins` bins) of `logits` against `gold` as they
    /// are, and as a model saved with this fit predicts: divided by the temperature where
    /// it is applied, as they are where it is not (the command line and the task API
    /// report this; the harness reads [`ece_before_after`] at the fitted value).
    pub fn ece_before_after(&self, logits: &[Vec<f32>], gold: &[usize], bins: usize) -> (f64, f64) {
        if self.applied {
            ece_before_after(logits, gold, self.temperature, bins)
        } else {
            let before = expected_calibration_error(&softmax_rows(logits), gold, bins);
            (before, before)
        }
    }
}

/// Fits temperature scaling on dev logits and decides whether it is applied: the one
/// rule of the command line, the task API and the harness.
pub fn fit_calibration(dev_logits: &[Vec<f32>], gold: &[usize]) -> FittedTemperature {
    let temperature = fit_temperature(dev_logits, gold);
    FittedTemperature { temperature, applied: !temperature_unsupported(dev_logits, gold, temperature) }
}

/// The range [`fit_temperature`] searches.
const TEMPERATURE_MIN: f64 = 0.05;
const TEMPERATURE_MAX: f64 = 20.0;

/// Rows of logits divided by `t`.
pub fn scale_rows(logits: &[Vec<f32>], t: f64) -> Vec<Vec<f32>> {
    logits.iter().map(|r| r.iter().map(|&v| (v as f64 / t) as f32).collect()).collect()
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
    fn multi_label_micro_and_macro_f1() {
        // Label 0: tp 2; label 1: tp 1, fp 1, fn 1; label 2: fn 1.
        let gold = vec![vec![0, 1], vec![0, 2], vec![1]];
        let pred = vec![vec![0, 1], vec![0, 1], vec![]];
        let (micro, macro_f1) = multi_label_f1(&pred, &gold, 3);
        // Pooled: tp 3, fp 1, fn 2 -> 6 / 9.
        assert!((micro - 6.0 / 9.0).abs() < 1e-12, "{micro}");
        assert!((macro_f1 - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12, "{macro_f1}");
        assert_eq!(multi_label_f1(&gold, &gold, 3), (1.0, 1.0));
    }

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
    fn pearson_correlation() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.997949).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        // Unequal lengths are a caller's bug, not a score of the common prefix.
        assert!(std::panic::catch_unwind(|| pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0])).is_err());
        assert!(std::panic::catch_unwind(|| accuracy(&[vec![1.0, 0.0]], &[0, 1])).is_err());
    }

    #[test]
    fn f1_of_the_positive_class() {
        // TP 2, FP 1, FN 1: F1 = 4 / 6.
        assert!((f1_binary(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0], 1) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(f1_binary(&[0, 0], &[0, 0], 1), 0.0);
        assert_eq!(f1_binary(&[1, 0], &[1, 0], 1), 1.0);
        // scikit-learn: matthews_corrcoef([1,1,0,0,1], [1,0,0,0,1]) = 0.6666...
        assert!((matthews(&[1, 1, 0, 0, 1], &[1, 0, 0, 0, 1]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(matthews(&[1, 1, 1], &[1, 0, 1]), 0.0, "constant predictions");
        assert_eq!(matthews(&[0, 1], &[1, 0]), -1.0);
    }

    #[test]
    fn calibration_error_and_temperature() {
        // Two bins used: 0.9 confident and right 2 of 2 (gap 0.1), 0.6 confident and right
        // 1 of 2 (gap 0.1): ECE 0.1.
        let probs = vec![vec![0.9, 0.1], vec![0.1, 0.9], vec![0.6, 0.4], vec![0.4, 0.6]];
        let gold = [0, 1, 0, 0];
        assert!((expected_calibration_error(&probs, &gold, 10) - 0.1).abs() < 1e-6);
        // Over-confident logits: right 3 of 4 at margin 10. The fitted temperature softens
        // them, and the NLL at it is the lowest of a grid.
        let logits = vec![vec![10.0, 0.0], vec![0.0, 10.0], vec![10.0, 0.0], vec![10.0, 0.0]];
        let gold = [0, 1, 0, 1];
        let t = fit_temperature(&logits, &gold);
        assert!(t > 1.0, "{t}");
        let best = nll_at_temperature(&logits, &gold, t);
        for g in [0.5, 1.0, 2.0, 5.0, 9.0, 15.0] {
            assert!(best <= nll_at_temperature(&logits, &gold, g) + 1e-9, "t {t} vs {g}");
        }
        // At the optimum, the mean confidence matches the accuracy (3/4) closely.
        let p = softmax_rows(&scale_rows(&logits, t));
        let conf = p.iter().map(|r| r[argmax(r)] as f64).sum::<f64>() / 4.0;
        assert!((conf - 0.75).abs() < 0.01, "{conf}");
        assert!(!no_temperature_fits(&logits, &gold) && !temperature_unsupported(&logits, &gold, t));
        // Right rows and one tie: the NLL lies flat towards the lower bound, and the
        // search stops short of it (0.06); the fit is unsupported all the same.
        let tied = [vec![0.0, 2.0], vec![3.0, 0.0], vec![1.0, 1.0]];
        let t_tied = fit_temperature(&tied, &[1, 0, 0]);
        assert!(!no_temperature_fits(&tied, &[1, 0, 0]) && temperature_unsupported(&tied, &[1, 0, 0], t_tied), "{t_tied}");
        // A tie (0.5) joins the bin it tops, (0.4, 0.5], not 0.55's (0.5, 0.6]: ECE
        // (|1 - 0.5| + |0 - 0.55|) / 2 (sharing a bin gave |1 - 1.05| / 2).
        let e = expected_calibration_error(&[vec![0.5, 0.5], vec![0.55, 0.45]], &[0, 1], 10);
        assert!((e - 0.525).abs() < 1e-6, "{e}");
        // 0.3 is an edge: it joins (0.2, 0.3], not 0.35's bin.
        let e = expected_calibration_error(&[vec![0.3, 0.25, 0.25, 0.2], vec![0.35, 0.25, 0.2, 0.2]], &[0, 1], 10);
        assert!((e - 0.525).abs() < 1e-6, "{e}");
        // A dev set separated perfectly sharpens to the bound, which is flagged; logits
        // that are not finite get no temperature.
        let separated = [vec![2.0, 0.0], vec![0.0, 2.0]];
        assert!(fit_temperature(&separated, &[0, 1]) < 0.1);
        assert!(no_temperature_fits(&separated, &[0, 1]) && no_temperature_fits(&separated, &[1, 0]));
        assert!(!no_temperature_fits(&[vec![1.0, 1.0], vec![0.0, 2.0]], &[0, 1]), "a tie is neither right nor wrong");
        // Three classes, every row wrong but none with its gold class lowest: the NLL
        // is lower at 2 than at 1 or 20, and a temperature fits (it was flagged).
        let wrong3 = [vec![2.0, 1.9, -10.0], vec![1.9, -10.0, 2.0]];
        let t3 = fit_temperature(&wrong3, &[1, 0]);
        assert!((1.2..10.0).contains(&t3) && !temperature_unsupported(&wrong3, &[1, 0], t3), "{t3}");
        assert!(no_temperature_fits(&[vec![2.0, 1.9, -10.0]], &[2]), "the gold class lowest");
        assert_eq!(fit_temperature(&[vec![f32::NAN, 0.0], vec![0.0, 2.0]], &[0, 1]), 1.0);
    }

    /// A row of NaN logits (a diverged model) is wrong; it used to count as class 0.
    #[test]
    fn nan_rows_are_wrong() {
        let logits = vec![vec![f32::NAN, f32::NAN], vec![0.0, 1.0]];
        assert_eq!(accuracy(&logits, &[0, 1]), 0.5);
        // F1 and MCC count it wrong too: gold 0 read as class 0 was a true negative, and a
        // model all NaN scored MCC 0 (chance) instead of -1.
        let nan = vec![f32::NAN, f32::NAN];
        let all_nan = vec![nan.clone(), nan.clone(), nan.clone(), nan];
        assert_eq!(matthews(&argmax_rows(&all_nan), &[0, 0, 1, 1]), -1.0);
        assert_eq!(f1_binary(&argmax_rows(&all_nan), &[0, 0, 1, 1], 1), 0.0);
        assert_eq!(f1_binary(&argmax_rows(&logits), &[1, 1], 1), 2.0 / 3.0);
        // One NaN row makes a Pearson NaN (a diverged run), not 0 (chance).
        assert!(upper_pole_pearson(&[vec![0.0, 1.0], vec![f32::NAN, 0.0], vec![1.0, 0.0]], &[5.0, 2.0, 0.0]).is_nan());
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
