//! Builds the syntax tree of one item from pest's parse tree.

use super::ast::{AxisList, BinaryOp, ExprKind, Ident, Item, ItemKind, Let, Param};
use super::precedence::{combine, ExprBuilder, Token};
use crate::diag::Diagnostic;
use crate::span::{SourceId, Span};
use pest::iterators::Pair;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar.pest"]
pub struct CamParser;

pub type PestPair<'i> = Pair<'i, Rule>;

/// Turns pest pairs (of a slice of the file starting at `offset`) into AST nodes.
pub struct ItemBuilder {
    source: SourceId,
    offset: usize,
    exprs: ExprBuilder,
}

impl ItemBuilder {
    pub fn new(source: SourceId, offset: usize) -> ItemBuilder {
        ItemBuilder {
            source,
            offset,
            exprs: ExprBuilder::default(),
        }
    }

    fn span(&self, pair: &PestPair) -> Span {
        let s = pair.as_span();
        Span::new(self.source, self.offset + s.start()..self.offset + s.end())
    }

    fn ident(&self, pair: PestPair) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    /// `pair` is a `cam_def` or `fn_def`.
    pub fn item(mut self, pair: PestPair) -> Result<Item, Diagnostic> {
        let kind = match pair.as_rule() {
            Rule::cam_def => ItemKind::Cam,
            _ => ItemKind::Fn,
        };
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let _keyword = inner.next();
        let name = self.ident(inner.next().expect("grammar: item name"));
        let params = inner
            .next()
            .expect("grammar: parameter list")
            .into_inner()
            .map(|p| self.param(p))
            .collect::<Result<Vec<_>, _>>()?;
        let body = inner.next().expect("grammar: item body");
        let (lets, result) = match body.as_rule() {
            Rule::block => self.block(body)?,
            _ => (Vec::new(), self.expr(body)?),
        };
        Ok(Item {
            kind,
            name,
            params,
            lets,
            result,
            exprs: self.exprs.exprs,
            span,
        })
    }

    fn param(&self, pair: PestPair) -> Result<Param, Diagnostic> {
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: parameter name"));
        let mut next = inner.next().expect("grammar: parameter type");
        let shared = if next.as_rule() == Rule::shared {
            let span = self.span(&next);
            next = inner.next().expect("grammar: type after `shared`");
            Some(span)
        } else {
            None
        };
        let axes = self.axes(next);
        let default = match inner.next() {
            Some(default) => {
                let span = self.span(&default);
                let mut parts = default.into_inner();
                let first = parts.next().expect("grammar: default value");
                let (negative, number) = match first.as_rule() {
                    Rule::neg => (true, parts.next().expect("grammar: number after -")),
                    _ => (false, first),
                };
                let value = self.number(&number)?;
                Some((if negative { -value } else { value }, span))
            }
            None => None,
        };
        Ok(Param {
            name,
            shared,
            axes,
            default,
        })
    }

    fn axes(&self, pair: PestPair) -> AxisList {
        let span = self.span(&pair);
        AxisList {
            names: pair.into_inner().map(|p| self.ident(p)).collect(),
            span,
        }
    }

    fn block(&mut self, pair: PestPair) -> Result<(Vec<Let>, super::ast::ExprId), Diagnostic> {
        let mut lets = Vec::new();
        let mut result = None;
        for part in pair.into_inner() {
            match part.as_rule() {
                Rule::let_stmt => {
                    let mut inner = part.into_inner();
                    let _keyword = inner.next();
                    let name = self.ident(inner.next().expect("grammar: let name"));
                    let value = self.expr(inner.next().expect("grammar: let value"))?;
                    lets.push(Let { name, value });
                }
                _ => result = Some(self.expr(part)?),
            }
        }
        Ok((lets, result.expect("grammar: a block ends in an expression")))
    }

    fn number(&self, pair: &PestPair) -> Result<f64, Diagnostic> {
        let text = pair.as_str();
        let value: f64 = text.parse().unwrap_or(f64::INFINITY);
        if !value.is_finite() || value > f32::MAX as f64 {
            return Err(
                Diagnostic::error(self.span(pair), format!("number `{text}` is too large"))
                    .label("computation is in float32")
                    .help(format!("the largest float32 is about {:e}", f32::MAX)),
            );
        }
        Ok(value)
    }

    /// `pair` is an `expr`: operands separated by infix operators.
    fn expr(&mut self, pair: PestPair) -> Result<super::ast::ExprId, Diagnostic> {
        let mut tokens = Vec::new();
        for part in pair.into_inner() {
            match part.as_rule() {
                Rule::operand => {
                    for piece in part.into_inner() {
                        match piece.as_rule() {
                            Rule::neg => tokens.push(Token::Neg(self.span(&piece))),
                            _ => tokens.push(Token::Operand(self.primary(piece)?)),
                        }
                    }
                }
                rule => tokens.push(Token::Infix(binary_op(rule))),
            }
        }
        combine(&mut self.exprs, tokens)
    }

    fn primary(&mut self, pair: PestPair) -> Result<super::ast::ExprId, Diagnostic> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::number => {
                let value = self.number(&pair)?;
                self.exprs.push(ExprKind::Number(value), span, &[])
            }
            Rule::ident => self
                .exprs
                .push(ExprKind::Name(pair.as_str().to_string()), span, &[]),
            Rule::group => self.expr(pair.into_inner().next().expect("grammar: group holds an expr")),
            _ => {
                let mut callee = None;
                let mut axes = None;
                let mut args = Vec::new();
                for part in pair.into_inner() {
                    match part.as_rule() {
                        Rule::ident => callee = Some(self.ident(part)),
                        Rule::axes => axes = Some(self.axes(part)),
                        _ => args.push(self.expr(part)?),
                    }
                }
                let callee = callee.expect("grammar: call has a callee");
                let kind = ExprKind::Call {
                    callee,
                    axes,
                    args: args.clone(),
                };
                self.exprs.push(kind, span, &args)
            }
        }
    }
}

fn binary_op(rule: Rule) -> BinaryOp {
    match rule {
        Rule::or => BinaryOp::Or,
        Rule::and => BinaryOp::And,
        Rule::eq => BinaryOp::Eq,
        Rule::ne => BinaryOp::Ne,
        Rule::le => BinaryOp::Le,
        Rule::ge => BinaryOp::Ge,
        Rule::lt => BinaryOp::Lt,
        Rule::gt => BinaryOp::Gt,
        Rule::add => BinaryOp::Add,
        Rule::sub => BinaryOp::Sub,
        Rule::mul => BinaryOp::Mul,
        Rule::div => BinaryOp::Div,
        _ => BinaryOp::Pow,
    }
}
