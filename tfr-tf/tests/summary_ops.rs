//! Summary ops run in a graph: each output parsed back with prost and checked against what
//! TensorFlow's kernels produce, the error paths, GraphDef round trips and event files
//! written from fetched summaries.

use crate::common::temp_dir;
use prost::Message;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};
use tfr_tf::proto::summary::value::Value;
use tfr_tf::proto::Summary;
use tfr_tf::summary::histogram;
use tfr_tf::{read_events, register_summary_kernels, scalars, SummaryWriter};

fn session(g: &Graph) -> Session {
    register_summary_kernels();
    Session::new(g, SessionOptions::default()).unwrap()
}

/// The one Summary a summary op's scalar string output holds.
fn parse(t: &Tensor) -> Summary {
    assert_eq!((t.dtype(), t.shape()), (DType::String, &[] as &[usize]));
    Summary::decode(t.as_strings().unwrap()[0].as_slice()).unwrap()
}

fn run_err(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output) -> String {
    session(g)
        .run(feeds, &[fetch], &[])
        .unwrap_err()
        .to_string()
}

fn decode_png(bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn scalar_summary_has_one_value_per_tag() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let one = g.scalar_summary("loss", x).unwrap();
    let tags = g.constant_strings(&[2], &["a", "b/c"]).unwrap();
    let v = g.constant_from(&[2], vec![3i32, -4]).unwrap();
    let two = g
        .build("ScalarSummary")
        .input(tags)
        .input(v)
        .finish1()
        .unwrap();
    let out = session(&g)
        .run(&[(x, Tensor::scalar(0.25f64))], &[one, two], &[])
        .unwrap();
    let s = parse(&out[0]);
    assert_eq!(s.value.len(), 1);
    assert_eq!(s.value[0].tag, "loss");
    assert_eq!(s.value[0].value, Some(Value::SimpleValue(0.25)));
    let s = parse(&out[1]);
    let got: Vec<(&str, Option<Value>)> = s
        .value
        .iter()
        .map(|v| (v.tag.as_str(), v.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", Some(Value::SimpleValue(3.0))),
            ("b/c", Some(Value::SimpleValue(-4.0)))
        ]
    );
}

#[test]
fn scalar_summary_shapes_must_match() {
    let mut g = Graph::new();
    let tags = g.constant_strings(&[2], &["a", "b"]).unwrap();
    let v = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let e = g
        .build("ScalarSummary")
        .name("s")
        .input(tags)
        .input(v)
        .finish1()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`s`") && e.contains("same shape"), "{e}");
    // Shapes known only when the step runs: the kernel checks, naming the node.
    let t = g.placeholder("t", DType::String, Shape::unknown()).unwrap();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let s = g
        .build("ScalarSummary")
        .name("late")
        .input(t)
        .input(x)
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (t, Tensor::from_strings(&[2], &["a", "b"]).unwrap()),
            (x, Tensor::new(&[1], vec![1.0f32]).unwrap()),
        ],
        s,
    );
    assert!(
        e.contains("late") && e.contains("same shape") && e.contains("[2]"),
        "{e}"
    );
    // Tags must be text.
    let e = run_err(
        &g,
        &[
            (t, Tensor::from_strings(&[1], &[[0xffu8]]).unwrap()),
            (x, Tensor::new(&[1], vec![1.0f32]).unwrap()),
        ],
        s,
    );
    assert!(e.contains("UTF-8"), "{e}");
}

#[test]
fn histogram_summary_uses_tensorflows_buckets_and_rejects_non_finite_values() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let h = g.histogram_summary("weights/w1", x).unwrap();
    let data = vec![0.0f32, 0.5, 0.5, -3.0, 1e3, 7.25];
    let out = session(&g)
        .run(
            &[(x, Tensor::new(&[2, 3], data.clone()).unwrap())],
            &[h],
            &[],
        )
        .unwrap();
    let s = parse(&out[0]);
    assert_eq!(s.value.len(), 1);
    assert_eq!(s.value[0].tag, "weights/w1");
    let Some(Value::Histo(got)) = &s.value[0].value else {
        panic!("not a histogram: {:?}", s.value[0]);
    };
    // The host-side histogram of the same values: same buckets, counts and moments.
    let want = histogram("weights/w1", data.iter().map(|&v| v as f64)).unwrap();
    assert_eq!(*got, want);
    assert_eq!((got.min, got.max, got.num), (-3.0, 1e3, 6.0));
    let k = got.bucket_limit.iter().position(|&l| l == 1e-12).unwrap();
    assert_eq!(got.bucket[k], 1.0, "zero falls in [0, 1e-12)");
    assert_eq!(got.bucket.iter().sum::<f64>(), 6.0);
    for bad in [f32::NAN, f32::INFINITY] {
        let e = run_err(&g, &[(x, Tensor::new(&[2], vec![1.0f32, bad]).unwrap())], h);
        assert!(e.contains("weights/w1") && e.contains("non-finite"), "{e}");
    }
    // The tag must be a scalar.
    let mut g = Graph::new();
    let tags = g.constant_strings(&[1], &["a"]).unwrap();
    let one = g.constant_from(&[1], vec![1.0f32]).unwrap();
    let e = g
        .build("HistogramSummary")
        .input(tags)
        .input(one)
        .finish1()
        .unwrap_err()
        .to_string();
    assert!(e.contains("tag must be a scalar"), "{e}");
}

#[test]
fn image_summary_normalizes_floats_like_tensorflow() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let three = g.image_summary("img", x, 3).unwrap();
    let one = g.image_summary("one", x, 1).unwrap();
    // Batch 4 of 2x3 RGB: image 0 non-negative, image 1 with negatives and a NaN pixel. The
    // expected pixels of all three images equal TensorFlow 2.21's ImageSummary (checked with
    // tf.compat.v1.summary.image on the same array).
    let mut data = vec![0.0f32; 4 * 2 * 3 * 3];
    for (i, v) in data[..18].iter_mut().enumerate() {
        *v = i as f32 * 0.5; // max 8.5
    }
    for (i, v) in data[18..36].iter_mut().enumerate() {
        *v = i as f32 - 10.0; // -10 ..= 7
    }
    data[18 + 3] = f32::NAN; // pixel 1 of image 1
    let out = session(&g)
        .run(
            &[(x, Tensor::new(&[4, 2, 3, 3], data.clone()).unwrap())],
            &[three, one],
            &[],
        )
        .unwrap();
    let s = parse(&out[0]);
    let tags: Vec<&str> = s.value.iter().map(|v| v.tag.as_str()).collect();
    assert_eq!(tags, ["img/image/0", "img/image/1", "img/image/2"]);
    let images: Vec<_> = s
        .value
        .iter()
        .map(|v| match &v.value {
            Some(Value::Image(img)) => img.clone(),
            other => panic!("not an image: {other:?}"),
        })
        .collect();
    for img in &images {
        assert_eq!((img.height, img.width, img.colorspace), (2, 3, 3));
    }
    // Image 0: all >= 0, scaled by 255 / max, truncated.
    let (w, h, color, px) = decode_png(&images[0].encoded_image_string);
    assert_eq!((w, h, color), (3, 2, png::ColorType::Rgb));
    let scale = 255.0f32 / 8.5;
    let want: Vec<u8> = data[..18].iter().map(|&v| (v * scale) as u8).collect();
    assert_eq!(px, want);
    assert_eq!(px[17], 255);
    // Image 1: negatives, so 127 / max|v| around 128; the NaN pixel is bad_color (red).
    let (_, _, _, px) = decode_png(&images[1].encoded_image_string);
    let scale = 127.0f32 / 10.0;
    for (k, (&v, &p)) in data[18..36].iter().zip(&px).enumerate() {
        if (3..6).contains(&k) {
            assert_eq!(p, [255, 0, 0][k - 3], "bad color at {k}");
        } else {
            assert_eq!(p, (v * scale + 128.0) as u8, "channel {k}");
        }
    }
    assert_eq!(px[0], 1, "-max maps to 1");
    // Image 2: all zero, scale 0.
    let (_, _, _, px) = decode_png(&images[2].encoded_image_string);
    assert!(px.iter().all(|&p| p == 0));
    // max_images = 1: one image, tagged `tag/image`.
    let s = parse(&out[1]);
    assert_eq!(s.value.len(), 1);
    assert_eq!(s.value[0].tag, "one/image");
}

#[test]
fn image_summary_of_uint8_grayscale_and_rgba_is_unchanged() {
    let mut g = Graph::new();
    let gray: Vec<u8> = (0..2 * 4 * 5).map(|i| (i * 6) as u8).collect();
    let x = g.constant_from(&[2, 4, 5, 1], gray.clone()).unwrap();
    let s = g.image_summary("digits", x, 3).unwrap();
    let rgba: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
    let y = g.constant_from(&[1, 3, 2, 4], rgba.clone()).unwrap();
    let t = g.image_summary("rgba", y, 1).unwrap();
    let out = session(&g).run(&[], &[s, t], &[]).unwrap();
    let s = parse(&out[0]);
    assert_eq!(
        s.value.len(),
        2,
        "the batch has 2 images, fewer than max_images"
    );
    for (i, v) in s.value.iter().enumerate() {
        let Some(Value::Image(img)) = &v.value else {
            panic!()
        };
        assert_eq!((img.height, img.width, img.colorspace), (4, 5, 1));
        let (w, h, color, px) = decode_png(&img.encoded_image_string);
        assert_eq!((w, h, color), (5, 4, png::ColorType::Grayscale));
        assert_eq!(px, gray[i * 20..(i + 1) * 20]);
    }
    let t = parse(&out[1]);
    let Some(Value::Image(img)) = &t.value[0].value else {
        panic!()
    };
    let (w, h, color, px) = decode_png(&img.encoded_image_string);
    assert_eq!((w, h, color, px), (2, 3, png::ColorType::Rgba, rgba));
}

#[test]
fn image_summary_rejects_bad_shapes_and_channels() {
    let mut g = Graph::new();
    let two = g.constant_from(&[1, 2, 2, 2], vec![0.5f32; 8]).unwrap();
    let e = g.image_summary("i", two, 3).unwrap_err().to_string();
    assert!(
        e.contains("1, 3 or 4 channels") && e.contains("ImageSummary"),
        "{e}"
    );
    let flat = g.constant_from(&[4, 4], vec![0.5f32; 16]).unwrap();
    let e = g.image_summary("i", flat, 3).unwrap_err().to_string();
    assert!(e.contains("4-D"), "{e}");
    let ok = g.constant_from(&[1, 1, 1, 1], vec![0.5f32]).unwrap();
    let e = g.image_summary("i", ok, 0).unwrap_err().to_string();
    assert!(e.contains("max_images"), "{e}");
    // Shapes known only when the step runs: the kernel checks, naming the node.
    let x = g.placeholder("x", DType::U8, Shape::unknown()).unwrap();
    let s = g
        .with_scope("pics", |g| g.image_summary("i", x, 2))
        .unwrap();
    for (shape, want) in [(vec![1, 2, 2, 2], "channels"), (vec![2, 2, 3], "4-D")] {
        let n = shape.iter().product();
        let e = run_err(&g, &[(x, Tensor::new(&shape, vec![0u8; n]).unwrap())], s);
        assert!(e.contains("pics/") && e.contains(want), "{e}");
    }
}

#[test]
fn merge_summary_concatenates_and_rejects_duplicate_tags() {
    let mut g = Graph::new();
    let a = g.constant_from(&[], vec![1.5f32]).unwrap();
    let w = g.constant_from(&[3], vec![0.1f32, 0.2, 0.3]).unwrap();
    let sa = g.scalar_summary("loss", a).unwrap();
    let sb = g.histogram_summary("w", w).unwrap();
    let merged = g.merge_summary(&[sa, sb]).unwrap();
    let again = g.merge_summary(&[merged, sa]).unwrap();
    let sess = session(&g);
    let out = sess.run(&[], &[merged], &[]).unwrap();
    let s = parse(&out[0]);
    let tags: Vec<&str> = s.value.iter().map(|v| v.tag.as_str()).collect();
    assert_eq!(tags, ["loss", "w"]);
    assert_eq!(s.value[0].value, Some(Value::SimpleValue(1.5)));
    assert!(matches!(&s.value[1].value, Some(Value::Histo(h)) if h.num == 3.0));
    let e = sess.run(&[], &[again], &[]).unwrap_err().to_string();
    assert!(
        e.contains("duplicate tag `loss`") && e.contains("MergeSummary"),
        "{e}"
    );
    // Bytes that are no Summary are an error, not a panic.
    let p = g.placeholder("p", DType::String, Shape::unknown()).unwrap();
    let m = g.merge_summary(&[p]).unwrap();
    let e = run_err(
        &g,
        &[(p, Tensor::from_strings(&[1], &[[0xffu8, 0xff]]).unwrap())],
        m,
    );
    assert!(e.contains("not a serialized Summary"), "{e}");
}

#[test]
fn summary_ops_round_trip_through_graph_defs() {
    let mut g = Graph::new();
    let x = g.constant_from(&[2], vec![1.0f32, -2.0]).unwrap();
    let first = g_first(&mut g, x);
    let sa = g.scalar_summary("loss", first).unwrap();
    let sb = g.histogram_summary("x", x).unwrap();
    let img = g
        .constant_from(&[1, 2, 2, 1], vec![0.0f32, 1.0, 2.0, 3.0])
        .unwrap();
    let sc = g.image_summary("img", img, 1).unwrap();
    let merged = g.merge_summary(&[sa, sb, sc]).unwrap();
    let gd = tfr_tf::to_graph_def(&g).unwrap();
    let summary_node = |op: &str| gd.node.iter().find(|n| n.op == op).unwrap().clone();
    assert!(summary_node("ScalarSummary").attr.contains_key("T"));
    assert!(summary_node("ImageSummary").attr.contains_key("bad_color"));
    assert!(summary_node("MergeSummary").attr.contains_key("N"));
    // The string constants travel as string_val.
    let tag = gd
        .node
        .iter()
        .filter(|n| n.op == "Const")
        .find_map(|n| match &n.attr["value"].value {
            Some(tfr_tf::proto::attr_value::Value::Tensor(t)) if t.dtype == 7 => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert!(tag.tensor_content.is_empty() && tag.string_val.len() == 1);
    let imported = tfr_tf::import_graph_def(&gd).unwrap();
    let name = &g.node(merged.node).name;
    let sess = session(&imported.graph);
    let out = imported.run(&sess, &[], &[&format!("{name}:0")]).unwrap();
    let original = session(&g).run(&[], &[merged], &[]).unwrap();
    assert_eq!(out[0], original[0]);
    let tags: Vec<String> = parse(&out[0]).value.into_iter().map(|v| v.tag).collect();
    assert_eq!(tags, ["loss", "x", "img/image"]);
}

fn g_first(g: &mut Graph, x: Output) -> Output {
    let i = g.constant_from(&[1], vec![0i32]).unwrap();
    let first = g.gather(x, i, 0).unwrap();
    g.reshape(first, &[]).unwrap()
}

#[test]
fn event_files_from_graph_summaries_read_back() {
    let mut g = Graph::new();
    let x = g.placeholder("loss", DType::F32, Shape::scalar()).unwrap();
    let w = g.placeholder("w", DType::F32, Shape::known(&[4])).unwrap();
    let sl = g.scalar_summary("loss", x).unwrap();
    let sw = g.histogram_summary("w", w).unwrap();
    let merged = g.merge_summary(&[sl, sw]).unwrap();
    let dir = temp_dir("graph-summaries");
    let writer = SummaryWriter::new(&dir).unwrap();
    let sess = session(&g);
    for step in 0..3i64 {
        let out = sess
            .run(
                &[
                    (x, Tensor::scalar(1.0f32 / (step + 1) as f32)),
                    (w, Tensor::new(&[4], vec![step as f32; 4]).unwrap()),
                ],
                &[merged],
                &[],
            )
            .unwrap();
        writer.add_summary_tensor(&out[0], step).unwrap();
    }
    // One serialized Summary as bytes, too.
    let out = sess
        .run(&[(x, Tensor::scalar(0.125f32))], &[sl], &[])
        .unwrap();
    writer
        .add_summary_bytes(&out[0].as_strings().unwrap()[0], 7)
        .unwrap();
    // Bytes that are no Summary are refused, and not written.
    assert!(writer.add_summary_bytes(&[0xff, 0xff], 8).is_err());
    assert!(writer
        .add_summary_tensor(&Tensor::scalar(1.0f32), 8)
        .is_err());
    let e = writer
        .add_histogram_tensor("s", &Tensor::from_strings(&[1], &["x"]).unwrap(), 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("string"), "{e}");
    let path = writer.path().to_path_buf();
    writer.close().unwrap();
    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 1 + 3 + 1);
    assert_eq!(
        scalars(&events, "loss"),
        vec![(0, 1.0), (1, 0.5), (2, 1.0 / 3.0), (7, 0.125)]
    );
    let histos: Vec<(i64, f64)> = events
        .iter()
        .filter_map(|e| match &e.what {
            Some(tfr_tf::proto::event::What::Summary(s)) => {
                s.value.iter().find_map(|v| match &v.value {
                    Some(Value::Histo(h)) => Some((e.step, h.sum)),
                    _ => None,
                })
            }
            _ => None,
        })
        .collect();
    assert_eq!(histos, vec![(0, 0.0), (1, 4.0), (2, 8.0)]);
    let _ = std::fs::remove_dir_all(&dir);
}
