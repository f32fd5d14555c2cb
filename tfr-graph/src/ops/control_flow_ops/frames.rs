//! Frames: which loop frame each node runs in, checked against the graph's Enter/Exit structure.

use super::*;

/// Index of a frame in a [`FrameMap`]; 0 is the root frame.
pub type FrameId = u32;
pub const ROOT_FRAME: FrameId = 0;

/// One frame: the loop named `name` (by its Enter nodes' `frame_name`) inside `parent`.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameDesc {
    pub name: String,
    pub parent: FrameId,
    pub depth: u32,
}

/// Which frame each node runs in: an `Enter` starts (or joins) the child frame named by its
/// `frame_name`, an `Exit` returns to the parent of its input's frame, every other node runs
/// in the frame of its inputs (a node without inputs in the root frame).
#[derive(Clone, Debug)]
pub struct FrameMap {
    pub frames: Vec<FrameDesc>,
    of_node: Vec<FrameId>,
    by_name: HashMap<String, FrameId>,
}

impl Default for FrameMap {
    fn default() -> Self {
        FrameMap {
            frames: vec![FrameDesc {
                name: String::new(),
                parent: ROOT_FRAME,
                depth: 0,
            }],
            of_node: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

const UNASSIGNED: FrameId = FrameId::MAX;

impl FrameMap {
    /// Assigns every node its frame, visiting nodes in `order` (a topological order that
    /// ignores back edges). Errors name a node whose inputs come from different frames, an
    /// `Exit` outside any loop, a frame entered from two different parent frames, or a back
    /// edge between frames.
    pub fn analyze(graph: &Graph, order: &[NodeId]) -> Result<FrameMap> {
        let mut map = FrameMap {
            of_node: vec![UNASSIGNED; graph.len()],
            ..FrameMap::default()
        };
        for &id in order {
            let f = map.assign(graph, id, true)?;
            map.of_node[id.index()] = f;
        }
        for (i, node) in graph.nodes().iter().enumerate() {
            for (k, o) in node.inputs.iter().enumerate() {
                if is_back_edge(graph, node, k) && map.of_node[o.node.index()] != map.of_node[i] {
                    return Err(frame_error(
                        node,
                        format!(
                            "its back edge from `{}` comes from another frame",
                            graph.node(o.node).name
                        ),
                    ));
                }
            }
        }
        Ok(map)
    }

    /// Assigns frames to the nodes appended since the last call (builders' incremental use;
    /// never fails: mismatches are reported by [`FrameMap::analyze`] when the graph runs).
    pub(crate) fn extend(&mut self, graph: &Graph) {
        for i in self.of_node.len()..graph.len() {
            let f = self
                .assign(graph, NodeId(i as u32), false)
                .unwrap_or(ROOT_FRAME);
            self.of_node.push(f);
        }
    }

    fn frame_of(&self, id: NodeId) -> FrameId {
        self.of_node
            .get(id.index())
            .copied()
            .filter(|&f| f != UNASSIGNED)
            .unwrap_or(ROOT_FRAME)
    }

    fn assign(&mut self, graph: &Graph, id: NodeId, strict: bool) -> Result<FrameId> {
        let node = graph.node(id);
        let mut frames = Vec::with_capacity(node.inputs.len() + node.control_inputs.len());
        for (k, o) in node.inputs.iter().enumerate() {
            if is_back_edge(graph, node, k) || o.node.index() >= graph.len() {
                continue;
            }
            if !strict && o.node.index() >= self.of_node.len() {
                continue;
            }
            frames.push((o.node, self.frame_of(o.node)));
        }
        for &c in &node.control_inputs {
            if c.index() < self.of_node.len() || (strict && c.index() < graph.len()) {
                frames.push((c, self.frame_of(c)));
            }
        }
        let input_frame = frames.first().map_or(ROOT_FRAME, |f| f.1);
        if strict {
            if let Some(&(other, f)) = frames.iter().find(|f| f.1 != input_frame) {
                return Err(frame_error(
                    node,
                    format!(
                        "its inputs come from different frames: `{}` runs in {} and `{}` in {} \
                         (values enter a loop through Enter nodes)",
                        graph.node(frames[0].0).name,
                        self.describe(input_frame),
                        graph.node(other).name,
                        self.describe(f)
                    ),
                ));
            }
        }
        match node.op.as_str() {
            "Enter" => {
                let name = node
                    .attrs
                    .string_opt("frame_name")
                    .cloned()
                    .unwrap_or_default();
                match self.by_name.get(&name) {
                    Some(&f) => {
                        if strict && self.frames[f as usize].parent != input_frame {
                            return Err(frame_error(
                                node,
                                format!(
                                    "frame `{name}` is entered from {} and from {}",
                                    self.describe(self.frames[f as usize].parent),
                                    self.describe(input_frame)
                                ),
                            ));
                        }
                        Ok(f)
                    }
                    None => {
                        let f = self.frames.len() as FrameId;
                        let depth = self.frames[input_frame as usize].depth + 1;
                        self.frames.push(FrameDesc {
                            name: name.clone(),
                            parent: input_frame,
                            depth,
                        });
                        self.by_name.insert(name, f);
                        Ok(f)
                    }
                }
            }
            "Exit" => {
                if input_frame == ROOT_FRAME {
                    if strict {
                        return Err(frame_error(node, "it is not inside a loop frame".into()));
                    }
                    return Ok(ROOT_FRAME);
                }
                Ok(self.frames[input_frame as usize].parent)
            }
            _ => Ok(input_frame),
        }
    }

    /// The frame node `id` runs in.
    pub fn frame(&self, id: NodeId) -> FrameId {
        self.frame_of(id)
    }

    pub fn parent(&self, f: FrameId) -> FrameId {
        self.frames[f as usize].parent
    }

    pub fn num_frames(&self) -> usize {
        self.frames.len()
    }

    /// The frame named `name` (an Enter's `frame_name`).
    pub fn by_name(&self, name: &str) -> Option<FrameId> {
        self.by_name.get(name).copied()
    }

    /// True when `f` is `ancestor` or lies inside it.
    pub fn is_within(&self, mut f: FrameId, ancestor: FrameId) -> bool {
        loop {
            if f == ancestor {
                return true;
            }
            if f == ROOT_FRAME {
                return false;
            }
            f = self.frames[f as usize].parent;
        }
    }

    /// `the root frame` or `loop frame `name``.
    pub fn describe(&self, f: FrameId) -> String {
        if f == ROOT_FRAME {
            "the root frame".into()
        } else {
            format!("loop frame `{}`", self.frames[f as usize].name)
        }
    }
}

fn frame_error(node: &Node, message: String) -> GraphError {
    GraphError::InvalidNode {
        node: node.name.clone(),
        op: node.op.clone(),
        message,
    }
}
