//! TensorBoard event files: a [`SummaryWriter`] appends `Event` records (TFRecord-framed) to
//! `events.out.tfevents.<secs>.<host>` from a background thread; [`read_events`] reads them
//! back, checking framing and CRCs.

use crate::error::{io_error, Result, TfError};
use crate::proto::{self, event, Event, Summary};
use crate::record::{parse_records, write_record};
use crate::summary;
use prost::Message;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The version string of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

enum Msg {
    Record(Vec<u8>),
    Flush(Sender<()>),
}

/// Writes TensorBoard event files. Calls encode the event and hand it to a background thread,
/// which writes it and flushes the file every `flush_interval` (and on [`flush`](Self::flush),
/// [`close`](Self::close) and drop). An I/O error of the thread is returned by the next call.
pub struct SummaryWriter {
    path: PathBuf,
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

/// The name TensorBoard's Python writer would use for this machine.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SummaryWriter {
    /// A writer of a new event file in `logdir` (created if missing), flushing every 2 s.
    /// Also registers the summary ops' kernels ([`crate::register_summary_kernels`]).
    pub fn new(logdir: impl AsRef<Path>) -> Result<SummaryWriter> {
        SummaryWriter::with_flush_interval(logdir, Duration::from_secs(2))
    }

    pub fn with_flush_interval(
        logdir: impl AsRef<Path>,
        flush_interval: Duration,
    ) -> Result<SummaryWriter> {
        crate::register_summary_kernels();
        let dir = logdir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let base = format!("events.out.tfevents.{}.{}", now() as u64, hostname());
        // A second writer in the same second gets its own file.
        let (path, file) = (0..1000)
            .map(|k| {
                let name = if k == 0 {
                    base.clone()
                } else {
                    format!("{base}.{}.{k}", std::process::id())
                };
                let p = dir.join(name);
                let f = OpenOptions::new().write(true).create_new(true).open(&p);
                (p, f)
            })
            .find(|(_, f)| !matches!(f, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists))
            .ok_or_else(|| {
                TfError::Writer(format!("no free event file name in {}", dir.display()))
            })?;
        let file = file.map_err(|e| io_error(&path, e))?;
        let (tx, rx) = mpsc::channel();
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let error = error.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name("tfr-summary-writer".into())
                .spawn(move || writer_loop(file, &path, rx, flush_interval, &error))
                .map_err(|e| TfError::Writer(format!("cannot start the writer thread: {e}")))?
        };
        let w = SummaryWriter {
            path,
            tx: Some(tx),
            thread: Some(thread),
            error,
        };
        w.add_event(Event {
            wall_time: now(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.into())),
        })?;
        Ok(w)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self) -> Result<()> {
        match self.error.lock().map(|e| e.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(TfError::Writer(e)),
            Err(_) => Err(TfError::Writer("the writer thread panicked".into())),
        }
    }

    /// Queues one event.
    pub fn add_event(&self, event: Event) -> Result<()> {
        self.check()?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| TfError::Writer("closed".into()))?;
        tx.send(Msg::Record(event.encode_to_vec()))
            .map_err(|_| TfError::Writer("the writer thread stopped".into()))
    }

    /// Queues a summary of one or more values at `step`.
    pub fn add_summary(&self, summary: Summary, step: i64) -> Result<()> {
        self.add_event(Event {
            wall_time: now(),
            step,
            what: Some(event::What::Summary(summary)),
        })
    }

    /// Queues what summary ops computed: `summaries` is a fetched output of `ScalarSummary`,
    /// `HistogramSummary`, `ImageSummary` or `MergeSummary` (a string tensor, each element a
    /// serialized `Summary`); its values go into one event at `step`. Bytes that are no
    /// `Summary` are an error, and nothing is written.
    pub fn add_summary_tensor(&self, summaries: &tfr_core::Tensor, step: i64) -> Result<()> {
        let value = crate::decode_summaries(summaries)?;
        self.add_summary(Summary { value }, step)
    }

    /// [`add_summary_tensor`](Self::add_summary_tensor) of one serialized `Summary`.
    pub fn add_summary_bytes(&self, summary: &[u8], step: i64) -> Result<()> {
        let s = Summary::decode(summary).map_err(|e| TfError::Decode {
            what: "a serialized Summary".into(),
            message: e.to_string(),
        })?;
        self.add_summary(s, step)
    }

    pub fn add_scalar(&self, tag: &str, value: f32, step: i64) -> Result<()> {
        self.add_summary(
            Summary {
                value: vec![summary::scalar_value(tag, value)],
            },
            step,
        )
    }

    /// A histogram of `values` with TensorFlow's default buckets.
    pub fn add_histogram(
        &self,
        tag: &str,
        values: impl IntoIterator<Item = f64>,
        step: i64,
    ) -> Result<()> {
        let h = summary::histogram(tag, values)?;
        self.add_summary(
            Summary {
                value: vec![summary::histogram_value(tag, h)],
            },
            step,
        )
    }

    /// A histogram of a tensor's elements (any numeric dtype).
    pub fn add_histogram_tensor(&self, tag: &str, t: &tfr_core::Tensor, step: i64) -> Result<()> {
        if matches!(
            t.dtype(),
            tfr_graph::DType::String | tfr_graph::DType::Resource
        ) {
            return Err(TfError::Summary {
                tag: tag.into(),
                message: format!("a histogram of {} values (not numbers)", t.dtype()),
            });
        }
        self.add_histogram(tag, t.to_f64_vec(), step)
    }

    /// An image, height x width x channels bytes (1, 2, 3 or 4 channels), stored as PNG.
    pub fn add_image(
        &self,
        tag: &str,
        height: usize,
        width: usize,
        channels: usize,
        pixels: &[u8],
        step: i64,
    ) -> Result<()> {
        let img = summary::image(tag, height, width, channels, pixels)?;
        self.add_summary(
            Summary {
                value: vec![summary::image_value(tag, img)],
            },
            step,
        )
    }

    /// The graph, for TensorBoard's Graphs tab (a `GraphDef` in `Event.graph_def`).
    pub fn add_graph(&self, g: &tfr_graph::Graph) -> Result<()> {
        let bytes = crate::export::graph_def_bytes(g)?;
        self.add_event(Event {
            wall_time: now(),
            step: 0,
            what: Some(event::What::GraphDef(bytes)),
        })
    }

    /// Waits until everything queued so far is written and flushed.
    pub fn flush(&self) -> Result<()> {
        self.check()?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| TfError::Writer("closed".into()))?;
        let (done_tx, done_rx) = mpsc::channel();
        tx.send(Msg::Flush(done_tx))
            .map_err(|_| TfError::Writer("the writer thread stopped".into()))?;
        done_rx
            .recv()
            .map_err(|_| TfError::Writer("the writer thread stopped".into()))?;
        self.check()
    }

    /// Flushes, stops the thread and closes the file.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        self.check()
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                if let Ok(mut e) = self.error.lock() {
                    *e = Some("the writer thread panicked".into());
                }
            }
        }
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn writer_loop(
    file: File,
    path: &Path,
    rx: Receiver<Msg>,
    interval: Duration,
    error: &Mutex<Option<String>>,
) {
    let mut w = BufWriter::new(file);
    let fail = |e: std::io::Error| {
        if let Ok(mut slot) = error.lock() {
            slot.get_or_insert_with(|| format!("{}: {e}", path.display()));
        }
    };
    let mut dirty = false;
    loop {
        match rx.recv_timeout(interval) {
            Ok(Msg::Record(data)) => {
                if let Err(e) = write_record(&mut w, &data) {
                    fail(e);
                }
                dirty = true;
            }
            Ok(Msg::Flush(done)) => {
                if let Err(e) = w.flush() {
                    fail(e);
                }
                dirty = false;
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    if let Err(e) = w.flush() {
                        fail(e);
                    }
                    dirty = false;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(e) = w.flush().and_then(|_| w.get_ref().sync_all()) {
        fail(e);
    }
}

/// Every event of an event file, its framing and CRCs checked.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let name = path.display().to_string();
    parse_records(&name, &bytes)?
        .iter()
        .enumerate()
        .map(|(index, r)| {
            Event::decode(r.as_slice()).map_err(|e| TfError::Record {
                path: name.clone(),
                index,
                offset: 0,
                message: format!("not an Event: {e}"),
            })
        })
        .collect()
}

/// The event files of `logdir`, sorted by name (which sorts them by creation time).
pub fn event_files(logdir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = logdir.as_ref();
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("tfevents"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The scalar values of `tag` in the events, as (step, value).
pub fn scalars(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
    let mut out = Vec::new();
    for e in events {
        if let Some(event::What::Summary(s)) = &e.what {
            for v in &s.value {
                if let (true, Some(proto::summary::value::Value::SimpleValue(x))) =
                    (v.tag == tag, &v.value)
                {
                    out.push((e.step, *x));
                }
            }
        }
    }
    out
}
