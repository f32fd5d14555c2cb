//! Checkpoint kernels: `Save` and `Restore` over files in the safetensors format: an 8-byte
//! little-endian header length, a JSON header mapping each tensor name to its dtype, shape and
//! byte range, then the raw little-endian data. numpy (`safetensors.numpy.load_file`) and
//! PyTorch open these files. The header's `__metadata__` also records a CRC-32 per tensor, so
//! a corrupted file is reported instead of restored.
//!
//! A save writes a temporary file in the target's directory, syncs it, renames it over the
//! target and syncs the directory: a reader (or a crash) sees the old file or the new one,
//! never a mix.

use crate::error::{Code, KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tfr_graph::ops::data_flow_ops::decode_shapes;
use tfr_graph::{bf16, f16, Buffer, DType, DTypeSet, Shape};

/// The largest header accepted when reading (the safetensors limit).
const MAX_HEADER: u64 = 100 << 20;

/// The safetensors name of a dtype.
pub fn safetensors_dtype(t: DType) -> Option<&'static str> {
    Some(match t {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::Resource | DType::String => return None,
    })
}

pub fn dtype_from_safetensors(s: &str) -> Option<DType> {
    DType::ALL
        .into_iter()
        .find(|&t| safetensors_dtype(t) == Some(s))
}

/// Appends the raw little-endian bytes of `buf` (also the wire form of the distributed runtime).
pub fn encode(buf: &Buffer, out: &mut Vec<u8>) -> KResult {
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match buf {
        Buffer::F32(v) => le!(v),
        Buffer::F64(v) => le!(v),
        Buffer::I32(v) => le!(v),
        Buffer::I64(v) => le!(v),
        Buffer::U8(v) => out.extend_from_slice(v),
        Buffer::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Buffer::F16(v) => le!(v.iter().map(|x| x.to_bits())),
        Buffer::BF16(v) => le!(v.iter().map(|x| x.to_bits())),
        Buffer::Resource(_) => {
            return Err(KernelError::invalid(
                "resource handles cannot be saved in a checkpoint",
            ))
        }
        Buffer::String(_) => {
            return Err(KernelError::invalid(
                "string tensors have no fixed-size encoding: they cannot be saved in a \
                 (safetensors) checkpoint",
            ))
        }
    }
    Ok(())
}

/// Decodes raw little-endian bytes (their length already checked) into a buffer; `None` for
/// bytes that are no valid value (a bool other than 0 or 1).
pub fn decode(dtype: DType, b: &[u8]) -> Option<Buffer> {
    macro_rules! le {
        ($t:ty, $n:expr) => {
            b.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])))
        };
    }
    Some(match dtype {
        DType::F32 => Buffer::F32(le!(f32, 4).collect()),
        DType::F64 => Buffer::F64(le!(f64, 8).collect()),
        DType::I32 => Buffer::I32(le!(i32, 4).collect()),
        DType::I64 => Buffer::I64(le!(i64, 8).collect()),
        DType::U8 => Buffer::U8(b.to_vec()),
        DType::Bool => Buffer::Bool(
            b.iter()
                .map(|&x| match x {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                })
                .collect::<Option<Vec<bool>>>()?,
        ),
        DType::F16 => Buffer::F16(le!(u16, 2).map(f16::from_bits).collect()),
        DType::BF16 => Buffer::BF16(le!(u16, 2).map(bf16::from_bits).collect()),
        DType::Resource | DType::String => return None,
    })
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> KernelError {
    KernelError {
        code: match e.kind() {
            std::io::ErrorKind::NotFound => Code::NotFound,
            std::io::ErrorKind::PermissionDenied => Code::FailedPrecondition,
            std::io::ErrorKind::OutOfMemory | std::io::ErrorKind::StorageFull => {
                Code::ResourceExhausted
            }
            _ => Code::Internal,
        },
        message: format!("{what} `{}`: {e}", path.display()),
    }
}

fn corrupt(path: &Path, message: String) -> KernelError {
    KernelError::invalid(format!(
        "checkpoint `{}` is corrupted or truncated: {message}",
        path.display()
    ))
}

/// The bytes of a safetensors file holding `tensors` (names unique).
pub fn encode_safetensors(tensors: &[(String, Tensor)]) -> KResult<Vec<u8>> {
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        if name.is_empty() || name == "__metadata__" {
            return Err(KernelError::invalid(format!(
                "`{name}` is not a valid tensor name in a checkpoint"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(KernelError::invalid(format!(
                "tensor name `{name}` appears twice"
            )));
        }
    }
    // Larger elements first, then by name: every tensor starts aligned to its element size.
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    order.sort_by(|a, b| {
        b.1.dtype()
            .size_of()
            .cmp(&a.1.dtype().size_of())
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut data = Vec::new();
    let mut header = Map::new();
    let mut meta = Map::new();
    meta.insert("format".into(), json!("tfr"));
    for (name, t) in order {
        let dtype = safetensors_dtype(t.dtype()).ok_or_else(|| {
            KernelError::invalid(format!("tensor `{name}`: {} cannot be saved", t.dtype()))
        })?;
        let begin = data.len();
        encode(&t.buffer(), &mut data)?;
        meta.insert(
            format!("crc32:{name}"),
            json!(format!("{:08x}", crc32fast::hash(&data[begin..]))),
        );
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": t.shape(), "data_offsets": [begin, data.len()]}),
        );
    }
    header.insert("__metadata__".into(), Value::Object(meta));
    let mut head = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| KernelError::internal(format!("cannot encode the header: {e}")))?;
    // Pad with spaces so the data starts 8-byte aligned, as the safetensors writers do.
    while (head.len() + 8) % 8 != 0 {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> KResult {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| KernelError::invalid(format!("`{}` names no file", path.display())))?
        .to_string_lossy()
        .into_owned();
    // Unique to this process and call; the time guards against a dead process's leftover
    // under a reused pid.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    remove_stale_temporaries(&dir, |target| target == file_name);
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("cannot write", path, &e));
    }
    // Make the rename itself durable (not supported everywhere: best effort).
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A temporary older than this is stale even when a process of its pid is alive: a live write
/// touches its file continuously and renames it right after a sync, so it never sits an hour
/// unmodified. The age rule covers systems without `/proc` and pids reused by another process.
const STALE_TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The target file name and writer pid of a temporary `.{target}.tmp-{pid}-{nanos}-{counter}`
/// made by [`write_atomic`].
fn parse_temporary(name: &str) -> Option<(&str, u32)> {
    let (target, tail) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let parts: Vec<&str> = tail.split('-').collect();
    let [pid, nanos, counter] = parts[..] else {
        return None;
    };
    (nanos.parse::<u64>().is_ok() && counter.parse::<u64>().is_ok())
        .then_some(())
        .and(pid.parse().ok())
        .map(|pid| (target, pid))
}

/// Whether process `pid` runs (`None`: cannot tell, no `/proc`).
fn process_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the temporaries [`write_atomic`] left in `dir` for targets that `target_wanted`
/// accepts, once stale: a write killed mid-way (crash, SIGKILL) never renames or removes its
/// temporary, and checkpoints are large. A temporary is stale when the process that wrote it
/// (its pid is in the name) is gone, or when it has not been modified for
/// [`STALE_TEMPORARY_AGE`]. One of a live process, this one included (another thread may be
/// saving now), is left alone until it is that old. Limitation: a writer in another pid
/// namespace (another container sharing the directory) looks dead from here, so directories
/// written from several containers at once should not share a checkpoint prefix. Best effort:
/// returns how many went.
pub fn remove_stale_temporaries(dir: &Path, target_wanted: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((target, pid)) = name.to_str().and_then(parse_temporary) else {
            continue;
        };
        if !target_wanted(target) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMPORARY_AGE);
        if (old || process_alive(pid) == Some(false)) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Saves named tensors to the safetensors file `path`, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> KResult {
    let bytes = encode_safetensors(tensors)?;
    write_atomic(path, &bytes)
}

/// One tensor's entry in a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub begin: usize,
    pub end: usize,
    /// The CRC-32 recorded by tfr, when present.
    pub crc32: Option<u32>,
}

/// A checked safetensors file in memory.
pub struct Checkpoint {
    pub path: PathBuf,
    pub entries: BTreeMap<String, TensorEntry>,
    bytes: Vec<u8>,
    data_start: usize,
}

fn parse_entry(path: &Path, name: &str, v: &Value, data_len: usize) -> KResult<TensorEntry> {
    let bad = |what: String| corrupt(path, format!("tensor `{name}`: {what}"));
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header entry is not an object".into()))?;
    let dtype_name = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no dtype".into()))?;
    let dtype = dtype_from_safetensors(dtype_name)
        .ok_or_else(|| bad(format!("unsupported dtype `{dtype_name}`")))?;
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no shape".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad("shape is not a list of sizes".into()))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|a| match a.as_slice() {
            [b, e] => Some((b.as_u64()?, e.as_u64()?)),
            _ => None,
        })
        .ok_or_else(|| bad("no valid data_offsets".into()))?;
    let (begin, end) = (
        usize::try_from(offsets.0).map_err(|_| bad("offset overflows".into()))?,
        usize::try_from(offsets.1).map_err(|_| bad("offset overflows".into()))?,
    );
    let bytes = shape
        .iter()
        .try_fold(dtype.size_of(), |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    if end < begin || end - begin != bytes {
        return Err(bad(format!(
            "data_offsets [{begin}, {end}) do not hold {dtype}{shape:?} ({bytes} bytes)"
        )));
    }
    if end > data_len {
        return Err(corrupt(
            path,
            format!(
                "tensor `{name}` needs bytes [{begin}, {end}) of the data section, which has \
                 only {data_len} bytes (truncated file)"
            ),
        ));
    }
    Ok(TensorEntry {
        dtype,
        shape,
        begin,
        end,
        crc32: None,
    })
}

impl Checkpoint {
    /// Reads and checks `path`: header, dtypes, shapes and byte ranges (which must tile the
    /// data section exactly, as the safetensors format requires).
    pub fn open(path: &Path) -> KResult<Checkpoint> {
        let bytes = fs::read(path).map_err(|e| io_error("cannot read checkpoint", path, &e))?;
        Self::from_bytes(path, bytes)
    }

    /// Checks the bytes of a safetensors file; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> KResult<Checkpoint> {
        let len = bytes.len();
        let Some(head) = bytes.first_chunk::<8>() else {
            return Err(corrupt(
                path,
                format!("{len} bytes, too short for a header"),
            ));
        };
        let n = u64::from_le_bytes(*head);
        if n > MAX_HEADER || n > (len - 8) as u64 {
            return Err(corrupt(
                path,
                format!("the header claims {n} bytes, the file has {}", len - 8),
            ));
        }
        let data_start = 8 + n as usize;
        let header: Value = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| corrupt(path, format!("the header is not valid JSON: {e}")))?;
        let header = header
            .as_object()
            .ok_or_else(|| corrupt(path, "the header is not a JSON object".into()))?;
        let data_len = len - data_start;
        let mut entries = BTreeMap::new();
        let mut crcs: BTreeMap<String, u32> = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                for (k, v) in v.as_object().into_iter().flatten() {
                    if let (Some(t), Some(s)) = (k.strip_prefix("crc32:"), v.as_str()) {
                        let crc = u32::from_str_radix(s, 16).map_err(|_| {
                            corrupt(path, format!("tensor `{t}`: bad checksum `{s}`"))
                        })?;
                        crcs.insert(t.to_string(), crc);
                    }
                }
                continue;
            }
            entries.insert(name.clone(), parse_entry(path, name, v, data_len)?);
        }
        for (name, crc) in crcs {
            if let Some(e) = entries.get_mut(&name) {
                e.crc32 = Some(crc);
            }
        }
        let mut ranges: Vec<(usize, usize, &str)> = entries
            .iter()
            .map(|(k, e)| (e.begin, e.end, k.as_str()))
            .collect();
        ranges.sort();
        let mut at = 0;
        for (b, e, name) in &ranges {
            if *b != at {
                return Err(corrupt(
                    path,
                    format!("tensor `{name}` starts at byte {b} of the data, expected {at}"),
                ));
            }
            at = *e;
        }
        if at != data_len {
            return Err(corrupt(
                path,
                format!("{} bytes of data follow the last tensor", data_len - at),
            ));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            entries,
            bytes,
            data_start,
        })
    }

    /// The tensor `name`, checked against its checksum and (when given) the dtype expected.
    pub fn tensor(&self, name: &str, expected: Option<DType>) -> KResult<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            let have: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            KernelError {
                code: Code::NotFound,
                message: format!(
                    "checkpoint `{}` has no tensor `{name}` (it has: {})",
                    self.path.display(),
                    have.join(", ")
                ),
            }
        })?;
        if let Some(t) = expected {
            if t != e.dtype {
                return Err(KernelError::invalid(format!(
                    "checkpoint `{}`: tensor `{name}` is {}, expected {t}",
                    self.path.display(),
                    e.dtype
                )));
            }
        }
        let raw = &self.bytes[self.data_start + e.begin..self.data_start + e.end];
        if let Some(crc) = e.crc32 {
            let got = crc32fast::hash(raw);
            if got != crc {
                return Err(corrupt(
                    &self.path,
                    format!("tensor `{name}` fails its checksum ({got:08x}, recorded {crc:08x})"),
                ));
            }
        }
        let buf = decode(e.dtype, raw)
            .ok_or_else(|| corrupt(&self.path, format!("tensor `{name}` holds invalid values")))?;
        Tensor::from_buffer(&e.shape, buf)
            .map_err(|err| corrupt(&self.path, format!("tensor `{name}`: {err}")))
    }
}

fn strings(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<Vec<String>> {
    ctx.input(i)
        .as_slice::<String>()
        .map(<[String]>::to_vec)
        .map_err(|_| KernelError::invalid(format!("{what} must be strings")))
}

fn filename(ctx: &KernelContext<'_>) -> KResult<PathBuf> {
    match strings(ctx, 0, "filename")?.as_slice() {
        [f] if !f.is_empty() => Ok(PathBuf::from(f)),
        v => Err(KernelError::invalid(format!(
            "filename must be one non-empty string, got {v:?}"
        ))),
    }
}

fn save_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let path = filename(ctx)?;
        let names = strings(ctx, 1, "tensor_names")?;
        let n = ctx.num_inputs() - 2;
        if names.len() != n {
            return Err(KernelError::invalid(format!(
                "{} tensor names for {n} tensors",
                names.len()
            )));
        }
        let tensors: Vec<(String, Tensor)> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, ctx.input(i + 2).clone()))
            .collect();
        save_tensors(&path, &tensors)
    }))
}

fn restore_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtypes = init.attrs.dtypes("dtypes")?.clone();
    let shapes = match init.attrs.get("shapes") {
        Some(_) => decode_shapes(init.attrs.ints("shapes")?, dtypes.len())?,
        None => vec![Shape::unknown(); dtypes.len()],
    };
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let path = filename(ctx)?;
        let names = strings(ctx, 1, "tensor_names")?;
        if names.len() != dtypes.len() {
            return Err(KernelError::invalid(format!(
                "{} tensor names for {} dtypes",
                names.len(),
                dtypes.len()
            )));
        }
        let ckpt = Checkpoint::open(&path)?;
        for ((name, &dtype), expected) in names.iter().zip(&dtypes).zip(&shapes) {
            let t = ckpt.tensor(name, Some(dtype))?;
            if !expected.accepts(t.shape()) {
                return Err(KernelError::invalid(format!(
                    "checkpoint `{}`: tensor `{name}` has shape {:?} in the file, but the \
                     restore expects shape {expected}",
                    path.display(),
                    t.shape()
                )));
            }
            ctx.set_output(t);
        }
        Ok(())
    }))
}

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("Save", res, save_kernel);
    r.cpu("Restore", res, restore_kernel);
}
