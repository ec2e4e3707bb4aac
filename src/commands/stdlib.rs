//! `camc stdlib [NAME]`: list the standard library, or print one method's source.

use crate::output;
use crate::Reported;
use camc_compiler::stdlib;
use camc_compiler::typeck::suggest;

#[derive(clap::Args)]
pub struct Args {
    /// A method to print; without it, all methods are listed.
    name: Option<String>,
}

pub fn run(args: Args) -> Result<(), Reported> {
    match args.name {
        None => {
            let width = stdlib::names().map(str::len).max().unwrap_or(0);
            for name in stdlib::names() {
                println!("{name:width$}  {}", stdlib::summary(name).unwrap_or(""));
            }
            Ok(())
        }
        Some(name) => match stdlib::source(&name) {
            Some(text) => {
                print!("{text}");
                Ok(())
            }
            None => {
                let hint = suggest::closest(&name, stdlib::names())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                output::error(&format!(
                    "no stdlib method named `{name}`{hint}; `camc stdlib` lists them"
                ));
                Err(Reported)
            }
        },
    }
}
