//! Parameter lists and axis lists: the declared part of a definition.

use crate::axes::{Axis, AxisSet};
use crate::diag::Diagnostic;
use crate::span::Span;
use crate::syntax::ast::{AxisList, Item, ItemKind};

#[derive(Clone, Debug)]
pub struct ParamSig {
    pub name: String,
    /// `None` when the declared type had an error (already reported).
    pub ty: Option<AxisSet>,
    pub shared: bool,
    pub default: Option<f32>,
    pub span: Span,
}

/// The declared parameters of a definition.
#[derive(Clone, Debug, Default)]
pub struct Signature {
    pub params: Vec<ParamSig>,
    /// Span of the whole parameter list, for "declared here" labels.
    pub span: Option<Span>,
}

impl Signature {
    pub fn required(&self) -> usize {
        self.params.iter().take_while(|p| p.default.is_none()).count()
    }
}

pub fn check(item: &Item, diagnostics: &mut Vec<Diagnostic>) -> Signature {
    let mut params: Vec<ParamSig> = Vec::new();
    let mut first_default: Option<Span> = None;
    for param in &item.params {
        if let Some(earlier) = params.iter().find(|p| p.name == param.name.name) {
            diagnostics.push(
                Diagnostic::error(
                    param.name.span,
                    format!("parameter `{}` is declared twice", param.name.name),
                )
                .label("second declaration")
                .with(earlier.span, "first declared here"),
            );
        }
        let ty = axis_set(&param.axes, diagnostics);
        if let (Some(span), ItemKind::Fn) = (param.shared, item.kind) {
            diagnostics.push(
                Diagnostic::error(span, "only a `cam`'s parameters can be `shared`")
                    .label("in a `fn`")
                    .help(format!(
                        "`shared` says how a cache tensor is bound; a `fn` receives values from its caller: declare `{}: {}`",
                        param.name.name,
                        ty.map_or_else(|| "[...]".to_string(), |t| t.to_string())
                    )),
            );
        }
        let mut default = None;
        if let Some((value, span)) = param.default {
            match ty {
                Some(t) if !t.is_scalar() => diagnostics.push(
                    Diagnostic::error(span, "only scalar parameters can have a default")
                        .label(format!("`{}` has type {t}", param.name.name))
                        .help(format!(
                            "declare it as `{}: []` or drop the default",
                            param.name.name
                        )),
                ),
                _ => default = Some(value as f32),
            }
            first_default.get_or_insert(param.name.span);
        } else if let Some(defaulted) = first_default {
            diagnostics.push(
                Diagnostic::error(
                    param.name.span,
                    format!("parameter `{}` needs a default", param.name.name),
                )
                .label("it follows a parameter with a default")
                .with(defaulted, "first parameter with a default")
                .help("parameters with defaults must come last, so that calls can leave them out"),
            );
        }
        params.push(ParamSig {
            name: param.name.name.clone(),
            ty,
            shared: param.shared.is_some(),
            default,
            span: param.name.span.to(param.axes.span),
        });
    }
    let span = match (item.params.first(), item.params.last()) {
        (Some(first), Some(last)) => Some(first.name.span.to(last.axes.span)),
        _ => Some(item.name.span),
    };
    Signature { params, span }
}

/// The set of axes a list names; reports unknown and repeated axes.
pub fn axis_set(list: &AxisList, diagnostics: &mut Vec<Diagnostic>) -> Option<AxisSet> {
    let mut set = AxisSet::SCALAR;
    let mut ok = true;
    for name in &list.names {
        match Axis::from_name(&name.name) {
            Some(axis) if set.contains(axis) => {
                diagnostics.push(
                    Diagnostic::error(name.span, format!("axis `{axis}` is listed twice"))
                        .label("repeated here"),
                );
                ok = false;
            }
            Some(axis) => set = set.with(axis),
            None => {
                diagnostics.push(
                    Diagnostic::error(name.span, format!("unknown axis `{}`", name.name))
                        .label("not an axis")
                        .help("the axes are c (classes), k (channels), d (depth), h and w (space)"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(set)
}
