//! TFRecord framing, as TensorFlow's event files use it: for each record, the data length as a
//! little-endian u64, the masked CRC32C of those 8 bytes, the data, the masked CRC32C of the data.

use crate::error::{io_error, Result, TfError};
use std::io::Write;
use std::path::Path;

/// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as TFRecord uses.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so a CRC of data that
/// itself holds CRCs stays well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Writes one framed record.
pub fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc32c(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc32c(data).to_le_bytes())
}

/// Splits a file's bytes into records, checking every length and CRC. `path` names the file in
/// errors.
pub fn parse_records(path: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let err = |message: String| TfError::Record {
            path: path.to_string(),
            index: out.len(),
            offset: pos as u64,
            message,
        };
        let header = bytes.get(pos..pos + 12).ok_or_else(|| {
            err(format!(
                "truncated header ({} bytes left)",
                bytes.len() - pos
            ))
        })?;
        let len_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            return Err(err("length CRC mismatch".into()));
        }
        let len = u64::from_le_bytes(len_bytes);
        let start = pos + 12;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|e4| e4 <= bytes.len()))
            .ok_or_else(|| err(format!("truncated record of {len} bytes")))?;
        let data = &bytes[start..end];
        let data_crc = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if masked_crc32c(data) != data_crc {
            return Err(err("data CRC mismatch".into()));
        }
        out.push(data.to_vec());
        pos = end + 4;
    }
    Ok(out)
}

/// Reads every record of a TFRecord file.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<Vec<u8>>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_records(&path.display().to_string(), &bytes)
}
