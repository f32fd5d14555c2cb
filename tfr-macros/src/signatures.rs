//! The function table of `graph!`: every function of the language with its parameters (their
//! kinds, whether required), the optimizers, and the binding of a call's arguments to them.

use syn::Expr;
use tfr_graph::{Graph, Output, Result as GResult};

/// The kind of one parameter of a language function.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A tensor expression (literals adapt to the other tensor operands).
    Tensor,
    /// `[a, b, c]`: a list of tensor expressions.
    Tensors,
    /// An integer literal.
    Int,
    /// An integer or a list of integers (`axis = 1`, `axis = [0, 1]`).
    Ints,
    /// A number literal.
    Float,
    Bool,
    /// A dtype name (`f32`).
    DType,
    /// A string literal.
    Str,
    /// A shape: `[784, 10]` (symbolic names of the model allowed where noted).
    Dims,
    /// `[[1, 1], [2, 2]]`: (before, after) pairs.
    Pairs,
    /// An optimizer: `Adam(0.01)`.
    Optimizer,
    /// `[w1, b1]`: variable names.
    Vars,
    /// Any value (tensors, or a tuple for `grad`'s list of tensors).
    Any,
    /// A closure: `|i, x| i < n` (a loop's condition or body, a branch of `cond`).
    Closure,
    /// A layer's activation, by name: `relu`.
    Activation,
}

/// One parameter: name, kind, required.
pub type Param = (&'static str, Kind, bool);

use Kind::*;

const X: &[Param] = &[("x", Tensor, true)];
const XY: &[Param] = &[("x", Tensor, true), ("y", Tensor, true)];
const REDUCE: &[Param] = &[
    ("x", Tensor, true),
    ("axis", Ints, false),
    ("keep_dims", Bool, false),
];
const RANDOM: &[Param] = &[
    ("shape", Dims, false),
    ("dtype", DType, false),
    ("seed", Int, false),
];
const FILLED: &[Param] = &[("shape", Dims, false), ("dtype", DType, false)];
const POOL: &[Param] = &[
    ("x", Tensor, true),
    ("ksize", Ints, true),
    ("strides", Ints, false),
    ("padding", Str, false),
];
const INIT: &[Param] = &[("shape", Dims, false), ("seed", Int, false)];

/// Unary elementwise functions and the builder method each lowers to.
pub type Unary = fn(&mut Graph, Output) -> GResult<Output>;
pub const UNARY: &[(&str, Unary)] = &[
    ("neg", Graph::neg),
    ("abs", Graph::abs),
    ("sign", Graph::sign),
    ("square", Graph::square),
    ("sqrt", Graph::sqrt),
    ("rsqrt", Graph::rsqrt),
    ("exp", Graph::exp),
    ("expm1", Graph::expm1),
    ("log", Graph::log),
    ("log1p", Graph::log1p),
    ("sin", Graph::sin),
    ("cos", Graph::cos),
    ("tanh", Graph::tanh),
    ("sigmoid", Graph::sigmoid),
    ("erf", Graph::erf),
    ("floor", Graph::floor),
    ("ceil", Graph::ceil),
    ("round", Graph::round),
    ("reciprocal", Graph::reciprocal),
    ("logical_not", Graph::logical_not),
    ("relu", Graph::relu),
    ("relu6", Graph::relu6),
    ("elu", Graph::elu),
    ("selu", Graph::selu),
    ("softplus", Graph::softplus),
    ("identity", Graph::identity),
    ("stop_gradient", Graph::stop_gradient),
    ("zeros_like", Graph::zeros_like),
    ("ones_like", Graph::ones_like),
    ("shape", Graph::shape_of),
    ("size", Graph::size),
    ("rank", Graph::rank),
];

/// Binary functions (numpy broadcasting where the op broadcasts).
pub type Binary = fn(&mut Graph, Output, Output) -> GResult<Output>;
pub const BINARY: &[(&str, Binary)] = &[
    ("add", Graph::add),
    ("sub", Graph::sub),
    ("mul", Graph::mul),
    ("div", Graph::div),
    ("floor_div", Graph::floor_div),
    ("floor_mod", Graph::floor_mod),
    ("pow", Graph::pow),
    ("maximum", Graph::maximum),
    ("minimum", Graph::minimum),
    ("equal", Graph::equal),
    ("not_equal", Graph::not_equal),
    ("less", Graph::less),
    ("less_equal", Graph::less_equal),
    ("greater", Graph::greater),
    ("greater_equal", Graph::greater_equal),
    ("logical_and", Graph::logical_and),
    ("logical_or", Graph::logical_or),
    ("bias_add", Graph::bias_add),
    (
        "softmax_cross_entropy_with_logits",
        Graph::softmax_cross_entropy_with_logits,
    ),
    (
        "sparse_softmax_cross_entropy_with_logits",
        Graph::sparse_softmax_cross_entropy_with_logits,
    ),
    (
        "sparse_softmax_cross_entropy",
        tfr_nn::losses::sparse_softmax_cross_entropy,
    ),
    (
        "softmax_cross_entropy",
        tfr_nn::losses::softmax_cross_entropy,
    ),
    ("mean_squared_error", tfr_nn::losses::mean_squared_error),
];

/// Reductions: (name, builder).
pub type Reduce = fn(&mut Graph, Output, Option<&[i64]>, bool) -> GResult<Output>;
pub const REDUCTIONS: &[(&str, Reduce)] = &[
    ("sum", Graph::reduce_sum),
    ("mean", Graph::reduce_mean),
    ("max", Graph::reduce_max),
    ("min", Graph::reduce_min),
    ("prod", Graph::reduce_prod),
    ("all", Graph::reduce_all),
    ("any", Graph::reduce_any),
    ("logsumexp", Graph::reduce_logsumexp),
    ("reduce_sum", Graph::reduce_sum),
    ("reduce_mean", Graph::reduce_mean),
    ("reduce_max", Graph::reduce_max),
    ("reduce_min", Graph::reduce_min),
    ("reduce_prod", Graph::reduce_prod),
    ("reduce_all", Graph::reduce_all),
    ("reduce_any", Graph::reduce_any),
    ("reduce_logsumexp", Graph::reduce_logsumexp),
];

/// The other functions: (name, parameters).
pub const OTHERS: &[(&str, &[Param])] = &[
    (
        "matmul",
        &[
            ("a", Tensor, true),
            ("b", Tensor, true),
            ("transpose_a", Bool, false),
            ("transpose_b", Bool, false),
        ],
    ),
    (
        "batch_matmul",
        &[
            ("x", Tensor, true),
            ("y", Tensor, true),
            ("adj_x", Bool, false),
            ("adj_y", Bool, false),
        ],
    ),
    ("argmax", &[("x", Tensor, true), ("axis", Int, true)]),
    ("argmin", &[("x", Tensor, true), ("axis", Int, true)]),
    ("cast", &[("x", Tensor, true), ("dtype", DType, true)]),
    (
        "select",
        &[
            ("cond", Tensor, true),
            ("t", Tensor, true),
            ("e", Tensor, true),
        ],
    ),
    (
        "clip",
        &[
            ("x", Tensor, true),
            ("min", Tensor, true),
            ("max", Tensor, true),
        ],
    ),
    (
        "clip_by_value",
        &[
            ("x", Tensor, true),
            ("min", Tensor, true),
            ("max", Tensor, true),
        ],
    ),
    ("add_n", &[("values", Tensors, true)]),
    ("reshape", &[("x", Tensor, true), ("shape", Dims, true)]),
    ("transpose", &[("x", Tensor, true), ("perm", Ints, false)]),
    ("expand_dims", &[("x", Tensor, true), ("axis", Int, true)]),
    ("squeeze", &[("x", Tensor, true), ("axis", Ints, false)]),
    ("concat", &[("values", Tensors, true), ("axis", Int, true)]),
    (
        "split",
        &[
            ("x", Tensor, true),
            ("num", Int, true),
            ("axis", Int, false),
        ],
    ),
    ("stack", &[("values", Tensors, true), ("axis", Int, false)]),
    (
        "unstack",
        &[
            ("x", Tensor, true),
            ("num", Int, true),
            ("axis", Int, false),
        ],
    ),
    (
        "gather",
        &[
            ("params", Tensor, true),
            ("indices", Tensor, true),
            ("axis", Int, false),
        ],
    ),
    (
        "one_hot",
        &[
            ("indices", Tensor, true),
            ("depth", Int, true),
            ("on_value", Float, false),
            ("off_value", Float, false),
            ("dtype", DType, false),
        ],
    ),
    ("fill", &[("shape", Dims, true), ("value", Tensor, true)]),
    ("zeros", FILLED),
    ("ones", FILLED),
    (
        "slice",
        &[
            ("x", Tensor, true),
            ("begin", Ints, true),
            ("size", Ints, true),
        ],
    ),
    (
        "pad",
        &[
            ("x", Tensor, true),
            ("paddings", Pairs, true),
            ("value", Float, false),
        ],
    ),
    ("tile", &[("x", Tensor, true), ("multiples", Ints, true)]),
    (
        "broadcast_to",
        &[("x", Tensor, true), ("shape", Dims, true)],
    ),
    ("reverse", &[("x", Tensor, true), ("axis", Ints, true)]),
    (
        "range",
        &[
            ("start", Tensor, true),
            ("limit", Tensor, true),
            ("delta", Tensor, false),
        ],
    ),
    ("random_uniform", RANDOM),
    ("random_normal", RANDOM),
    ("truncated_normal", RANDOM),
    ("glorot_uniform", INIT),
    ("he_normal", INIT),
    (
        "uniform",
        &[
            ("shape", Dims, false),
            ("limit", Float, true),
            ("seed", Int, false),
        ],
    ),
    (
        "conv2d",
        &[
            ("x", Tensor, true),
            ("filter", Tensor, true),
            ("strides", Ints, false),
            ("padding", Str, false),
        ],
    ),
    (
        "dense",
        &[
            ("x", Tensor, true),
            ("units", Int, true),
            ("activation", Activation, false),
        ],
    ),
    (
        "conv2d_layer",
        &[
            ("x", Tensor, true),
            ("filters", Int, true),
            ("kernel_size", Ints, true),
            ("strides", Ints, false),
            ("padding", Str, false),
            ("activation", Activation, false),
        ],
    ),
    ("flatten", X),
    ("softmax", &[("x", Tensor, true), ("axis", Int, false)]),
    ("log_softmax", &[("x", Tensor, true), ("axis", Int, false)]),
    ("lstm", &[("xs", Tensor, true), ("units", Int, true)]),
    ("max_pool", POOL),
    ("avg_pool", POOL),
    ("assign", &[("var", Vars, true), ("value", Tensor, true)]),
    (
        "assign_add",
        &[("var", Vars, true), ("value", Tensor, true)],
    ),
    (
        "assign_sub",
        &[("var", Vars, true), ("value", Tensor, true)],
    ),
    ("grad", &[("y", Any, true), ("wrt", Any, true)]),
    (
        "minimize",
        &[
            ("loss", Tensor, true),
            ("optimizer", Optimizer, true),
            ("wrt", Vars, false),
        ],
    ),
    ("group", &[("deps", Any, true)]),
    (
        "cond",
        &[
            ("pred", Tensor, true),
            ("true_fn", Closure, true),
            ("false_fn", Closure, true),
        ],
    ),
    (
        "while_loop",
        &[
            ("cond", Closure, true),
            ("body", Closure, true),
            ("loop_vars", Any, true),
            ("maximum_iterations", Int, false),
            ("parallel_iterations", Int, false),
            ("gradient_checkpoints", Int, false),
            ("shape_invariants", Any, false),
        ],
    ),
];

/// Optimizers, usable as the second argument of `minimize`.
pub const OPTIMIZERS: &[(&str, &[Param])] = &[
    ("Sgd", &[("lr", Any, true)]),
    ("SGD", &[("lr", Any, true)]),
    (
        "Momentum",
        &[
            ("lr", Any, true),
            ("momentum", Float, true),
            ("nesterov", Bool, false),
        ],
    ),
    (
        "Adam",
        &[
            ("lr", Any, true),
            ("beta1", Float, false),
            ("beta2", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "AdamW",
        &[
            ("lr", Any, true),
            ("weight_decay", Float, true),
            ("beta1", Float, false),
            ("beta2", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "RmsProp",
        &[
            ("lr", Any, true),
            ("rho", Float, false),
            ("momentum", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "RMSProp",
        &[
            ("lr", Any, true),
            ("rho", Float, false),
            ("momentum", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "Adagrad",
        &[
            ("lr", Any, true),
            ("initial_accumulator_value", Float, false),
        ],
    ),
];

/// The parameters of a language function.
pub fn signature(name: &str) -> Option<&'static [Param]> {
    if UNARY.iter().any(|(n, _)| *n == name) {
        return Some(X);
    }
    if BINARY.iter().any(|(n, _)| *n == name) {
        return Some(XY);
    }
    if REDUCTIONS.iter().any(|(n, _)| *n == name) {
        return Some(REDUCE);
    }
    OTHERS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// Every function name of the language (for suggestions and docs).
pub fn function_names() -> impl Iterator<Item = &'static str> {
    UNARY
        .iter()
        .map(|(n, _)| *n)
        .chain(BINARY.iter().map(|(n, _)| *n))
        .chain(REDUCTIONS.iter().map(|(n, _)| *n))
        .chain(OTHERS.iter().map(|(n, _)| *n))
}

/// The arguments of one call, bound to the parameters of its signature.
pub struct Args<'e> {
    pub func: String,
    pub(crate) params: &'static [Param],
    pub(crate) values: Vec<Option<&'e Expr>>,
}

impl<'e> Args<'e> {
    pub fn get(&self, name: &str) -> Option<&'e Expr> {
        let i = self.params.iter().position(|p| p.0 == name)?;
        self.values[i]
    }
    pub fn req(&self, name: &str) -> &'e Expr {
        self.get(name)
            .expect("required parameters are checked when binding")
    }
}

pub(crate) fn usage(func: &str, params: &[Param]) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|(n, _, req)| {
            if *req {
                n.to_string()
            } else {
                format!("{n} = ..")
            }
        })
        .collect();
    format!("{func}({})", parts.join(", "))
}
