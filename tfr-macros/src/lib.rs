//! `tfr-macros`: the [`graph!`] macro. Models written in Rust syntax become static `tfr` graphs
//! while the crate compiles: shapes and dtypes are inferred and checked by the op registry's
//! shape functions, gradients and optimizer updates are derived by `tfr_graph::gradients`, and
//! a mistake is a compiler error on the line that made it.
//!
//! Use it through the facade: `use tfr::graph;`.
//!
//! The crate is split like the stages of an expansion: [`parse`](crate) reads the input into a
//! model of the definition (`model.rs`), `check.rs` and `lower.rs` build the real
//! `tfr_graph::Graph` with the builder API (collecting errors, spanned on the user's tokens),
//! and `expand.rs` emits the graph (serialized) with typed handles.

mod annotations;
mod args;
mod body;
mod calls;
mod check;
mod control;
mod declarations;
mod expand;
mod functions;
mod invariants;
mod layers;
mod loops;
mod lower;
mod messages;
mod model;
mod parse;
mod registry_call;
mod signatures;
mod sources;
mod spellings;
mod symbolic;
mod training;
mod values;

use proc_macro::TokenStream;

/// Defines models whose graphs are built, checked and differentiated at compile time.
///
/// ```
/// use tfr::ndarray::{array, Array1, Array2};
/// use tfr::graph;
///
/// graph! {
///     /// A two-layer perceptron for 2-D points in two classes.
///     pub model Mlp<B> {
///         seed = 1;
///         input x: f32[B, 2];
///         input labels: i32[B];
///         var w1: f32[2, 16] = glorot_uniform();
///         var b1: f32[16] = zeros();
///         var w2: f32[16, 2] = glorot_uniform();
///         var b2: f32[2] = zeros();
///         let h = tanh(x.matmul(w1) + b1);
///         output logits = h.matmul(w2) + b2;
///         output loss = sparse_softmax_cross_entropy(logits, labels);
///         let train = minimize(loss, Adam(0.05));
///     }
/// }
///
/// let m = Mlp::new();
/// let s = m.session()?; // variables initialized
/// let x: Array2<f32> = array![[0., 0.], [0., 1.], [1., 0.], [1., 1.]];
/// let y: Array1<i32> = array![0, 1, 1, 0];
/// let feeds = [m.x.feed(&x)?, m.labels.feed(&y)?];
/// let first = s.run(&feeds, &m.loss, &[m.train])?.into_scalar();
/// for _ in 0..200 {
///     s.run(&feeds, (), &[m.train])?;
/// }
/// let (loss, logits) = s.run(&feeds, (&m.loss, &m.logits), &[])?;
/// assert!(loss.into_scalar() < first);
/// assert_eq!(logits.shape(), &[4, 2]); // an ndarray::Array2<f32>
/// # Ok::<(), tfr::Error>(())
/// ```
///
/// # The language
///
/// A `graph!` invocation holds one or more models:
/// `[doc comments] [pub] model Name<D1, D2, ..> { statements }`. The generics are **symbolic
/// dimensions** (a batch `B`, a length `T`): names for sizes known only when a step runs.
///
/// ## Statements
///
/// | statement | meaning |
/// |---|---|
/// | `seed = 42;` | graph-level random seed (first statement): initial values are reproducible |
/// | `input x: f32[B, 784];` | a placeholder; dims are integers or the model's symbolic dims; `f32[]` is a scalar |
/// | `var w: f32[784, 10] = glorot_uniform();` | a variable; the type is optional (`var w = glorot_uniform([784, 10]);`); a number literal fills the declared shape (`var b: f32[10] = 0.0;`) |
/// | `let h = relu(x.matmul(w) + b);` | names a value; `let (a, b) = split(x, 2, axis = 1);` destructures a tuple |
/// | `let h: f32[B, 16] = ..;` | the same, asserting the type: an error unless the inferred dtype and shape prove it (a `?` does not prove `B`) |
/// | `output logits;` / `output p = softmax(logits);` / `output a, b;` | exposes tensors as typed fetch handles |
/// | `let train = minimize(loss, Adam(0.01));` | a train op: a `let` bound to an op without outputs is exposed as a target |
/// | `#[fetch] let h = relu(..);` | the same, and `h` is also a fetch handle of the model (an intermediate to inspect) |
/// | `h = block(h, 64);` | a new value for a `let` name or a function's parameter (how a `for` loop threads a value) |
/// | `fn block(x, c) { ..; value }` | a function of the model, expanded at each call (below) |
/// | `for i in 0..3 { .. }` | a loop unrolled while the macro expands (below) |
/// | `scope "layer1" { .. }` | a name scope: nodes inside are named `layer1/...` |
/// | `#[device("/device:GPU:0")] { .. }` | a device for the nodes inside (kept on each node for placement) |
///
/// `#[scope("name")]` and `#[device("..")]` also go on a single statement. Names are
/// single-assignment and visible after their statement, blocks included (a scope names nodes;
/// it does not hide bindings). Doc comments on `input`, `var`, `output` and `let` statements
/// become the docs of the generated fields.
///
/// ## Types
///
/// `f32`, `f64`, `i32`, `i64`, `u8`, `bool` (and `f16`, `bf16` as storage types). A shape lists
/// dims: `f32[B, 28, 28]`. A variable's shape must be fully known (numbers only).
///
/// ## Expressions
///
/// | syntax | lowers to |
/// |---|---|
/// | `a + b`, `a - b`, `a * b`, `a / b`, `a % b` | `Add`, `Sub`, `Mul`, `Div`, `FloorMod` (numpy broadcasting) |
/// | `a < b`, `<=`, `>`, `>=`, `==`, `!=` | `Less`, ... `NotEqual` (bool tensors) |
/// | `a && b`, `a \|\| b`, `!a` | `LogicalAnd`, `LogicalOr`, `LogicalNot` |
/// | `-a` | `Neg` (of a literal: a negative literal) |
/// | `2.0`, `3`, `true`, `1.5f64`, `[[1.0, 0.0], [0.0, 1.0]]` | a `Const`: untyped literals take the dtype of the tensor they meet (`x * 2.0` is f64 when `x` is), else f32 / i32 / bool; a suffix fixes the dtype |
/// | `(a, b)`, `t.0` | tuples and their fields |
/// | `if p { a } else { b }`, `while_loop(..)`, `cond(..)` | control flow (below) |
/// | `{ let t = x - 1.0; t * t }` | a block: its `let` statements, then its value (names bound inside are local to it) |
/// | `f(x, y, key = value)` | a function of the table below (keyword arguments after positional ones) |
/// | `x.f(y, key = value)` | the same as `f(x, y, key = value)` |
/// | `x as f64`, `x.dot(w)`, `w.t()` | familiar spellings of `cast(x, f64)`, `matmul(x, w)`, `transpose(w)` (and `x.max(y)`, a reduction, answers with `x.maximum(y)`) |
/// | `MatMul(a, b, transpose_b = true)` | any registry op by its own name: tensors positional, attributes as keywords; several outputs give a tuple |
///
/// Functions (each lowers to the `Graph` builder method of the same name, or the named op):
///
/// - elementwise: `neg abs sign square sqrt rsqrt exp expm1 log log1p sin cos tanh sigmoid erf
///   floor ceil round reciprocal logical_not`, activations `relu relu6 elu selu softplus`,
///   `softmax log_softmax`, `identity stop_gradient zeros_like ones_like`, `shape size rank`;
/// - binary: `add sub mul div floor_div floor_mod pow maximum minimum equal not_equal less
///   less_equal greater greater_equal logical_and logical_or bias_add`;
/// - reductions `sum mean max min prod all any logsumexp` (also `reduce_*`):
///   `sum(x, axis = 1, keep_dims = true)`, `mean(x)` over every axis, `axis = [0, 1]`;
/// - `matmul(a, b, transpose_a = .., transpose_b = ..)`, `batch_matmul(x, y, adj_x = .., adj_y = ..)`,
///   `argmax(x, axis)`, `argmin(x, axis)`, `cast(x, f64)`, `select(cond, t, e)`,
///   `clip(x, lo, hi)`, `add_n([a, b, c])`;
/// - shapes: `reshape(x, [B, 784])`, `reshape(x, [B, -1])` (see *Symbolic dims* below),
///   `transpose(x)` /
///   `transpose(x, [1, 0])`, `expand_dims(x, axis)`, `squeeze(x, axis = [1])`,
///   `concat([a, b], axis)`, `split(x, num, axis = ..)` and `unstack(x, num, axis = ..)` (tuples),
///   `stack([a, b], axis = ..)`, `gather(params, indices, axis = ..)`,
///   `one_hot(labels, depth, on_value = .., off_value = .., dtype = ..)`, `slice(x, begin, size)`,
///   `pad(x, [[1, 1], [0, 0]], value = ..)`, `tile(x, multiples)`, `broadcast_to(x, shape)`,
///   `reverse(x, axes)`, `range(start, limit, delta)`;
/// - constants and random values: `zeros(shape)`, `ones(shape)`, `fill(shape, value)` (these
///   three and `broadcast_to` take symbolic dims: `zeros([B, 16])`),
///   `random_uniform(shape, seed = ..)`, `random_normal`, `truncated_normal` (`dtype = ..`);
///   initializers `glorot_uniform(shape)`, `he_normal(shape)`, `uniform(shape, limit)`. In a
///   `var` with a declared type, the shape may be left out: `var w: f32[3, 4] = he_normal();`;
/// - losses (scalar means over the batch): `sparse_softmax_cross_entropy(logits, labels)`,
///   `softmax_cross_entropy(logits, label_distributions)`, `mean_squared_error(pred, target)`,
///   and the per-example `sparse_softmax_cross_entropy_with_logits`,
///   `softmax_cross_entropy_with_logits`;
/// - state: `assign(v, value)`, `assign_add(v, delta)`, `assign_sub(v, delta)`;
/// - images (NHWC): `conv2d(x, filter, strides = 1, padding = "SAME")`,
///   `max_pool(x, 2, strides = .., padding = "VALID")`, `avg_pool(..)` (a window is one size,
///   `[height, width]` or four NHWC sizes);
/// - `group([a, b])`: a target that runs its arguments;
/// - layers (below): `dense`, `conv2d_layer`, `flatten`, `lstm`.
///
/// Every function takes its arguments by position or by name, in the order of its usage line
/// (`reduce_sum(x, axis = 1, keep_dims = true)`, `one_hot(labels, depth = 10)`); a name it does
/// not have is an error that gives the nearest one and the usage.
///
/// ## Symbolic dims
///
/// A model's generics (`model Rnn<T, B>`) name sizes fixed when a step runs. They may appear
///
/// - in the types of `input`s (`input x: f32[B, 784];`), where the feeds give them values (one
///   value per step: every input with `B` must agree);
/// - in the shape argument of `reshape`, `zeros`, `ones`, `fill` and `broadcast_to`
///   (`zeros([B, 16])` is the zero state of a recurrent net); the value comes from the shape
///   of the first input declared with that symbol (`Shape` and `Gather` nodes reading it when
///   the step runs), so such an input must be declared first;
/// - in `shape_invariants` of a `while_loop` (below).
///
/// Not in a `var` (a variable keeps its shape across steps) or a random initializer's shape,
/// and not as a value: read one with `gather(shape(x), 0)`.
///
/// A static shape names a symbol only where that is provable, so a shape never lies:
///
/// - `reshape(x, [B, 784])` of an `f32[B, 28, 28, 1]` is `[B, 784]`: the element counts
///   (`784*B` both) are equal whatever `B` is. `reshape(x, [B, 392])` is an error: `392*B`
///   differs from `784*B` for every `B`.
/// - A `-1` is solved symbolically: `reshape(x, [-1, 784])` of `[B, 784]` is `[B, 784]`, and
///   `reshape(images, [B, -1])` (the flatten idiom) is `[B, 784]`. Where the quotient is no
///   single symbol (`[-1, 392]` has `2*B` rows) the dim is unknown (`?`).
/// - Where the counts depend on the fed sizes (`reshape(x, [T, 784])` of `[B, 784]`, or
///   `[6, 392]` of `[B, 28, 28, 1]`), the shape is computed when the step runs and the
///   `Reshape` kernel checks the count: a mismatch fails the step with an error naming the
///   node, `reshape_lineN` after the model's line `N`.
///
/// ## Functions, loops and layers
///
/// A model is written once and repeated by the macro: functions, `for` loops and layers all
/// expand while the crate compiles, so the emitted graph holds one copy per call or iteration,
/// each shape-checked with its own arguments.
///
/// - **Functions**: `fn conv_block(x, channels) { let h = ..; value }` declared anywhere in the
///   model (before or after its calls). Parameters are names without types: each call checks
///   the body with its arguments' dtypes and shapes (tensors) or values (numbers, usable as
///   dims: `zeros([channels])`), and an error in the body is reported there and at the call.
///   A function sees its parameters and the model's other functions, not the caller's names.
///   Each call runs under a name scope of its own, `conv_block`, `conv_block_1`, ..., so the
///   variables its body declares (`var w = he_normal([3, 3, 4, channels]);`) are new at each
///   call (`conv_block_1/w`) and trained by `minimize` like the model's own. Its value is its
///   last expression (without `;`). A function that calls itself is an error (the expansion
///   would not end): repeat with `for` or `while_loop`.
/// - **`for` loops** run over a range with bounds known while the macro runs (`0..3`, `1..=n`
///   with `n` a loop variable or a function's numeric parameter) or a list of numbers or
///   tuples (`for (c, n) in [(64, 2), (128, 2)]`); the loop variable is a number, usable in
///   dims and arithmetic (`dense(h, 64 * (i + 1))`). The body is copied once per value; names
///   bound in it are local to one iteration, and `h = ..;` gives an outer `let` a new value
///   (a loop run by the graph, with a trip count known only at run time, is `while_loop`).
///   A `var` in the body is one variable per iteration (`w`, `w_1`, ...).
/// - **Layers** make their variables with `tfr-nn`'s initializers, under a scope named after
///   the layer (`dense`, `dense_1`, ...), and are trained by `minimize`:
///   - `dense(x, units, activation)`: `activation(x.matmul(kernel) + bias)`, Glorot-uniform
///     kernel, zero bias;
///   - `conv2d_layer(x, filters, kernel_size, strides = 1, padding = "SAME", activation = ..)`:
///     NHWC, He-normal kernel, zero bias (one fused node with `relu`/`relu6`/`linear`);
///   - `flatten(x)`: `[batch, rest]`, keeping a symbolic batch;
///   - `lstm(xs, units)`: the last hidden state `[B, units]` of an LSTM over a time-major
///     `[T, B, features]` sequence (TensorFlow's gate order and forget bias of 1; a `while_loop`
///     over `T`, so the length may change from step to step);
///   - activations: `linear` (the default), `relu`, `relu6`, `elu`, `tanh`, `sigmoid`;
///   - and `max_pool(x, 2)`, `avg_pool(..)` from the function list.
///
/// VGG-16 in a dozen lines:
///
/// ```
/// use tfr::graph;
///
/// graph! {
///     model Vgg16<B> {
///         input images: f32[B, 224, 224, 3];
///         input labels: i32[B];
///         fn block(x, channels, convs) {
///             for _ in 0..convs {
///                 x = conv2d_layer(x, channels, 3, activation = relu);
///             }
///             max_pool(x, 2)
///         }
///         let h = images;
///         for (channels, convs) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)] {
///             h = block(h, channels, convs);
///         }
///         h = dense(dense(flatten(h), 4096, relu), 4096, relu);
///         output logits = dense(h, 1000);
///         output loss = sparse_softmax_cross_entropy(logits, labels);
///         let train = minimize(loss, Adam(0.001));
///     }
/// }
///
/// let m = Vgg16::new();
/// assert_eq!(m.graph().shape(m.logits.output).to_string(), "[B, 1000]");
/// ```
///
/// (A debug build runs such a model slowly unless dependencies are optimized: put
/// `[profile.dev.package."*"] opt-level = 3` in your `Cargo.toml`, as this workspace does.)
///
/// ## Control flow
///
/// Loops and conditionals are values, built into the graph as TensorFlow's control-flow ops
/// (Switch, Merge, Enter, Exit, NextIteration, LoopCond), so that the step decides at run time
/// which branch runs and how many iterations: the trip count may depend on the data.
///
/// | syntax | lowers to |
/// |---|---|
/// | `if p { a } else { b }` (and `else if`) | `Graph::cond(p, true_fn, false_fn)` |
/// | `cond(p, \|\| a, \|\| b)` | the same, in the builder's argument order |
/// | `while_loop(\|i, x\| cond, \|i, x\| body, (i0, x0))` | `Graph::while_loop(cond_fn, body_fn, &[i0, x0], options)` |
///
/// - A branch, or the body of a closure, is an expression or a block of `let` statements
///   ending with its value: `{ let t = x - 1.0; t * t }`. Names bound inside are local to it.
/// - `p` is a bool scalar. The two branches give as many values (one tensor, or a tuple), with
///   the same dtypes and shapes; a literal without a suffix in either branch takes the other
///   branch's dtype (`if p { 0.0 } else { x }` is f64 when `x` is).
/// - `while_loop` takes the loop's condition, its body, and the initial values of the loop
///   variables (one expression, or a tuple for several variables of any dtypes and shapes).
///   Both closures take one parameter per loop variable, in order (`|i, h|`, or `|(i, h)|`);
///   the condition gives a bool scalar, the body the next value of every variable, each with
///   the dtype and shape it entered with. The loop's value is the variables' final values (a
///   tuple when they were given as one). Keyword options: `maximum_iterations = 1000` (a step
///   whose loop runs longer fails, instead of hanging), `parallel_iterations = 10` (how many
///   iterations may run at once), `gradient_checkpoints = k` (the gradient keeps the loop
///   variables every k iterations and recomputes the rest: memory O(T/k); see
///   `WhileOptions::gradient_checkpoints`) and `shape_invariants` (below).
/// - **Shape invariants.** A loop variable keeps the shape it enters with, unless
///   `shape_invariants = (..)` says which shapes it may take (TensorFlow's `shape_invariants`):
///   one entry per loop variable, in order (a tuple when the loop variables are one), `_` for a
///   variable that keeps its shape, or a list of dims, each a number or a symbolic dim (fixed),
///   `_` (any size), or a size followed by `?` (`B?`, `1?`: the size it enters with, which may
///   change; checked against the entering value). `shape_invariants = (_, [B?, 4])` lets the
///   second variable's rows change and keeps its 4 columns; inside the loop and after it, the
///   variable's static shape is the invariant (`[?, 4]`). The body's value must fit it (an
///   error names the variable, the invariant and the body's shape), and so must the entering
///   value. It lowers to `WhileOptions::shape_invariants`; gradients flow through such loops.
/// - Anything defined outside (inputs, variables, names) may be used inside: the graph captures
///   it (a Switch into a branch, an Enter into a loop, once). Loops and conds nest.
/// - `grad` and `minimize` differentiate through both (the gradient of a loop is a backward
///   loop over the saved forward values; of a cond, the taken branch's gradient).
///
/// ```
/// use tfr::ndarray::{arr0, array};
/// use tfr::graph;
///
/// graph! {
///     model Collatz {
///         input n: i64[];
///         // Steps of the Collatz sequence until it reaches 1: a data-dependent trip count.
///         let (steps, last) = while_loop(
///             |steps, k| k != 1,
///             |steps, k| {
///                 let next = if k % 2 == 0 { k / 2 } else { 3 * k + 1 };
///                 (steps + 1, next)
///             },
///             (0, n),
///             maximum_iterations = 10000,
///         );
///         output steps;
///     }
/// }
///
/// let m = Collatz::new();
/// let s = m.session()?;
/// let steps = s.run(&[m.n.feed(&arr0(27i64))?], &m.steps, &[])?;
/// assert_eq!(steps.into_scalar(), 111);
/// # Ok::<(), tfr::Error>(())
/// ```
///
/// A recurrent network over a sequence of any length, trained through the loop:
///
/// ```
/// use tfr::graph;
///
/// graph! {
///     model Rnn<T, B> {
///         input xs: f32[T, B, 4];
///         input target: f32[B, 1];
///         var wx: f32[4, 16] = glorot_uniform();
///         var wh: f32[16, 16] = glorot_uniform();
///         var wo: f32[16, 1] = glorot_uniform();
///         let h0 = tanh(gather(xs, 0).matmul(wx));
///         let (t, h) = while_loop(
///             |t, h| t < gather(shape(xs), 0),
///             |t, h| (t + 1, tanh(gather(xs, t).matmul(wx) + h.matmul(wh))),
///             (1, h0),
///         );
///         output loss = mean_squared_error(h.matmul(wo), target);
///         let train = minimize(loss, Adam(0.01));
///     }
/// }
/// # fn main() {}
/// ```
///
/// A loop variable that grows, with a data-dependent trip count:
///
/// ```
/// use tfr::ndarray::{arr0, array};
/// use tfr::graph;
///
/// graph! {
///     model Grow<B> {
///         input x: f32[B, 2];
///         input limit: f32[];
///         // Appends a copy of `acc` plus 1 until its sum reaches `limit`.
///         let (n, acc) = while_loop(
///             |n, acc| sum(acc) < limit,
///             |n, acc| (n + 1, concat([acc, acc + 1.0], axis = 0)),
///             (0, x),
///             shape_invariants = (_, [B?, 2]),
///         );
///         output n, acc;
///     }
/// }
///
/// let m = Grow::new();
/// let s = m.session()?;
/// let feeds = [m.x.feed(&array![[0.0f32, 1.0]])?, m.limit.feed(&arr0(10.0f32))?];
/// let (n, acc) = s.run(&feeds, (&m.n, &m.acc), &[])?;
/// assert_eq!(n.into_scalar(), 2);
/// assert_eq!(acc, array![[0.0, 1.0], [1.0, 2.0], [1.0, 2.0], [2.0, 3.0]]);
/// # Ok::<(), tfr::Error>(())
/// ```
///
/// The checks are the builder's, reported on your tokens: a body that changes a loop
/// variable's shape or dtype (naming the variable and both types, and suggesting the shape
/// invariant that allows the change), a body outside a declared shape invariant, a condition or
/// predicate that is not a bool scalar, a body returning the wrong number of values, branches
/// whose dtypes or shapes disagree (naming both). Errors inside both branches of a cond are
/// all reported, also when its predicate has one.
///
/// ## Gradients and training
///
/// `grad(y, wrt = [a, b])` adds the backward graph of `sum(y)` with respect to each tensor and
/// gives their gradients as a tuple (`grad(y, wrt = a)` gives one tensor). It runs
/// `tfr_graph::gradients` while the macro expands, so the emitted graph contains the backward
/// nodes:
///
/// ```
/// use tfr::ndarray::array;
/// use tfr::graph;
///
/// graph! {
///     model Square {
///         input x: f64[3];
///         let y = sum(x * x);
///         let dx = grad(y, wrt = x);
///         output y, dx;
///     }
/// }
///
/// let m = Square::new();
/// let s = m.session()?;
/// let (y, dx) = s.run(&[m.x.feed(&array![1.0, 2.0, 3.0])?], (&m.y, &m.dx), &[])?;
/// assert_eq!(y.into_scalar(), 14.0);
/// assert_eq!(dx, array![2.0, 4.0, 6.0]);
/// # Ok::<(), tfr::Error>(())
/// ```
///
/// `minimize(loss, OPTIMIZER, wrt = [w1, b1])` differentiates the loss and adds the optimizer's
/// updates (and its slot variables); `wrt` defaults to every float variable declared before it.
/// Optimizers (from `tfr-nn`): `Sgd(lr)`, `Momentum(lr, momentum, nesterov = ..)`,
/// `Adam(lr, beta1 = .., beta2 = .., epsilon = ..)`, `AdamW(lr, weight_decay)`,
/// `RmsProp(lr, rho = .., momentum = .., epsilon = ..)`, `Adagrad(lr)`. The learning rate may be
/// a tensor expression (a schedule).
///
/// ## What the macro generates
///
/// For `model Mlp`, a struct `Mlp` with:
///
/// - `Mlp::new()`: loads the graph built at compile time (embedded as postcard bytes; the node
///   ids are those of the expansion);
/// - `graph()` / `into_graph()`: the `tfr::Graph`, to run with a plain `tfr::Session` or to
///   extend with the builder API;
/// - `session()`: a `tfr::model::Session` with every variable initialized, whose
///   `run(feeds, fetches, targets)` takes typed feeds and returns typed arrays (a fetch is a
///   handle or a tuple of handles); a kernel error in a step names the failing node and the
///   model's line and expression it came from (`... (graph! model `Mlp`, src/main.rs:12:
///   `gather(table, index)`)`);
/// - one public field per name, of the types in `tfr::model` (shared by every model, so a
///   session or a handle can be passed to a helper function): inputs are `Input<T, D>` (`m.x.feed(&array)` checks the rank by
///   the type and the static dims when fed: "feed for `x`: expected f32[B, 2], got [4, 3]: dim 1
///   is 3, expected 2"; a symbolic dim must agree across the inputs of one step), outputs are
///   `Fetch<T, D>` (fetched as `ndarray::Array<T, D>`, re-exported as `tfr::ndarray`: a crate
///   using `graph!` needs only `tfr`), `#[fetch] let`s too, variables `Var<T, D>` (fetchable too;
///   `.name` is the resource name), targets `Target`; `initializer()` is the init target.
///
/// ## Errors
///
/// Every mistake is reported while compiling, on the tokens that made it, and all of them are
/// reported (a statement that depends on a failed one is skipped silently):
///
/// ```compile_fail
/// use tfr::graph;
/// graph! {
///     model Bad<B> {
///         input x: f32[B, 784];
///         var w1: f32[512, 10] = zeros();
///         let h = x.matmul(w1); // error: matmul: inner dimensions differ: x is [B, 784], w1 is [512, 10]; 784 != 512
///     }
/// }
/// # fn main() {}
/// ```
///
/// Others: dtype mismatches (with the fix: `cast(n, f32)`), literals that do not fit their
/// dtype (`u8 + 300`, `f32 * 1e40`: never saturated), `minimize` of a loss that is not a scalar
/// (with `mean(..)` or `sum(..)` as the fix), reshapes whose element counts differ, broadcasting conflicts with both
/// shapes, unknown functions, methods, ops, dtypes, dimensions and keyword arguments (with the
/// nearest name), wrong numbers of arguments (with the usage), undefined or reused names, a
/// gradient asked of an integer tensor, a loss that does not depend on a variable, a variable
/// without a fixed shape, and the control-flow mistakes above.
///
/// ## Lowering, and equality with the builder API
///
/// Statements are lowered in order to the `Graph` builder calls named above, and operands are
/// evaluated left to right before their op; a literal becomes a `Const` right before the op that
/// uses it (`x * 2.0` is `let c = g.scalar_like(x, 2.0)?; g.mul(x, c)?`); an input is
/// `g.placeholder(name, dtype, shape)`; a `var` evaluates its initializer then calls
/// `g.variable(name, initial)`; `zeros(shape)` is `g.fill(shape, scalar 0)`; `reshape(x, [B, 10])`
/// is `g.reshape(x, &[-1, 10])` then `g.refine_output_shape(..)` with `B` (when the counts
/// prove it; other symbolic shapes are `Pack`ed from `Shape`/`Gather` of an input); `minimize`
/// is the
/// `tfr_nn` optimizer's `minimize`; the variables' initializer is made last. The same calls made
/// at run time give the same graph, node for node.
///
#[proc_macro]
pub fn graph(input: TokenStream) -> TokenStream {
    expand_tokens(input.into()).into()
}

/// The whole expansion, on `proc_macro2` tokens (so it runs in unit tests and benchmarks).
fn expand_tokens(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let parsed: parse::Input = match syn::parse2(input) {
        Ok(p) => p,
        Err(e) => return e.to_compile_error(),
    };
    let mut out = proc_macro2::TokenStream::new();
    for e in &parsed.errors {
        out.extend(e.to_compile_error());
    }
    for model in &parsed.models {
        let built = check::build(model);
        out.extend(expand::expand(model, &built));
    }
    out
}

#[cfg(test)]
mod tests;
