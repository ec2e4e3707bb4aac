//! Checks one definition's body: a single forward pass over its expression arena (operands come
//! before their users), so no input can make it recurse.

use super::builtins::{self, Axes, Builtin};
use super::signature::{axis_set, Signature};
use super::suggest::did_you_mean;
use super::Definitions;
use crate::axes::{Axis, AxisSet};
use crate::diag::Diagnostic;
use crate::ops::{BinaryOp, UnaryOp};
use crate::span::Span;
use crate::syntax::ast::{self, AxisList, ExprId, Ident, Item, ItemKind};
use crate::typed::{self, ExprKind};

/// The typed function for definition `index`, or `None` after reporting its errors.
pub fn check(index: usize, defs: &Definitions, diagnostics: &mut Vec<Diagnostic>) -> Option<typed::Function> {
    let item = defs.items[index];
    let signature = &defs.signatures[index];
    let mut body = Body {
        item,
        signature,
        defs,
        diagnostics,
        types: Vec::with_capacity(item.exprs.len()),
        typed: Vec::with_capacity(item.exprs.len()),
        lets: Vec::new(),
        let_uses: vec![0; item.lets.len()],
        ok: signature.params.iter().all(|p| p.ty.is_some()),
    };
    let mut bound = 0;
    for (i, expr) in item.exprs.iter().enumerate() {
        while bound < item.lets.len() && item.lets[bound].value.index() < i {
            body.bind(bound);
            bound += 1;
        }
        let ty = body.expr(expr);
        body.types.push(ty);
    }
    while bound < item.lets.len() {
        body.bind(bound);
        bound += 1;
    }
    if body.ok {
        // After an error, a binding may look unused only because its use failed to check.
        body.warn_unused();
    }
    let result_ty = body.types[item.result.index()];
    let result_ty = match (item.kind, result_ty) {
        (ItemKind::Cam, Some(ty)) => body.check_cam_result(ty),
        (_, ty) => ty,
    };
    let ty = result_ty?;
    if !body.ok {
        return None;
    }
    let params = signature
        .params
        .iter()
        .map(|p| typed::Param {
            name: p.name.clone(),
            ty: p.ty.expect("checked: every parameter type is known"),
            shared: p.shared,
            default: p.default,
            span: p.span,
        })
        .collect();
    let lets = item
        .lets
        .iter()
        .map(|l| typed::Let {
            name: l.name.name.clone(),
            value: l.value,
        })
        .collect();
    Some(typed::Function {
        name: item.name.name.clone(),
        kind: item.kind,
        params,
        lets,
        exprs: body.typed,
        result: item.result,
        ty,
        span: item.span,
    })
}

struct Body<'a, 'd> {
    item: &'a Item,
    signature: &'a Signature,
    defs: &'a Definitions<'d>,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// The type of each expression so far; `None` where an error was reported.
    types: Vec<Option<AxisSet>>,
    typed: Vec<typed::Expr>,
    /// The `let` bindings in scope: (index in `item.lets`, type).
    lets: Vec<(usize, Option<AxisSet>)>,
    let_uses: Vec<u32>,
    ok: bool,
}

impl Body<'_, '_> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.ok = false;
        self.diagnostics.push(diagnostic);
    }

    fn ty(&self, id: ExprId) -> Option<AxisSet> {
        self.types[id.index()]
    }

    /// Brings `let` binding `index` into scope, once its value has been checked.
    fn bind(&mut self, index: usize) {
        let binding = &self.item.lets[index];
        let name = binding.name.name.as_str();
        let earlier_let = self
            .lets
            .iter()
            .find(|(l, _)| self.item.lets[*l].name.name == name);
        let earlier = earlier_let
            .map(|(l, _)| self.item.lets[*l].name.span)
            .or_else(|| {
                self.signature
                    .params
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.span)
            });
        if let Some(earlier) = earlier {
            self.error(
                Diagnostic::error(binding.name.span, format!("`{name}` is already defined"))
                    .label("bindings are immutable and cannot shadow")
                    .with(earlier, "first defined here")
                    .help("choose a new name"),
            );
        }
        let ty = self.ty(binding.value);
        self.lets.push((index, ty));
    }

    fn warn_unused(&mut self) {
        for (index, binding) in self.item.lets.iter().enumerate() {
            if self.let_uses[index] == 0 {
                self.diagnostics.push(
                    Diagnostic::warning(
                        binding.name.span,
                        format!("`{}` is never used", binding.name.name),
                    )
                    .label("unused binding"),
                );
            }
        }
    }

    /// Checks one expression whose operands have been checked; records its typed form.
    fn expr(&mut self, expr: &ast::Expr) -> Option<AxisSet> {
        let span = expr.span;
        let checked = match &expr.kind {
            ast::ExprKind::Number(value) => Some((ExprKind::Const(*value as f32), AxisSet::SCALAR)),
            ast::ExprKind::Name(name) => self.name(name, span),
            ast::ExprKind::Neg(x) => self.ty(*x).map(|t| (ExprKind::Unary(UnaryOp::Neg, *x), t)),
            ast::ExprKind::Binary(op, a, b) => {
                let ty = self.ty(*a).zip(self.ty(*b)).map(|(a, b)| a.union(b));
                ty.map(|t| (binary(*op, *a, *b), t))
            }
            ast::ExprKind::Call { callee, axes, args } => self.call(callee, axes.as_ref(), args, span),
        };
        match checked {
            Some((kind, ty)) => {
                self.typed.push(typed::Expr { kind, ty, span });
                Some(ty)
            }
            None => {
                // Keep indices aligned with the syntax tree; the function is not emitted anyway.
                self.ok = false;
                self.typed.push(typed::Expr {
                    kind: ExprKind::Const(0.0),
                    ty: AxisSet::SCALAR,
                    span,
                });
                None
            }
        }
    }

    fn name(&mut self, name: &str, span: Span) -> Option<(ExprKind, AxisSet)> {
        if let Some(pos) = self
            .lets
            .iter()
            .rposition(|(l, _)| self.item.lets[*l].name.name == name)
        {
            let (index, ty) = self.lets[pos];
            self.let_uses[index] += 1;
            return ty.map(|t| (ExprKind::Let(index as u32), t));
        }
        if let Some(pos) = self.signature.params.iter().position(|p| p.name == name) {
            return self.signature.params[pos]
                .ty
                .map(|t| (ExprKind::Param(pos as u32), t));
        }
        let is_function =
            builtins::NAMES.contains(&name) || self.defs.lookup(name, self.item.span.source).is_some();
        let diagnostic = if crate::axes::Axis::from_name(name).is_some() {
            Diagnostic::error(span, format!("`{name}` is an axis, not a value"))
                .label("used as a value")
                .help(format!(
                    "axes appear in types and reductions, e.g. `sum[{name}](x)`"
                ))
        } else if is_function {
            Diagnostic::error(span, format!("`{name}` is a function, not a value"))
                .label("used as a value")
                .help(format!("call it: `{name}(...)`"))
        } else {
            let in_scope = self.names_in_scope();
            let mut d = Diagnostic::error(span, format!("unknown name `{name}`"))
                .label("not a parameter or `let` binding in scope");
            if let Some(library) = super::suggest::python_library(name) {
                d = d.help(library);
            } else if self.item.lets.iter().any(|l| l.name.name == name) {
                d = d.help(format!(
                    "`{name}` is bound later; a binding is visible only after its `let`"
                ));
            } else if let Some(hint) = did_you_mean(name, in_scope.iter().map(String::as_str)) {
                d = d.help(hint);
            }
            d
        };
        self.error(diagnostic);
        None
    }

    fn names_in_scope(&self) -> Vec<String> {
        let params = self.signature.params.iter().map(|p| p.name.clone());
        let lets = self
            .lets
            .iter()
            .map(|(l, _)| self.item.lets[*l].name.name.clone());
        params.chain(lets).collect()
    }

    fn call(
        &mut self,
        callee: &Ident,
        axes: Option<&AxisList>,
        args: &[ExprId],
        span: Span,
    ) -> Option<(ExprKind, AxisSet)> {
        let name = callee.name.as_str();
        if let Some(builtin) = builtins::lookup(name, axes.is_some()) {
            return self.builtin(builtin, callee, axes, args, span);
        }
        if let Some(def) = self.defs.lookup(name, self.item.span.source) {
            return self.user_call(def, callee, axes, args, span);
        }
        let is_value = self.signature.params.iter().any(|p| p.name == name)
            || self
                .lets
                .iter()
                .any(|(l, _)| self.item.lets[*l].name.name == name);
        let mut error = Diagnostic::error(callee.span, format!("unknown function `{name}`"));
        if is_value {
            error = Diagnostic::error(callee.span, format!("`{name}` is a value, not a function"))
                .label("called here")
                .help("only built-ins, `fn`s and `cam`s can be called; for a product write `x * (...)`");
        } else {
            error = error.label("not a built-in, `fn` or `cam`");
            let defined = self.defs.names();
            if let Some(hint) = did_you_mean(name, builtins::NAMES.iter().copied().chain(defined)) {
                error = error.help(hint);
            }
        }
        self.error(error);
        None
    }

    /// Reports a wrong number of arguments; true if the count is right.
    fn arity(
        &mut self,
        name: &str,
        expected: std::ops::RangeInclusive<usize>,
        args: &[ExprId],
        span: Span,
        signature: &str,
    ) -> bool {
        if expected.contains(&args.len()) {
            return true;
        }
        let (lo, hi) = (*expected.start(), *expected.end());
        let wanted = if lo == hi {
            format!("{lo} argument{}", if lo == 1 { "" } else { "s" })
        } else {
            format!("{lo} to {hi} arguments")
        };
        self.error(
            Diagnostic::error(span, format!("`{name}` takes {wanted}, found {}", args.len()))
                .label(format!(
                    "{} argument{} given",
                    args.len(),
                    if args.len() == 1 { "" } else { "s" }
                ))
                .help(match (name, args.len()) {
                    ("max" | "min", 1) => format!(
                        "`{name}(a, b)` is the elementwise {name}imum of two values; over axes it is `{name}[h,w](x)`"
                    ),
                    _ => format!("it is called as `{signature}`"),
                }),
        );
        false
    }

    fn builtin(
        &mut self,
        builtin: Builtin,
        callee: &Ident,
        axes: Option<&AxisList>,
        args: &[ExprId],
        span: Span,
    ) -> Option<(ExprKind, AxisSet)> {
        let name = callee.name.as_str();
        let signature = builtin.signature(name);
        match (builtin.axes(), axes) {
            (Axes::None, Some(list)) => {
                self.error(
                    Diagnostic::error(list.span, format!("`{name}` takes no axes"))
                        .label("unexpected axis list")
                        .help(format!("it is called as `{signature}`")),
                );
                return None;
            }
            (Axes::Required, None) => {
                let example = if builtin == Builtin::Pc1 {
                    "pc1[k](x)".to_string()
                } else {
                    format!("{name}[h,w](x)")
                };
                self.error(
                    Diagnostic::error(callee.span, format!("`{name}` needs the axes it works over"))
                        .label("no axis list")
                        .help(format!("write them in brackets, e.g. `{example}`")),
                );
                return None;
            }
            _ => {}
        }
        let arity = builtin.arity();
        if !self.arity(name, arity..=arity, args, span, &signature) {
            return None;
        }
        let arg_types: Vec<AxisSet> = args.iter().map(|&a| self.ty(a)).collect::<Option<_>>()?;
        let all = arg_types.iter().fold(AxisSet::SCALAR, |acc, t| acc.union(*t));
        let kind = match builtin {
            Builtin::Unary(op) => ExprKind::Unary(op, args[0]),
            Builtin::Binary(op) => ExprKind::Binary(op, args[0], args[1]),
            Builtin::Clamp => ExprKind::Clamp(args[0], args[1], args[2]),
            Builtin::Where => ExprKind::Select(args[0], args[1], args[2]),
            Builtin::Reduce(_) | Builtin::Softmax | Builtin::Normalize | Builtin::Pc1 => {
                let list = axes.expect("checked: axes are present");
                return self.over_axes(builtin, name, list, args[0], arg_types[0]);
            }
            Builtin::Pick | Builtin::Size | Builtin::Index => {
                let list = axes.expect("checked: axes are present");
                return self.indexing(builtin, name, list, args, &arg_types);
            }
        };
        Some((kind, all))
    }

    /// `size[axes]()`, `index[axis]()` and `pick[axis](x, index)`.
    fn indexing(
        &mut self,
        builtin: Builtin,
        name: &str,
        list: &AxisList,
        args: &[ExprId],
        arg_types: &[AxisSet],
    ) -> Option<(ExprKind, AxisSet)> {
        let Some(set) = axis_set(list, self.diagnostics) else {
            self.ok = false;
            return None;
        };
        if builtin == Builtin::Size && !set.is_empty() {
            return Some((ExprKind::Size(set), AxisSet::SCALAR));
        }
        let axis = match (set.iter().next(), set.len()) {
            (Some(axis), 1) => axis,
            _ => {
                let (problem, example) = match builtin {
                    Builtin::Size => ("`size` over no axes".to_string(), "`size[h,w]()`"),
                    Builtin::Index => ("`index` is along exactly one axis".to_string(), "`index[h]()`"),
                    _ => (
                        format!("`{name}` works along exactly one axis"),
                        "`pick[c](logits, target)`",
                    ),
                };
                self.error(
                    Diagnostic::error(list.span, problem)
                        .label(format!("asks for {set}"))
                        .help(format!("e.g. {example}")),
                );
                return None;
            }
        };
        if builtin == Builtin::Index {
            return Some((ExprKind::Index(axis), set));
        }
        let (x, x_ty) = (args[0], arg_types[0]);
        if !x_ty.contains(axis) {
            self.error(
                Diagnostic::error(
                    list.span,
                    format!("cannot apply `{name}` along `{axis}`: the argument has no such axis"),
                )
                .label(format!("asks for [{axis}]"))
                .with(self.typed[x.index()].span, format!("this has axes {x_ty}")),
            );
            return None;
        }
        let (index, index_ty) = (args[1], arg_types[1]);
        if index_ty.contains(axis) {
            self.error(
                Diagnostic::error(
                    self.typed[index.index()].span,
                    format!("the index of `pick[{axis}]` cannot itself vary along `{axis}`"),
                )
                .label(format!("this has axes {index_ty}"))
                .help("the index is one position per image, e.g. the cache's `target: []`"),
            );
            return None;
        }
        Some((ExprKind::Pick(axis, x, index), x_ty.minus(set).union(index_ty)))
    }

    /// A built-in that works over axes of its one argument.
    fn over_axes(
        &mut self,
        builtin: Builtin,
        name: &str,
        list: &AxisList,
        arg: ExprId,
        arg_ty: AxisSet,
    ) -> Option<(ExprKind, AxisSet)> {
        let set = match axis_set(list, self.diagnostics) {
            Some(set) => set,
            None => {
                self.ok = false;
                return None;
            }
        };
        if set.is_empty() {
            self.error(
                Diagnostic::error(list.span, format!("`{name}` over no axes"))
                    .label("empty axis list")
                    .help(format!("name the axes, e.g. `{name}[h,w](x)`")),
            );
            return None;
        }
        let missing = set.minus(arg_ty);
        if !missing.is_empty() {
            let arg_span = self.typed[arg.index()].span;
            let which = missing
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.error(
                Diagnostic::error(
                    list.span,
                    format!(
                        "cannot {} over {which}: the argument has no such axis",
                        verb(builtin, name)
                    ),
                )
                .label(format!("asks for {set}"))
                .with(arg_span, format!("this has axes {arg_ty}")),
            );
            return None;
        }
        let kind = match builtin {
            Builtin::Reduce(op) => ExprKind::Reduce(op, set, arg),
            Builtin::Softmax => ExprKind::Softmax(set, arg),
            Builtin::Normalize => ExprKind::Normalize(set, arg),
            _ => {
                let axis = set.iter().next().expect("checked: non-empty");
                if set.len() != 1 || arg_ty.len() < 2 {
                    let problem = if set.len() != 1 {
                        "`pc1` works over exactly one axis (the features)"
                    } else {
                        "`pc1` needs an argument with positions to project, besides the feature axis"
                    };
                    self.error(
                        Diagnostic::error(list.span, problem)
                            .label(format!("over {set} of an argument with axes {arg_ty}"))
                            .help("Eigen-CAM is `pc1[k](A)` with `A: [k,h,w]`"),
                    );
                    return None;
                }
                return Some((ExprKind::Pc1(axis, arg), arg_ty.minus(set)));
            }
        };
        let ty = match builtin {
            Builtin::Reduce(_) => arg_ty.minus(set),
            _ => arg_ty,
        };
        Some((kind, ty))
    }

    fn user_call(
        &mut self,
        def: usize,
        callee: &Ident,
        axes: Option<&AxisList>,
        args: &[ExprId],
        span: Span,
    ) -> Option<(ExprKind, AxisSet)> {
        let name = callee.name.as_str();
        let target = self.defs.items[def];
        let signature = &self.defs.signatures[def];
        let declared_at = signature.span.unwrap_or(target.name.span);
        if let Some(list) = axes {
            self.error(
                Diagnostic::error(list.span, format!("`{name}` takes no axes"))
                    .label("unexpected axis list")
                    .with(target.name.span, "it is a definition, not a reduction"),
            );
            return None;
        }
        let shape = format!(
            "{name}({})",
            signature
                .params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.arity(
            name,
            signature.required()..=signature.params.len(),
            args,
            span,
            &shape,
        ) {
            if let Some(d) = self.diagnostics.last_mut() {
                d.secondary.push((declared_at, "parameters declared here".into()));
            }
            return None;
        }
        let mut ok = true;
        for (position, (&arg, param)) in args.iter().zip(&signature.params).enumerate() {
            let (Some(found), Some(expected)) = (self.ty(arg), param.ty) else {
                ok = false;
                continue;
            };
            if found != expected {
                let arg_span = self.typed[arg.index()].span;
                let mut error = Diagnostic::error(
                    arg_span,
                    format!(
                        "argument {} of `{name}` must be {expected}, found {found}",
                        position + 1
                    ),
                )
                .label(format!("this has axes {found}"))
                .with(param.span, format!("`{}` is declared {expected}", param.name));
                let extra = found.minus(expected);
                if !extra.is_empty() && expected.is_subset_of(found) {
                    let axes = extra.iter().map(Axis::name).collect::<Vec<_>>().join(",");
                    error = error.help(format!(
                        "reduce the extra axes, e.g. `sum[{axes}](...)` or `mean[{axes}](...)`"
                    ));
                }
                self.error(error);
                ok = false;
            }
        }
        let (id, ty) = self.defs.checked[def]?;
        ok.then_some((ExprKind::Call(id, args.to_vec()), ty))
    }

    /// A `cam` must produce exactly the spatial axes of its inputs.
    fn check_cam_result(&mut self, ty: AxisSet) -> Option<AxisSet> {
        let three_d = self
            .signature
            .params
            .iter()
            .any(|p| p.ty.is_some_and(|t| t.contains(Axis::D)));
        let expected = if three_d {
            AxisSet::of(&[Axis::D, Axis::H, Axis::W])
        } else {
            AxisSet::of(&[Axis::H, Axis::W])
        };
        if ty == expected {
            return Some(ty);
        }
        let result = self.item.result;
        let span = self.typed[result.index()].span;
        let extra = ty.minus(expected);
        let missing = expected.minus(ty);
        let names = |set: AxisSet| set.iter().map(Axis::name).collect::<Vec<_>>().join(",");
        let help = if extra.contains(Axis::C) {
            "one class per map: pick the target's with `pick[c](x, target)`?".to_string()
        } else if missing.is_empty() {
            format!("reduce {} with sum[{}](...)?", names(extra), names(extra))
        } else {
            format!(
                "the result does not vary over {}: was it reduced away?",
                names(missing)
            )
        };
        self.error(
            Diagnostic::error(span, format!("result has axes {ty}; a CAM must be {expected}"))
                .label(format!("this is {ty}"))
                .with(self.item.name.span, "in this `cam`")
                .help(help),
        );
        None
    }
}

fn verb(builtin: Builtin, name: &str) -> String {
    match builtin {
        Builtin::Reduce(_) => format!("reduce with `{name}`"),
        _ => format!("apply `{name}`"),
    }
}

fn binary(op: ast::BinaryOp, a: ExprId, b: ExprId) -> ExprKind {
    let op = match op {
        ast::BinaryOp::Or => BinaryOp::Or,
        ast::BinaryOp::And => BinaryOp::And,
        ast::BinaryOp::Eq => BinaryOp::Eq,
        ast::BinaryOp::Ne => BinaryOp::Ne,
        ast::BinaryOp::Lt => BinaryOp::Lt,
        ast::BinaryOp::Le => BinaryOp::Le,
        ast::BinaryOp::Gt => BinaryOp::Gt,
        ast::BinaryOp::Ge => BinaryOp::Ge,
        ast::BinaryOp::Add => BinaryOp::Add,
        ast::BinaryOp::Sub => BinaryOp::Sub,
        ast::BinaryOp::Mul => BinaryOp::Mul,
        ast::BinaryOp::Div => BinaryOp::Div,
        ast::BinaryOp::Pow => BinaryOp::Pow,
    };
    ExprKind::Binary(op, a, b)
}
