//! Unit tests of the whole expansion: every function lowers, control-flow errors, timings.
use super::*;
use std::time::Instant;

fn build_source(src: &str) -> (check::Built, Vec<syn::Error>) {
    let parsed: parse::Input = syn::parse_str(src).expect("parses");
    assert_eq!(parsed.models.len(), 1);
    let built = check::build(&parsed.models[0]);
    (built, parsed.errors)
}

fn messages(errors: &[syn::Error]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

/// One valid call of every function of the language: the table and the lowering agree,
/// and each builds without error.
#[test]
fn every_function_lowers() {
    let samples: Vec<(&str, String)> = signatures::UNARY
        .iter()
        .map(|(n, _)| {
            let arg = if *n == "logical_not" { "c" } else { "x" };
            (*n, format!("{n}({arg})"))
        })
        .chain(signatures::BINARY.iter().map(|(n, _)| {
            let call = match *n {
                "logical_and" | "logical_or" => format!("{n}(c, c)"),
                "bias_add" => format!("{n}(x, bvec)"),
                "sparse_softmax_cross_entropy_with_logits" | "sparse_softmax_cross_entropy" => {
                    format!("{n}(x, i)")
                }
                _ => format!("{n}(x, x)"),
            };
            (*n, call)
        }))
        .chain(signatures::REDUCTIONS.iter().map(|(n, _)| {
            let arg = if n.ends_with("all") || n.ends_with("any") {
                "c"
            } else {
                "x"
            };
            (*n, format!("{n}({arg}, axis = 1, keep_dims = true)"))
        }))
        .collect();
    let others: &[(&str, &str)] = &[
        ("matmul", "matmul(x, m2, transpose_a = false)"),
        (
            "batch_matmul",
            "batch_matmul(expand_dims(x, 0), expand_dims(m2, 0))",
        ),
        ("argmax", "argmax(x, 1)"),
        ("argmin", "argmin(x, 1)"),
        ("cast", "cast(x, f64)"),
        ("select", "select(c, x, 0.0)"),
        ("clip", "clip(x, 0.0, 1.0)"),
        ("clip_by_value", "clip_by_value(x, 0.0, 1.0)"),
        ("add_n", "add_n([x, x])"),
        ("reshape", "reshape(x, [3, 2])"),
        ("transpose", "transpose(x)"),
        ("expand_dims", "expand_dims(x, 0)"),
        ("squeeze", "squeeze(expand_dims(x, 0), axis = [0])"),
        ("concat", "concat([x, x], axis = 0)"),
        ("split", "split(x, 3, axis = 1)"),
        ("stack", "stack([x, x])"),
        ("unstack", "unstack(x, 2)"),
        ("gather", "gather(x, i)"),
        ("one_hot", "one_hot(i, 4)"),
        ("fill", "fill([2, 2], 1.0)"),
        ("zeros", "zeros([2], dtype = i64)"),
        ("ones", "ones([2])"),
        ("slice", "slice(x, [0, 0], [1, 2])"),
        ("pad", "pad(x, [[1, 1], [0, 0]])"),
        ("tile", "tile(x, [2, 1])"),
        ("broadcast_to", "broadcast_to(bvec, [2, 3])"),
        ("reverse", "reverse(x, [1])"),
        ("range", "range(0, 5)"),
        ("random_uniform", "random_uniform([2], seed = 1)"),
        ("random_normal", "random_normal([2])"),
        ("truncated_normal", "truncated_normal([2], dtype = f64)"),
        ("glorot_uniform", "glorot_uniform([2, 2])"),
        ("he_normal", "he_normal([2, 2])"),
        ("uniform", "uniform([2], 0.5)"),
        ("conv2d", "conv2d(img, k, strides = 2, padding = \"VALID\")"),
        ("max_pool", "max_pool(img, 2)"),
        ("dense", "dense(x, 4, relu)"),
        (
            "conv2d_layer",
            "conv2d_layer(img, 4, 3, strides = 2, padding = \"VALID\", activation = tanh)",
        ),
        ("flatten", "flatten(img)"),
        ("lstm", "lstm(expand_dims(x, 0), 4)"),
        ("softmax", "softmax(x, axis = 0)"),
        ("log_softmax", "log_softmax(x)"),
        (
            "avg_pool",
            "avg_pool(img, [2, 2], strides = 1, padding = \"SAME\")",
        ),
        ("assign", "assign(v, x)"),
        ("assign_add", "assign_add(v, x)"),
        ("assign_sub", "assign_sub(v, x * 2.0)"),
        ("grad", "grad(sum(x * v), wrt = v)"),
        ("minimize", "minimize(sum(v * v), Sgd(0.1), wrt = [v])"),
        ("group", "group([x, v])"),
        ("cond", "cond(sum(x) > 0.0, || x, || x * 2.0)"),
        (
            "while_loop",
            "while_loop(|k, y| k < 3, |k, y| (k + 1, y * 2.0), (0, x))",
        ),
    ];
    let samples: Vec<(&str, String)> = samples
        .into_iter()
        .chain(others.iter().map(|(n, c)| (*n, c.to_string())))
        .collect();
    for name in signatures::function_names() {
        assert!(
            samples.iter().any(|(n, _)| *n == name),
            "no sample for `{name}`"
        );
    }
    let mut src = String::from(
        "model All { input x: f32[2, 3]; input m2: f32[3, 2]; input i: i32[2]; \
         input c: bool[2, 3]; input bvec: f32[3]; var v: f32[2, 3] = zeros(); \
         input img: f32[1, 8, 8, 3]; var k: f32[3, 3, 3, 4] = he_normal();",
    );
    for (k, (_, call)) in samples.iter().enumerate() {
        src.push_str(&format!("let s{k} = {call};"));
    }
    src.push('}');
    let (built, parse_errors) = build_source(&src);
    assert!(parse_errors.is_empty(), "{:?}", messages(&parse_errors));
    assert!(built.errors.is_empty(), "{:#?}", messages(&built.errors));
    assert!(built.init.is_some());
}

/// Malformed control flow is a spanned error, never a panic, and names the user's
/// variables and both types.
#[test]
fn control_flow_errors() {
    let head = "model M { input x: f32[3]; input n: i32[]; input p: bool[]; ";
    let cases: &[(&str, &str)] = &[
        ("let a = if p { x };", "needs an `else`"),
        ("let a = if let y = x { x } else { x };", "`if let`"),
        ("let a = if p { x; } else { x };", "remove this `;`"),
        ("let a = if p { } else { x };", "gives no value"),
        (
            "let a = if p { fn f() {} x } else { x };",
            "items are not supported",
        ),
        (
            "let a = if p { let y: f32 = x; y } else { x };",
            "takes no type",
        ),
        ("let a = if p { x } else { true };", "dtype mismatch"),
        (
            "let a = if p { (x, x) } else { (x, n) };",
            "dtypes disagree for value 1",
        ),
        ("let a = if x < 1.0 { x } else { x };", "bool scalar"),
        ("let a = cond(p, |q| x, || x);", "takes no parameters"),
        ("let a = cond(p, x, || x);", "expected a closure"),
        ("let a = while_loop(move |v| p, |v| v, x);", "remove `move`"),
        ("let a = while_loop(|v: f32| p, |v| v, x);", "take no type"),
        (
            "let a = while_loop(|v| p, |v| -> f32 { v }, x);",
            "no return type",
        ),
        (
            "let a = while_loop(|v, v| p, |v, w| (v, w), (x, x));",
            "given twice",
        ),
        (
            "let a = while_loop(|v| p, |v| (v, v), x);",
            "a tuple of 2 values for 1",
        ),
        (
            "let a = while_loop(|i, v| i < n, |i, v| (i + 1, sum(v)), (0, x));",
            "`v` changes shape",
        ),
        (
            "let a = while_loop(|v| (p, p), |v| v, x);",
            "tuple of 2 values",
        ),
        (
            "let a = while_loop(|v| p, |v| v, ());",
            "at least one loop variable",
        ),
        (
            "let a = while_loop(|v| p, |v| v, x, maximum_iterations = -1);",
            "non-negative",
        ),
        (
            "let a = while_loop(|v| p, |v| v, x, parallel_iterations = 0);",
            "positive",
        ),
        (
            "let a = while_loop(|v| p, |v| v, x, gradient_checkpoints = 0);",
            "positive",
        ),
        (
            "let a = while_loop(|v| p, |v| { let t = group([v]); v }, x);",
            "target",
        ),
        (
            "let a = while_loop(|v| p, |v| { let n = v; n }, x);",
            "already defined",
        ),
        ("let a = |v| v;", "a closure is"),
        ("let a = for i in x { i };", "a `for` loop is a statement"),
        (
            "let a = while_loop(|v| p, |v| undefined_name, x);",
            "undefined name",
        ),
    ];
    for (stmt, want) in cases {
        let src = format!("{head}{stmt} }}");
        let parsed: parse::Input = syn::parse_str(&src).expect("parses");
        let mut m = messages(&parsed.errors);
        if parsed.models.len() == 1 {
            m.extend(messages(&check::build(&parsed.models[0]).errors));
        }
        assert!(
            m.iter().any(|e| e.contains(want)),
            "`{stmt}`: expected an error containing {want:?}, got {m:#?}"
        );
    }
}

/// An error in the true branch of a cond does not hide the false branch's: both are
/// reported (in `if`, `cond`, nested, and inside a loop body).
#[test]
fn cond_reports_both_branches() {
    let (built, _) = build_source(
        "model M { input x: f32[3]; input p: bool[]; input n: i32[]; \
         let a = if p { undefined_one } else { matmull(x) }; \
         let b = cond(p, || x.nope(), || (x, undefined_two)); \
         let c = while_loop(|v| p, |v| if p { v * undefined_three } else { \
             if p { undefined_four } else { v + undefined_five } }, x); \
         let d = if p { 0.5 } else { n }; \
         let f = if x { undefined_six } else { x.nope2() }; \
         let e = if p { (1, 2.5f64) } else { (n, x) }; }",
    );
    let m = messages(&built.errors);
    for want in [
        "undefined name `undefined_one`",
        "matmull",
        "nope",
        "undefined name `undefined_two`",
        "undefined name `undefined_three`",
        "undefined name `undefined_four`",
        "undefined name `undefined_five`",
        "dtypes disagree for value 1",
        "the condition of `if` must be a bool scalar",
        "undefined name `undefined_six`",
        "nope2",
    ] {
        assert!(m.iter().any(|e| e.contains(want)), "{want:?} not in {m:#?}");
    }
    assert_eq!(
        m.iter().filter(|e| e.contains("undefined_one")).count(),
        1,
        "{m:#?}"
    );
    // The literal 0.5 meets an i32 branch: an error on the literal, no panic.
    assert!(m.iter().any(|e| e.contains("0.5")), "{m:#?}");
}

/// A bare block is a value; its names are local to it; its errors are spanned.
#[test]
fn block_expressions() {
    let (built, errors) = build_source(
        "model M { input x: f32[3]; \
         let y = { let t = x - 1.0; t * t }; \
         let (a, b) = { let s = sum(x); (s, { let u = s * 2.0; u + 1.0 }) }; \
         let t = x; output y, a, b; }",
    );
    assert!(errors.is_empty(), "{:?}", messages(&errors));
    assert!(built.errors.is_empty(), "{:#?}", messages(&built.errors));
    let head = "model M { input x: f32[3]; ";
    for (stmt, want) in [
        ("let y = { let t = x; t; }; ", "remove this `;`"),
        ("let y = { let t = x; }; ", "gives no value"),
        ("let y = { }; ", "gives no value"),
        (
            "let y = { let t = x; t }; let z = t; ",
            "undefined name `t`",
        ),
        ("let y = 'a: { x }; ", "no label"),
        ("let y = { let g = group([x]); x }; ", "target"),
        ("let y = { let x = x * 2.0; x }; ", "already defined"),
    ] {
        let src = format!("{head}{stmt} }}");
        let parsed: parse::Input = syn::parse_str(&src).expect("parses");
        let mut m = messages(&parsed.errors);
        if parsed.models.len() == 1 {
            m.extend(messages(&check::build(&parsed.models[0]).errors));
        }
        assert!(
            m.iter().any(|e| e.contains(want)),
            "`{stmt}`: expected an error containing {want:?}, got {m:#?}"
        );
    }
}

/// `_` parameters, `|(a, b)|` tuple parameters and a loop variable shadowing an outer name.
#[test]
fn closure_parameter_forms() {
    let (built, errors) = build_source(
        "model M { input x: f32[3]; input n: i32[]; \
         let (i, y) = while_loop(|(i, _)| i < n, |i, y| (i + 1, y * 2.0), (0, x)); \
         let (k, x2) = while_loop(|_, x| sum(x) < 10.0, |k, x| (k + 1, x + 1.0), (0, x)); \
         output y, x2; }",
    );
    assert!(errors.is_empty(), "{:?}", messages(&errors));
    assert!(built.errors.is_empty(), "{:#?}", messages(&built.errors));
}

#[test]
fn word_replacements() {
    assert_eq!(
        check::rust_dtype_names("got float32 and int32, not float32x"),
        "got f32 and i32, not float32x"
    );
    assert_eq!(
        parse::nearest("matmull", signatures::function_names()),
        Some("matmul")
    );
    assert_eq!(parse::nearest("zzzz", signatures::function_names()), None);
}

/// The messages name the user's operands and both shapes.
#[test]
fn errors_name_operands() {
    let (built, _) = build_source(
        "model M<B> { input x: f32[B, 784]; var w1: f32[512, 10] = zeros(); \
         let h = x.matmul(w1); let y = relu(h); output y; }",
    );
    let m = messages(&built.errors);
    assert_eq!(
        m,
        vec!["matmul: inner dimensions differ: x is [B, 784], w1 is [512, 10]; 784 != 512"]
    );
}

/// A chain of `layers` dense layers, four ops each (matmul, +, relu, * literal), with a
/// loss and, if `train`, an Adam step.
pub(crate) fn chain_model(layers: usize, width: usize, train: bool) -> String {
    let mut s = format!("model Chain<B> {{ input x: f32[B, {width}]; let h0 = x;");
    for i in 0..layers {
        s.push_str(&format!(
            "var w{i}: f32[{width}, {width}] = glorot_uniform(); var b{i}: f32[{width}] = zeros();\
             let h{} = relu(h{i}.matmul(w{i}) + b{i}) * 0.5;",
            i + 1
        ));
    }
    s.push_str(&format!("output loss = mean(square(h{layers}));"));
    if train {
        s.push_str("let train = minimize(loss, Adam(0.001));");
    }
    s.push('}');
    s
}

/// VGG-16 (configuration D of Simonyan & Zisserman): thirteen 3x3 convolutions in five
/// blocks with max pooling, three dense layers, a softmax loss and an Adam step.
pub(crate) fn vgg16_model() -> String {
    let blocks: [&[usize]; 5] = [
        &[64, 64],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ];
    let mut s = String::from(
        "model Vgg16<B> { seed = 1; input x: f32[B, 224, 224, 3]; input labels: i32[B]; \
         let h0 = x;",
    );
    let (mut cin, mut i) = (3, 0);
    for (b, widths) in blocks.iter().enumerate() {
        for &w in widths.iter() {
            s.push_str(&format!(
                "scope \"conv{i}\" {{ var w{i}: f32[3, 3, {cin}, {w}] = he_normal(); \
                 var b{i}: f32[{w}] = zeros(); \
                 let h{} = relu(bias_add(conv2d(h{i}, w{i}), b{i})); }}",
                i + 1
            ));
            cin = w;
            i += 1;
        }
        s.push_str(&format!("let h{} = max_pool(h{i}, 2);", i + 1));
        i += 1;
        let _ = b;
    }
    s.push_str(&format!("let f0 = reshape(h{i}, [B, 25088]);"));
    let mut fan_in = 25088;
    for (j, w) in [4096, 4096, 1000].iter().enumerate() {
        let act = if j == 2 { "" } else { "relu" };
        s.push_str(&format!(
            "scope \"fc{j}\" {{ var v{j}: f32[{fan_in}, {w}] = he_normal(); \
             var c{j}: f32[{w}] = zeros(); let f{} = {act}(f{j}.matmul(v{j}) + c{j}); }}",
            j + 1
        ));
        fan_in = *w;
    }
    s.push_str(
        "output logits = f3; output loss = sparse_softmax_cross_entropy(logits, labels); \
         let train = minimize(loss, Adam(0.001)); }",
    );
    s
}

fn time_expansion(src: &str) -> (f64, usize, usize) {
    let tokens: proc_macro2::TokenStream = src.parse().expect("tokens");
    let (built, _) = build_source(src);
    assert!(built.errors.is_empty(), "{:?}", messages(&built.errors));
    let nodes = built.graph.len();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let out = expand_tokens(tokens.clone());
            let s = t.elapsed().as_secs_f64();
            assert!(!out.to_string().contains("compile_error"));
            s
        })
        .fold(f64::INFINITY, f64::min);
    (best, nodes, built.graph.to_bytes().len())
}

/// The expansion (parse, build, check, gradients, optimizer, emit) of a 200-op model and of
/// VGG-16. Prints the times (`cargo test -p tfr-macros --lib expansion_time -- --nocapture`);
/// asserts generous bounds so that a regression shows.
#[test]
fn expansion_time() {
    let forward = chain_model(50, 64, false);
    let (t, n, _) = time_expansion(&forward);
    println!("200-op forward model: {:.2} ms, {n} nodes", t * 1e3);
    assert!(t < 2.0, "200-op model took {t} s");
    let trained = chain_model(50, 64, true);
    let (t, n, b) = time_expansion(&trained);
    println!(
        "200-op model + gradients + Adam: {:.2} ms, {n} nodes, {b} bytes",
        t * 1e3
    );
    let vgg = vgg16_model();
    let (t, n, b) = time_expansion(&vgg);
    println!(
        "VGG-16 + gradients + Adam: {:.2} ms, {n} nodes, {b} bytes",
        t * 1e3
    );
    assert!(t < 10.0, "VGG-16 took {t} s");
}
