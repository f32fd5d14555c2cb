//! TensorBoard event files written by `SummaryWriter` and read back: framing, CRCs, protos.

use crate::common::temp_dir;
use prost::Message;
use tfr_tf::proto::{event::What, summary::value::Value, GraphDef};
use tfr_tf::record::{crc32c, masked_crc32c, parse_records, write_record};
use tfr_tf::summary::{default_bucket_limits, histogram};
use tfr_tf::{event_files, read_events, scalars, SummaryWriter, TfError, FILE_VERSION};

#[test]
fn crc32c_matches_known_values() {
    // The CRC-32C check value (RFC 3720 and every CRC catalogue).
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(b""), 0);
    let c = crc32c(b"abc");
    assert_eq!(
        masked_crc32c(b"abc"),
        c.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn records_roundtrip_and_corruption_is_reported() {
    let mut buf = Vec::new();
    for r in [&b"first"[..], b"", b"third record"] {
        write_record(&mut buf, r).unwrap();
    }
    let recs = parse_records("mem", &buf).unwrap();
    assert_eq!(
        recs,
        vec![b"first".to_vec(), vec![], b"third record".to_vec()]
    );
    // Flipping any byte breaks a CRC (or the length), never panics.
    for pos in 0..buf.len() {
        let mut b = buf.clone();
        b[pos] ^= 0x10;
        assert!(
            parse_records("mem", &b).is_err(),
            "flip at {pos} went unnoticed"
        );
    }
    for len in 1..buf.len() {
        let r = parse_records("mem", &buf[..len]);
        // Cuts at record boundaries are valid shorter files.
        if ![21usize, 37].contains(&len) {
            assert!(r.is_err(), "cut at {len}");
        }
    }
    let mut b = buf.clone();
    b[12 + 5 + 4 + 12] ^= 1; // the second record's (empty) data CRC
    match parse_records("mem", &b) {
        Err(TfError::Record { index, offset, .. }) => assert_eq!((index, offset), (1, 21)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn histogram_uses_tensorflows_buckets() {
    let limits = default_bucket_limits();
    // 1e-12 * 1.1^k < 1e20 gives 774 positive limits, then f64::MAX, mirrored, plus zero.
    assert_eq!(limits.len(), 2 * 775 + 1);
    assert_eq!(limits[775], 0.0);
    assert_eq!(limits[776], 1e-12);
    assert_eq!(*limits.last().unwrap(), f64::MAX);
    assert!(limits.windows(2).all(|w| w[0] < w[1]));
    let h = histogram("h", [0.0, 0.5, 0.5, -3.0, 1e3]).unwrap();
    assert_eq!((h.min, h.max, h.num, h.sum), (-3.0, 1e3, 5.0, 998.0));
    assert_eq!(h.sum_squares, 0.25 + 0.25 + 9.0 + 1e6);
    assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
    assert_eq!(h.bucket.len(), h.bucket_limit.len());
    // Zero falls in [0, 1e-12): the bucket whose limit is 1e-12.
    let k = h.bucket_limit.iter().position(|&l| l == 1e-12).unwrap();
    assert_eq!(h.bucket[k], 1.0);
    assert!(histogram("bad", [1.0, f64::NAN])
        .unwrap_err()
        .to_string()
        .contains("`bad`"));
}

#[test]
fn summary_writer_writes_what_tensorboard_reads() {
    let dir = temp_dir("events");
    let w = SummaryWriter::new(&dir).unwrap();
    let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    for step in 0..5 {
        w.add_scalar("loss", 1.0 / (step + 1) as f32, step).unwrap();
    }
    w.add_histogram("weights", (0..100).map(|i| i as f64 / 10.0), 3)
        .unwrap();
    let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
    w.add_image("digit", 4, 3, 3, &pixels, 4).unwrap();
    assert!(w.add_image("bad", 4, 3, 3, &pixels[1..], 4).is_err());
    let mut g = tfr_graph::Graph::new();
    let x = g
        .placeholder("x", tfr_graph::DType::F32, tfr_graph::Shape::known(&[2]))
        .unwrap();
    let _ = g.relu(x).unwrap();
    w.add_graph(&g).unwrap();
    // flush makes everything so far readable while the writer stays open.
    w.flush().unwrap();
    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 1 + 5 + 1 + 1 + 1);
    w.add_scalar("loss", 0.1, 5).unwrap();
    let path = w.path().to_path_buf();
    w.close().unwrap();

    assert_eq!(event_files(&dir).unwrap(), vec![path.clone()]);
    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 10);
    assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
    assert!(events[0].wall_time > 1.6e9);
    let loss = scalars(&events, "loss");
    assert_eq!(loss.len(), 6);
    assert_eq!(loss[1], (1, 0.5));
    assert_eq!(loss[5], (5, 0.1));
    let mut seen = (false, false, false);
    for e in &events {
        match &e.what {
            Some(What::Summary(s)) => match &s.value[0].value {
                Some(Value::Histo(h)) => {
                    assert_eq!((e.step, h.num, h.max), (3, 100.0, 9.9));
                    seen.0 = true;
                }
                Some(Value::Image(img)) => {
                    assert_eq!((img.height, img.width, img.colorspace), (4, 3, 3));
                    let dec = png::Decoder::new(std::io::Cursor::new(&img.encoded_image_string));
                    let mut r = dec.read_info().unwrap();
                    let mut buf = vec![0; r.output_buffer_size()];
                    let info = r.next_frame(&mut buf).unwrap();
                    assert_eq!(&buf[..info.buffer_size()], &pixels[..]);
                    seen.1 = true;
                }
                _ => {}
            },
            Some(What::GraphDef(bytes)) => {
                let gd = GraphDef::decode(bytes.as_slice()).unwrap();
                assert_eq!(gd.node.len(), 2);
                tfr_tf::import_graph_def(&gd).unwrap();
                seen.2 = true;
            }
            _ => {}
        }
    }
    assert_eq!(seen, (true, true, true));
    // A second writer in the same directory gets its own file.
    let w2 = SummaryWriter::new(&dir).unwrap();
    assert_ne!(w2.path(), path);
    drop(w2);
    assert_eq!(event_files(&dir).unwrap().len(), 2);

    // A corrupted file is an error naming the file and record.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = read_events(&path).unwrap_err().to_string();
    assert!(e.contains("record 9") && e.contains("CRC"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn background_thread_flushes_without_being_asked() {
    let dir = temp_dir("autoflush");
    let w = SummaryWriter::with_flush_interval(&dir, std::time::Duration::from_millis(20)).unwrap();
    w.add_scalar("x", 1.0, 0).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if read_events(w.path()).map_or(0, |e| e.len()) == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing flushed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
