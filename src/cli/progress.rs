//! Progress bars on stderr for long work (drawn on a terminal; elsewhere printed as
//! occasional lines, see [`Bar`]).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{Progress, Stage};

/// A bar that follows [`Progress`] reports; `cancel` never stops the work here.
pub struct Bar {
    bar: ProgressBar,
    lines_every: Option<usize>,
    label: String,
    /// The last report, whose repeat (work after a stage's last step, lmbff.h's
    /// progress callback) prints nothing again.
    last: Option<(Stage, usize, usize)>,
}

impl Bar {
    pub fn new(label: &str) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::with_draw_target(None, if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Bar { bar, lines_every: if tty { None } else { Some(0) }, label: label.to_string(), last: None }
    }

    /// Callback for the training functions.
    pub fn update(&mut self, p: Progress) -> bool {
        if self.last.replace((p.stage, p.step, p.total)) == Some((p.stage, p.step, p.total)) {
            return true;
        }
        self.bar.set_length(p.total as u64);
        self.bar.set_position(p.step as u64);
        let mut msg = String::new();
        if p.loss.is_finite() {
            msg += &format!("loss {:.4}", p.loss);
        }
        if p.metric.is_finite() {
            msg += &format!(" dev {:.3}", p.metric);
        }
        self.bar.set_message(msg.clone());
        if let Some(every) = self.lines_every.as_mut() {
            // Not a terminal (CI, logs): a line every ~10% of the work.
            let tenth = (p.total / 10).max(1);
            if p.step == p.total || p.step >= *every + tenth {
                *every = p.step;
                eprintln!("{} {}/{} {msg}", self.heading(p.stage), p.step, p.total);
            }
        }
        true
    }

    /// The line's heading: the label, then the stage where it adds something (a
    /// training run's evaluation passes; not "adapt adapt" or "predict eval").
    fn heading(&self, stage: Stage) -> String {
        let word = match stage {
            Stage::Adapt => "adapt",
            Stage::Train => "train",
            Stage::Evaluate => "eval",
        };
        if self.label == word || (self.label == "predict" && stage == Stage::Evaluate) {
            self.label.clone()
        } else {
            format!("{} {word}", self.label)
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_stage_once() {
        let heading = |label: &str, stage| Bar::new(label).heading(stage);
        assert_eq!(heading("adapt", Stage::Adapt), "adapt");
        assert_eq!(heading("predict", Stage::Evaluate), "predict");
        assert_eq!(heading("prompt s13", Stage::Train), "prompt s13 train");
        assert_eq!(heading("prompt s13", Stage::Evaluate), "prompt s13 eval");
    }
}
