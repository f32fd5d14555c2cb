//! Einsum equations (`"ij,jk->ik"`, `"...ij,...jk->...ik"`, `"ii"`): the parser shared by the
//! `Einsum` shape function, its kernel in tfr-core and its gradient rule.
//!
//! Labels are ASCII letters; `...` stands for broadcast dims (at most one per subscript). As
//! TensorFlow's op, one or two operands. Without `->` the output follows numpy's implicit mode:
//! `...` (when an operand has it) followed by the labels appearing exactly once, sorted.
//! Output labels may repeat (the result is zero off that diagonal, as the kernel TensorFlow's
//! gradients use), but each must appear in an operand.

use std::fmt;

/// One subscript position: a letter or the ellipsis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Char(char),
    Ellipsis,
}

/// A subscript: its labels in order.
pub type Subs = Vec<Label>;

/// A parsed equation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equation {
    pub inputs: Vec<Subs>,
    pub output: Subs,
}

/// `subs` written back (`...ij`).
pub fn subs_string(subs: &[Label]) -> String {
    subs.iter()
        .map(|l| match l {
            Label::Char(c) => c.to_string(),
            Label::Ellipsis => "...".to_string(),
        })
        .collect()
}

impl fmt::Display for Equation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ins: Vec<String> = self.inputs.iter().map(|s| subs_string(s)).collect();
        write!(f, "{}->{}", ins.join(","), subs_string(&self.output))
    }
}

fn parse_subs(s: &str, what: &str) -> Result<Subs, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() {
            out.push(Label::Char(c));
            i += 1;
        } else if c == '.' {
            if chars.get(i..i + 3) != Some(&['.', '.', '.'][..]) {
                return Err(format!(
                    "{what} `{s}`: a '.' must be part of an ellipsis '...'"
                ));
            }
            if out.contains(&Label::Ellipsis) {
                return Err(format!("{what} `{s}` has more than one ellipsis"));
            }
            out.push(Label::Ellipsis);
            i += 3;
        } else {
            return Err(format!(
                "{what} `{s}` has the invalid character '{c}': expected letters and '...'"
            ));
        }
    }
    Ok(out)
}

/// Parses `equation` for `num_inputs` operands.
pub fn parse(equation: &str, num_inputs: usize) -> Result<Equation, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let parts: Vec<&str> = eq.split("->").collect();
    if parts.len() > 2 {
        return Err(format!(
            "equation `{equation}` has more than one '->': expected `inputs->output`"
        ));
    }
    let inputs = parts[0]
        .split(',')
        .enumerate()
        .map(|(i, s)| parse_subs(s, &format!("subscript of input {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=2).contains(&inputs.len()) {
        return Err(format!(
            "equation `{equation}` has {} input subscripts: expected 1 or 2",
            inputs.len()
        ));
    }
    if inputs.len() != num_inputs {
        return Err(format!(
            "equation `{equation}` has {} input subscripts but the op has {num_inputs} inputs",
            inputs.len()
        ));
    }
    let output = match parts.get(1) {
        Some(o) => {
            let out = parse_subs(o, "output subscript")?;
            for l in &out {
                if let Label::Char(c) = l {
                    if !inputs.iter().any(|s| s.contains(l)) {
                        return Err(format!(
                            "equation `{equation}`: output label '{c}' appears in no input"
                        ));
                    }
                }
            }
            out
        }
        None => {
            let mut out = Vec::new();
            if inputs.iter().any(|s| s.contains(&Label::Ellipsis)) {
                out.push(Label::Ellipsis);
            }
            let mut once: Vec<char> = Vec::new();
            for s in &inputs {
                for l in s {
                    if let Label::Char(c) = *l {
                        let n: usize = inputs
                            .iter()
                            .map(|t| t.iter().filter(|&&m| m == *l).count())
                            .sum();
                        if n == 1 {
                            once.push(c);
                        }
                    }
                }
            }
            once.sort_unstable();
            out.extend(once.into_iter().map(Label::Char));
            out
        }
    };
    Ok(Equation { inputs, output })
}

/// How many dims the ellipsis of a subscript covers for an operand of rank `rank` (0 when it
/// has none); an error when the rank does not fit the subscript.
pub fn ellipsis_rank(subs: &[Label], rank: usize, what: &str) -> Result<usize, String> {
    let named = subs.iter().filter(|l| **l != Label::Ellipsis).count();
    if subs.contains(&Label::Ellipsis) {
        rank.checked_sub(named).ok_or_else(|| {
            format!(
                "{what} has rank {rank} but its subscript `{}` names {named} dims",
                subs_string(subs)
            )
        })
    } else if rank != named {
        Err(format!(
            "{what} has rank {rank} but its subscript `{}` has {named} labels",
            subs_string(subs)
        ))
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_explicit_and_implicit() {
        let e = parse("ij,jk->ik", 2).unwrap();
        assert_eq!(e.to_string(), "ij,jk->ik");
        assert_eq!(parse("ii", 1).unwrap().to_string(), "ii->");
        assert_eq!(parse("ij,jk", 2).unwrap().to_string(), "ij,jk->ik");
        assert_eq!(
            parse("...ij,...jk", 2).unwrap().to_string(),
            "...ij,...jk->...ik"
        );
        assert_eq!(
            parse(" b i j -> b j i ", 1).unwrap().to_string(),
            "bij->bji"
        );
        assert!(parse("ij->k", 1).is_err());
        assert!(parse("i.j->i", 1).is_err());
        assert!(parse("......i->i", 1).is_err());
        assert!(parse("i,j,k->ijk", 3).is_err());
        assert!(parse("ij,jk->ik", 1).is_err());
        assert!(parse("i1->i", 1).is_err());
        assert!(parse("i->i->i", 1).is_err());
    }
}
