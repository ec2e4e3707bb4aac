//! Type checking over named axes (docs/language.md): resolves names, orders definitions callees-first,
//! rejects recursion and duplicates, and checks every body. All errors of a file are reported.

mod body;
pub mod builtins;
mod signature;
pub mod suggest;

use crate::axes::AxisSet;
use crate::diag::Diagnostic;
use crate::span::{SourceId, Span};
use crate::syntax::ast::{ExprKind, File, Item};
use crate::typed::{FuncId, Function, Program};
use signature::Signature;
use std::collections::HashMap;

/// What the body checker knows of the other definitions.
pub(crate) struct Definitions<'a> {
    items: Vec<&'a Item>,
    /// Every definition of a name, in the order added (the user's file first).
    by_name: HashMap<&'a str, Vec<usize>>,
    /// The file being checked; the others (the stdlib) cannot see its definitions.
    user: SourceId,
    signatures: Vec<Signature>,
    /// Filled in callee-first; `None` for definitions that failed to check.
    checked: Vec<Option<(FuncId, AxisSet)>>,
}

impl<'a> Definitions<'a> {
    /// The definition `name` means in file `from`: the file's own, else a library one.
    fn lookup(&self, name: &str, from: SourceId) -> Option<usize> {
        let candidates = self.by_name.get(name)?;
        let source = |d: usize| self.items[d].span.source;
        let own = candidates.iter().find(|&&d| source(d) == from);
        own.or_else(|| candidates.iter().find(|&&d| source(d) != self.user))
            .copied()
    }

    fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_name.keys().copied()
    }
}

/// Checks the items of `files[user]` against every file (the user's definitions shadow the
/// others, e.g. the stdlib). Returns the typed program when there is no error.
pub fn check(files: &[File], user: SourceId) -> (Option<Program>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut defs = Definitions {
        items: Vec::new(),
        by_name: HashMap::new(),
        user,
        signatures: Vec::new(),
        checked: Vec::new(),
    };
    let user_items: Vec<&Item> = files
        .iter()
        .filter(|f| f.source == user)
        .flat_map(|f| &f.items)
        .collect();
    let mut roots = Vec::new();
    for item in &user_items {
        if builtins::NAMES.contains(&item.name.name.as_str()) {
            diagnostics.push(
                Diagnostic::error(
                    item.name.span,
                    format!("`{}` is a built-in function", item.name.name),
                )
                .label("this name is taken")
                .help("choose another name for the definition"),
            );
            continue;
        }
        if let Some(first) = defs
            .lookup(&item.name.name, user)
            .filter(|&d| defs.items[d].span.source == user)
        {
            diagnostics.push(
                Diagnostic::error(item.name.span, format!("`{}` is defined twice", item.name.name))
                    .label("second definition")
                    .with(defs.items[first].name.span, "first defined here"),
            );
            continue;
        }
        roots.push(add(&mut defs, item));
    }
    for file in files.iter().filter(|f| f.source != user) {
        for item in &file.items {
            add(&mut defs, item);
        }
    }
    for &root in &roots {
        defs.signatures[root] = signature::check(defs.items[root], &mut diagnostics);
    }
    let order = callees_first(&mut defs, &roots, &mut diagnostics);
    let mut functions: Vec<Function> = Vec::new();
    for (index, recursive) in order {
        if !roots.contains(&index) {
            // Library definitions are checked when first used; their own tests keep them clean.
            defs.signatures[index] = signature::check(defs.items[index], &mut diagnostics);
        }
        if recursive {
            continue;
        }
        if let Some(function) = body::check(index, &defs, &mut diagnostics) {
            let id = FuncId(functions.len() as u32);
            defs.checked[index] = Some((id, function.ty));
            functions.push(function);
        }
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return (None, diagnostics);
    }
    let exported = roots
        .iter()
        .filter_map(|&r| defs.checked[r].map(|(id, _)| id))
        .collect();
    let program = Program { functions, exported };
    (Some(program), diagnostics)
}

fn add<'a>(defs: &mut Definitions<'a>, item: &'a Item) -> usize {
    let index = defs.items.len();
    defs.items.push(item);
    defs.by_name
        .entry(item.name.name.as_str())
        .or_default()
        .push(index);
    defs.signatures.push(Signature::default());
    defs.checked.push(None);
    index
}

/// The definitions a definition calls, with the span of each call.
fn callees(defs: &Definitions, item: &Item) -> Vec<(usize, Span)> {
    item.exprs
        .iter()
        .filter_map(|e| match &e.kind {
            ExprKind::Call { callee, .. } if !builtins::NAMES.contains(&callee.name.as_str()) => defs
                .lookup(&callee.name, item.span.source)
                .map(|d| (d, callee.span)),
            _ => None,
        })
        .collect()
}

/// Every definition reachable from the roots, callees before callers (an iterative depth-first
/// search), each flagged if it lies on a cycle; each cycle is reported once.
fn callees_first(
    defs: &mut Definitions,
    roots: &[usize],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(usize, bool)> {
    #[derive(Copy, Clone, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; defs.items.len()];
    let mut recursive = vec![false; defs.items.len()];
    let mut order = Vec::new();
    for &root in roots {
        if mark[root] != Mark::New {
            continue;
        }
        // Each frame: the definition and its callees still to visit.
        let mut stack: Vec<(usize, Vec<(usize, Span)>)> = vec![(root, callees(defs, defs.items[root]))];
        mark[root] = Mark::Open;
        while let Some((current, pending)) = stack.last_mut() {
            let current = *current;
            match pending.pop() {
                Some((callee, span)) => match mark[callee] {
                    Mark::New => {
                        mark[callee] = Mark::Open;
                        let next = callees(defs, defs.items[callee]);
                        stack.push((callee, next));
                    }
                    Mark::Open => {
                        let cycle_start = stack.iter().position(|(d, _)| *d == callee).unwrap_or(0);
                        let path: Vec<usize> = stack[cycle_start..].iter().map(|(d, _)| *d).collect();
                        for &d in &path {
                            recursive[d] = true;
                        }
                        diagnostics.push(recursion_error(defs, &path, callee, span));
                    }
                    Mark::Done => {}
                },
                None => {
                    mark[current] = Mark::Done;
                    order.push((current, recursive[current]));
                    stack.pop();
                }
            }
        }
    }
    order
}

fn recursion_error(defs: &Definitions, path: &[usize], callee: usize, span: Span) -> Diagnostic {
    let name = |d: usize| format!("`{}`", defs.items[d].name.name);
    let message = if path.len() == 1 {
        format!("{} calls itself", name(callee))
    } else {
        let chain: Vec<String> = path.iter().map(|&d| name(d)).chain([name(callee)]).collect();
        format!("recursive definitions: {}", chain.join(" → "))
    };
    Diagnostic::error(span, message)
        .label("this call closes the cycle")
        .help("every call is inlined, so definitions cannot be recursive")
}
