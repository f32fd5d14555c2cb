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
}
