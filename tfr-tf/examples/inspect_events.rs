//! Summarizes TensorBoard event files, like `tensorboard --inspect`: per tag, the kind of
//! value, how many events, the step range and the last scalar; the graph's node count.
//!
//! ```sh
//! cargo run -p tfr-tf --example inspect_events -- runs/lenet
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use tfr_tf::proto::{event::What, summary::value::Value, GraphDef};
use tfr_tf::{event_files, read_events};

#[derive(Default)]
struct Tag {
    kind: &'static str,
    count: usize,
    first_step: i64,
    last_step: i64,
    last_scalar: Option<f32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: inspect_events LOGDIR")?
        .into();
    let files = event_files(&dir)?;
    if files.is_empty() {
        return Err(format!("no event files (`*tfevents*`) in {}", dir.display()).into());
    }
    for path in files {
        let events = read_events(&path)?;
        println!("{}: {} events", path.display(), events.len());
        let mut tags: BTreeMap<String, Tag> = BTreeMap::new();
        for e in &events {
            match &e.what {
                Some(What::GraphDef(bytes)) => {
                    let gd: GraphDef = prost::Message::decode(bytes.as_slice())?;
                    println!("  graph: {} nodes", gd.node.len());
                }
                Some(What::Summary(s)) => {
                    for v in &s.value {
                        let t = tags.entry(v.tag.clone()).or_insert_with(|| Tag {
                            first_step: e.step,
                            ..Tag::default()
                        });
                        t.kind = match &v.value {
                            Some(Value::SimpleValue(x)) => {
                                t.last_scalar = Some(*x);
                                "scalar"
                            }
                            Some(Value::Histo(_)) => "histogram",
                            Some(Value::Image(_)) => "image",
                            Some(Value::Tensor(_)) => "tensor",
                            _ => "other",
                        };
                        t.count += 1;
                        t.last_step = e.step;
                    }
                }
                _ => {}
            }
        }
        for (tag, t) in &tags {
            let last = t
                .last_scalar
                .map_or(String::new(), |x| format!(", last {x}"));
            println!(
                "  {tag}: {} x{} (steps {}..={}{last})",
                t.kind, t.count, t.first_step, t.last_step
            );
        }
    }
    Ok(())
}
