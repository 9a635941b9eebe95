//! `lmbff harness`: methods x tasks x seeds on LM-BFF's k-shot splits (see src/harness).

use std::path::PathBuf;

use clap::Args;

use super::Bar;
use crate::harness::{self, RunMethod, Settings};
use crate::{Error, Result};

#[derive(Debug, Args)]
pub struct HarnessArgs {
    /// The k-shot folder of LM-BFF's data (`<TASK>/16-<SEED>/{train,dev,test}.*`).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder for the per-run results and report.md (re-running continues there).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "SST-2,sst-5,mr,cr,mpqa,subj,trec")]
    pub tasks: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "13,21,42,87,100")]
    pub seeds: Vec<u64>,
    #[arg(long, value_delimiter = ',', default_value = "majority,zero-shot,plain,prompt,prompt-demos")]
    pub methods: Vec<String>,
    /// Model of the prompt methods.
    #[arg(long)]
    pub model: PathBuf,
    /// Model of plain fine-tuning (default: --model).
    #[arg(long)]
    pub plain_model: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 256)]
    pub demo_max_len: usize,
    #[arg(long, default_value_t = 1)]
    pub demo_sets: usize,
    /// Score only the first N test inputs of each task.
    #[arg(long)]
    pub test_limit: Option<usize>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads.
    #[arg(long)]
    pub threads: Option<i32>,
}

pub fn run(a: HarnessArgs) -> Result<()> {
    if let Some(n) = a.threads {
        if n < 1 {
            return Err(Error::InvalidArgument(format!("--threads must be at least 1, got {n}")));
        }
        tch::set_num_threads(n);
    }
    let tasks = a.tasks.iter().map(|t| harness::task(t)).collect::<Result<Vec<_>>>()?;
    let methods = a.methods.iter().map(|m| RunMethod::parse(m)).collect::<Result<Vec<_>>>()?;
    let settings = Settings {
        model: a.model.clone(),
        plain_model: a.plain_model.clone().unwrap_or_else(|| a.model.clone()),
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        eval_every: a.eval_every,
        max_len: a.max_len,
        demo_max_len: a.demo_max_len,
        demo_sets: a.demo_sets,
        test_limit: a.test_limit,
    };
    let total = tasks.len() * a.seeds.len() * methods.len();
    let (mut results, mut reused) = (Vec::with_capacity(total), 0);
    for t in &tasks {
        for &seed in &a.seeds {
            for &m in &methods {
                if let Some(r) = harness::stored(&a.out, t.name, seed, m, &settings)? {
                    reused += 1;
                    results.push(r);
                    continue;
                }
                let label = format!("{}/{total} {} s{seed} {}", results.len() + 1, t.name, m.name());
                let mut bar = Bar::new(&label);
                let r = harness::run_one(&a.data, t, seed, m, &settings, &a.device, &a.out, &mut |p| bar.update(p))?;
                bar.finish();
                eprintln!("{label}: test {} {:.1} ({:.0} s)", r.metric, 100.0 * r.test, r.seconds);
                results.push(r);
            }
        }
    }
    let table = harness::report(&results, &tasks, &methods, &a.seeds);
    let text = format!(
        "# Harness report\n\nData: {} ({} seeds: {:?}). {total} runs ({reused} reused from earlier). Settings: {}\n\n{table}",
        a.data.display(),
        a.seeds.len(),
        a.seeds,
        serde_json::to_string(&settings).expect("settings serialise")
    );
    let path = a.out.join("report.md");
    std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
    println!("{table}");
    eprintln!("{reused} of {total} runs reused; report in {}", path.display());
    Ok(())
}
