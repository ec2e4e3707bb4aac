//! `camc check FILE...`: parse and type-check, report every diagnostic.

use super::source;
use crate::output;
use crate::Reported;
use camc_compiler::typed::{Function, Program};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The .cam files to check.
    #[arg(required = true, value_name = "FILE.cam")]
    files: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<(), Reported> {
    let mut failed = false;
    for path in &args.files {
        let Ok(text) = source::read(path) else {
            failed = true;
            continue;
        };
        let checked = camc_compiler::check_source(&path.display().to_string(), &text);
        eprint!("{}", checked.render(output::color_stderr()));
        match &checked.program {
            Some(program) => print_summary(&path.display().to_string(), program),
            None => {
                let n = checked.errors();
                output::error(&format!(
                    "`{}` has {n} error{}",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                ));
                failed = true;
            }
        }
    }
    if failed {
        Err(Reported)
    } else {
        Ok(())
    }
}

fn print_summary(name: &str, program: &Program) {
    if program.exported.is_empty() {
        println!("{name}: ok, but it defines nothing");
        return;
    }
    println!("{name}: ok");
    for &id in &program.exported {
        println!("  {}", signature(program.function(id)));
    }
}

/// `cam gradcam(A: [k,h,w], G: [k,h,w]) -> [h,w]`
pub fn signature(function: &Function) -> String {
    let params: Vec<String> = function
        .params
        .iter()
        .map(|p| {
            let shared = if p.shared { "shared " } else { "" };
            match p.default {
                Some(d) => format!(
                    "{}: {shared}{} = {}",
                    p.name,
                    p.ty,
                    camc_compiler::ops::format_number(d)
                ),
                None => format!("{}: {shared}{}", p.name, p.ty),
            }
        })
        .collect();
    format!(
        "{} {}({}) -> {}",
        function.kind.keyword(),
        function.name,
        params.join(", "),
        function.ty
    )
}
