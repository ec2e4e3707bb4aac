//! The search space (docs/search.md): which terminals, constants and operators programs of the form
//! `relu(sum[k](WEIGHTS * A))` may use, read from a TOML file; every field has a default.

use camc_compiler::ops::{BinaryOp, ReduceOp, UnaryOp};
use serde::Deserialize;

/// The space as written in TOML (see `docs/search.md` and `examples/search-space.toml`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpaceFile {
    /// Largest WEIGHTS expression, counted in nodes (leaves, operators, reductions).
    pub max_size: usize,
    /// Cache tensors a program may read; each must be `[n,k,h,w]`, `[n,k]`, `[n,h,w]` (e.g.
    /// Recipro-CAM's `recipro`) or `[n]`.
    pub terminals: Vec<String>,
    pub constants: Vec<f32>,
    /// `relu abs sign exp log sqrt sigmoid tanh neg`.
    pub unary: Vec<String>,
    /// `+ - * / ^ min max`, and `/+`: protected division `a / (b + 1e-7)`.
    pub binary: Vec<String>,
    /// Reductions over `[h,w]` that turn a `[k,h,w]` term into a `[k]` one: `sum mean max min
    /// norm std`.
    pub reductions: Vec<String>,
    /// Images and channels of the probe set used to prune equivalent terms.
    pub probe_images: usize,
    pub probe_channels: usize,
    /// Terminals that depend on the target class besides [`CLASS_TERMINALS`].
    pub class_terminals: Vec<String>,
    /// Keep only candidates that read a class-dependent terminal (`--require-class`).
    pub require_class: bool,
}

/// Cache tensors that depend on the target class: a program reading none of them draws the
/// same map for every class.
pub const CLASS_TERMINALS: [&str; 6] = ["G", "W", "score", "ablation", "H", "recipro"];

impl Default for SpaceFile {
    fn default() -> SpaceFile {
        SpaceFile {
            max_size: 9,
            terminals: vec!["A".into(), "G".into()],
            constants: vec![1.0, 2.0],
            unary: vec!["relu".into(), "abs".into()],
            binary: ["+", "-", "*", "/+"].map(String::from).to_vec(),
            reductions: vec!["sum".into(), "max".into()],
            probe_images: 4,
            probe_channels: 16,
            class_terminals: Vec::new(),
            require_class: false,
        }
    }
}

/// The space with names resolved to operations.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub max_size: usize,
    pub terminals: Vec<String>,
    pub constants: Vec<f32>,
    pub unary: Vec<UnaryOp>,
    pub binary: Vec<BinaryOp>,
    /// Whether `/+` (protected division) is in the space.
    pub safe_div: bool,
    pub reductions: Vec<ReduceOp>,
    pub probe_images: usize,
    pub probe_channels: usize,
    /// Per terminal: whether it depends on the target class.
    pub class_dependent: Vec<bool>,
    pub require_class: bool,
}

fn unary(name: &str) -> Option<UnaryOp> {
    Some(match name {
        "relu" => UnaryOp::Relu,
        "abs" => UnaryOp::Abs,
        "sign" => UnaryOp::Sign,
        "exp" => UnaryOp::Exp,
        "log" => UnaryOp::Log,
        "sqrt" => UnaryOp::Sqrt,
        "sigmoid" => UnaryOp::Sigmoid,
        "tanh" => UnaryOp::Tanh,
        "neg" | "-" => UnaryOp::Neg,
        _ => return None,
    })
}

fn binary(name: &str) -> Option<BinaryOp> {
    Some(match name {
        "+" => BinaryOp::Add,
        "-" => BinaryOp::Sub,
        "*" => BinaryOp::Mul,
        "/" => BinaryOp::Div,
        "^" => BinaryOp::Pow,
        "min" => BinaryOp::Min,
        "max" => BinaryOp::Max,
        _ => return None,
    })
}

fn reduction(name: &str) -> Option<ReduceOp> {
    Some(match name {
        "sum" => ReduceOp::Sum,
        "mean" => ReduceOp::Mean,
        "max" => ReduceOp::Max,
        "min" => ReduceOp::Min,
        "norm" => ReduceOp::Norm,
        "std" => ReduceOp::Std,
        _ => return None,
    })
}

fn resolve<T>(names: &[String], what: &str, f: fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    names
        .iter()
        .map(|n| f(n).ok_or_else(|| format!("unknown {what} `{n}`")))
        .collect()
}

impl SpaceFile {
    pub fn parse(text: &str) -> Result<SpaceFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn resolve(&self) -> Result<Space, String> {
        if self.max_size == 0 || self.max_size > 25 {
            return Err(format!("max_size {} must be between 1 and 25", self.max_size));
        }
        if self.terminals.is_empty() {
            return Err("the space needs at least one terminal".into());
        }
        if self.constants.iter().any(|c| !c.is_finite()) {
            return Err("constants must be finite".into());
        }
        Ok(Space {
            max_size: self.max_size,
            terminals: self.terminals.clone(),
            constants: self.constants.clone(),
            unary: resolve(&self.unary, "unary operator", unary)?,
            binary: resolve(
                &self
                    .binary
                    .iter()
                    .filter(|b| b.as_str() != "/+")
                    .cloned()
                    .collect::<Vec<_>>(),
                "binary operator",
                binary,
            )?,
            safe_div: self.binary.iter().any(|b| b == "/+"),
            reductions: resolve(&self.reductions, "reduction", reduction)?,
            probe_images: self.probe_images.max(1),
            probe_channels: self.probe_channels.max(1),
            class_dependent: self
                .terminals
                .iter()
                .map(|t| CLASS_TERMINALS.contains(&t.as_str()) || self.class_terminals.contains(t))
                .collect(),
            require_class: self.require_class,
        })
    }
}
