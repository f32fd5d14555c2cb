//! Static shapes: dimensions that may be known, symbolic (named, like a batch `B`) or unknown.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The highest rank a shape may have (TensorFlow's limit). Ranks read from inputs (the length
/// of a shape tensor) are checked against it before anything is allocated for them.
pub const MAX_RANK: usize = 254;

/// The largest dim and element count of a tensor (TensorFlow counts elements in int64).
pub const MAX_ELEMENTS: usize = i64::MAX as usize;

/// One dimension of a static shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dim {
    Known(usize),
    /// A named dimension: equal wherever the same name appears, value fixed when a step runs.
    Sym(String),
    Unknown,
}

impl Dim {
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// The most precise dim compatible with both, or `None` when they conflict.
    pub fn merge(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Unknown, d) | (d, Dim::Unknown) => Some(d.clone()),
            (Dim::Known(a), Dim::Known(b)) => (a == b).then_some(Dim::Known(*a)),
            (Dim::Sym(a), Dim::Sym(b)) if a == b => Some(Dim::Sym(a.clone())),
            (Dim::Sym(_), Dim::Sym(_)) => Some(Dim::Unknown),
            (Dim::Sym(_), Dim::Known(n)) | (Dim::Known(n), Dim::Sym(_)) => Some(Dim::Known(*n)),
        }
    }

    /// Numpy broadcasting of two dims, or `None` when two known dims disagree and neither is 1.
    pub fn broadcast(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => Some(d.clone()),
            (Dim::Known(a), Dim::Known(b)) => (a == b).then_some(Dim::Known(*a)),
            (Dim::Known(n), _) | (_, Dim::Known(n)) => Some(Dim::Known(*n)),
            (Dim::Sym(a), Dim::Sym(b)) if a == b => Some(Dim::Sym(a.clone())),
            _ => Some(Dim::Unknown),
        }
    }

    /// Product of two dims (for reshape and flatten inference).
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_mul(*b).map_or(Dim::Unknown, Dim::Known),
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
            _ => Dim::Unknown,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl From<&str> for Dim {
    fn from(s: &str) -> Dim {
        Dim::Sym(s.to_string())
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A static shape: `None` dims means even the rank is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(Option<Vec<Dim>>);

impl Shape {
    pub fn unknown() -> Shape {
        Shape(None)
    }
    pub fn scalar() -> Shape {
        Shape(Some(Vec::new()))
    }
    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape(Some(dims))
    }
    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(Some(dims.iter().map(|&d| Dim::Known(d)).collect()))
    }
    /// A shape of known rank whose dims are all unknown.
    pub fn unknown_dims(rank: usize) -> Shape {
        Shape(Some(vec![Dim::Unknown; rank]))
    }
    pub fn rank(&self) -> Option<usize> {
        self.0.as_ref().map(Vec::len)
    }
    pub fn dims(&self) -> Option<&[Dim]> {
        self.0.as_deref()
    }
    pub fn dim(&self, i: usize) -> Dim {
        self.0
            .as_ref()
            .and_then(|d| d.get(i).cloned())
            .unwrap_or(Dim::Unknown)
    }
    /// All dims as numbers when every one is known.
    pub fn to_known(&self) -> Option<Vec<usize>> {
        self.0.as_ref()?.iter().map(Dim::known).collect()
    }
    pub fn is_fully_known(&self) -> bool {
        self.to_known().is_some()
    }
    /// The element count when every dim is known (`None` too when it overflows).
    pub fn num_elements(&self) -> Option<usize> {
        self.to_known()?
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Checks the rank against [`MAX_RANK`] and the known dims and their product against
    /// [`MAX_ELEMENTS`], so no later size computation overflows or allocates absurdly.
    pub fn check_bounds(&self) -> Result<(), String> {
        let Some(dims) = self.dims() else {
            return Ok(());
        };
        if dims.len() > MAX_RANK {
            return Err(format!(
                "rank {} exceeds the maximum rank {MAX_RANK}",
                dims.len()
            ));
        }
        let mut count = 1usize;
        for d in dims.iter().filter_map(Dim::known) {
            count = count
                .checked_mul(d)
                .filter(|&c| c <= MAX_ELEMENTS && d <= MAX_ELEMENTS)
                .ok_or_else(|| {
                    format!("shape {self} has more than {MAX_ELEMENTS} elements (int64's range)")
                })?;
        }
        Ok(())
    }

    /// The most precise shape compatible with both, or an error message naming the dims.
    pub fn merge(&self, other: &Shape) -> Result<Shape, String> {
        match (&self.0, &other.0) {
            (None, _) => Ok(other.clone()),
            (_, None) => Ok(self.clone()),
            (Some(a), Some(b)) => {
                if a.len() != b.len() {
                    return Err(format!(
                        "rank {} != rank {} ({self} vs {other})",
                        a.len(),
                        b.len()
                    ));
                }
                a.iter()
                    .zip(b)
                    .enumerate()
                    .map(|(i, (x, y))| {
                        x.merge(y)
                            .ok_or_else(|| format!("dim {i}: {x} != {y} ({self} vs {other})"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Shape::new)
            }
        }
    }

    /// True when a concrete shape could be a value of this static shape.
    pub fn accepts(&self, concrete: &[usize]) -> bool {
        match &self.0 {
            None => true,
            Some(d) => {
                d.len() == concrete.len()
                    && d.iter()
                        .zip(concrete)
                        .all(|(s, c)| s.known().is_none_or(|k| k == *c))
            }
        }
    }

    /// Numpy broadcasting of two static shapes.
    pub fn broadcast(&self, other: &Shape) -> Result<Shape, String> {
        let (Some(a), Some(b)) = (&self.0, &other.0) else {
            return Ok(Shape::unknown());
        };
        let rank = a.len().max(b.len());
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank].clone()
            } else {
                Dim::Known(1)
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank].clone()
            } else {
                Dim::Known(1)
            };
            match da.broadcast(&db) {
                Some(d) => out.push(d),
                None => {
                    return Err(format!(
                        "shapes {self} and {other} do not broadcast: {da} != {db}"
                    ))
                }
            }
        }
        Ok(Shape::new(out))
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Shape {
        Shape::known(d)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Shape {
        Shape::known(&d)
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(d: Vec<Dim>) -> Shape {
        Shape::new(d)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("<unknown>"),
            Some(d) => {
                let parts: Vec<String> = d.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// The number of elements of a static shape as a product: a known factor times symbolic dims
/// (sorted, each as often as it appears), and whether some dim is unknown. Reshape compares
/// counts with it, so a symbolic dim survives a reshape only where that is provable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementCount {
    pub factor: usize,
    pub symbols: Vec<String>,
    pub unknown: bool,
}

impl ElementCount {
    /// The count of `dims`; `None` when the known factor overflows. A known 0 makes the count
    /// 0 whatever the other dims are.
    pub fn of(dims: &[Dim]) -> Option<ElementCount> {
        let mut c = ElementCount {
            factor: 1,
            symbols: Vec::new(),
            unknown: false,
        };
        for d in dims {
            match d {
                Dim::Known(n) => c.factor = c.factor.checked_mul(*n)?,
                Dim::Sym(s) => c.symbols.push(s.clone()),
                Dim::Unknown => c.unknown = true,
            }
        }
        if c.factor == 0 {
            c.symbols.clear();
            c.unknown = false;
        }
        c.symbols.sort();
        Some(c)
    }

    /// `Some(true)` when the counts are equal whatever the symbols' values, `Some(false)` when
    /// they differ for every nonzero value of the symbols, `None` when it depends on them.
    pub fn equals(&self, other: &ElementCount) -> Option<bool> {
        if self.factor == 0 && other.factor == 0 {
            return Some(true);
        }
        if self.unknown || other.unknown {
            return None;
        }
        let (mine, theirs) = cancel_common(&self.symbols, &other.symbols);
        match (mine.is_empty(), theirs.is_empty()) {
            (true, true) => Some(self.factor == other.factor),
            // `factor * symbols == other.factor` needs symbols == other.factor / factor.
            (false, true) if other.factor == 0 || !other.factor.is_multiple_of(self.factor) => {
                Some(false)
            }
            (true, false) if self.factor == 0 || !self.factor.is_multiple_of(other.factor) => {
                Some(false)
            }
            _ => None,
        }
    }

    /// The dim `d` with `self == divisor * d` (a reshape's `-1`): known, a symbol when exactly
    /// one symbol is left with factor 1, else unknown. `None` when no whole `d` exists for any
    /// nonzero value of the symbols.
    pub fn quotient(&self, divisor: &ElementCount) -> Option<Dim> {
        if self.unknown || divisor.unknown || divisor.factor == 0 {
            return Some(Dim::Unknown);
        }
        let (left, extra) = cancel_common(&self.symbols, &divisor.symbols);
        if !extra.is_empty() {
            return Some(Dim::Unknown);
        }
        if !self.factor.is_multiple_of(divisor.factor) {
            return (!left.is_empty()).then_some(Dim::Unknown);
        }
        let q = self.factor / divisor.factor;
        Some(match left.as_slice() {
            [] => Dim::Known(q),
            [s] if q == 1 => Dim::Sym(s.clone()),
            _ => Dim::Unknown,
        })
    }
}

/// The symbols of `a` and of `b` left after removing those they share (as multisets).
fn cancel_common(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut rest_b = b.to_vec();
    let mut rest_a = Vec::new();
    for s in a {
        match rest_b.iter().position(|t| t == s) {
            Some(i) => {
                rest_b.remove(i);
            }
            None => rest_a.push(s.clone()),
        }
    }
    (rest_a, rest_b)
}

impl fmt::Display for ElementCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.factor != 1 || self.symbols.is_empty() && !self.unknown {
            parts.push(self.factor.to_string());
        }
        parts.extend(self.symbols.iter().cloned());
        if self.unknown {
            parts.push("?".into());
        }
        f.write_str(&parts.join("*"))
    }
}

/// Numpy broadcasting of concrete shapes; `None` when they do not broadcast.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_static() {
        let a = Shape::new(vec![Dim::Sym("B".into()), Dim::Known(1)]);
        let b = Shape::known(&[3]);
        assert_eq!(a.broadcast(&b).unwrap().to_string(), "[B, 3]");
        assert!(Shape::known(&[2]).broadcast(&Shape::known(&[3])).is_err());
        assert_eq!(Shape::unknown().broadcast(&b).unwrap(), Shape::unknown());
    }

    #[test]
    fn broadcast_concrete() {
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[0, 1], &[1, 3]), Some(vec![0, 3]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
    }

    #[test]
    fn merge_and_accept() {
        let s = Shape::new(vec![Dim::Unknown, Dim::Known(4)]);
        assert!(s.accepts(&[7, 4]));
        assert!(!s.accepts(&[7, 5]));
        assert!(!s.accepts(&[4]));
        assert!(s.merge(&Shape::known(&[2, 5])).is_err());
        assert_eq!(
            s.merge(&Shape::known(&[2, 4])).unwrap(),
            Shape::known(&[2, 4])
        );
    }

    fn count(dims: &[&str]) -> ElementCount {
        let dims: Vec<Dim> = dims
            .iter()
            .map(|d| match d.parse::<usize>() {
                Ok(n) => Dim::Known(n),
                Err(_) if *d == "?" => Dim::Unknown,
                Err(_) => Dim::Sym(d.to_string()),
            })
            .collect();
        ElementCount::of(&dims).unwrap()
    }

    #[test]
    fn element_counts_compare_symbolically() {
        let image = count(&["B", "28", "28", "1"]);
        assert_eq!(image.to_string(), "784*B");
        assert_eq!(image.equals(&count(&["B", "784"])), Some(true));
        assert_eq!(image.equals(&count(&["B", "392"])), Some(false));
        assert_eq!(image.equals(&count(&["B", "748"])), Some(false));
        // 784 * B == 2352 when B is 3: only a run can tell.
        assert_eq!(image.equals(&count(&["6", "392"])), None);
        assert_eq!(image.equals(&count(&["5", "100"])), Some(false));
        assert_eq!(count(&["B", "T"]).equals(&count(&["T", "B"])), Some(true));
        assert_eq!(count(&["B", "4"]).equals(&count(&["T", "4"])), None);
        assert_eq!(image.equals(&count(&["?", "784"])), None);
        assert_eq!(count(&["0", "B"]).equals(&count(&["T", "0"])), Some(true));
    }

    #[test]
    fn element_count_quotients_keep_symbols() {
        let flat = count(&["B", "784"]);
        assert_eq!(flat.quotient(&count(&["784"])), Some(Dim::Sym("B".into())));
        let image = count(&["B", "28", "28", "1"]);
        // 2 * B rows: not expressible, so unknown (never `B`).
        assert_eq!(image.quotient(&count(&["392"])), Some(Dim::Unknown));
        assert_eq!(image.quotient(&count(&["B"])), Some(Dim::Known(784)));
        assert_eq!(
            count(&["B", "T", "16"]).quotient(&count(&["B", "16"])),
            Some(Dim::Sym("T".into()))
        );
        assert_eq!(count(&["10"]).quotient(&count(&["3"])), None);
        assert_eq!(count(&["B", "10"]).quotient(&count(&["B", "3"])), None);
        assert_eq!(
            count(&["B", "10"]).quotient(&count(&["4"])),
            Some(Dim::Unknown)
        );
        assert_eq!(
            count(&["B", "10"]).quotient(&count(&["T"])),
            Some(Dim::Unknown)
        );
    }
}
