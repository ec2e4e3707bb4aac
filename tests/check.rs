//! Golden tests of the front end: every program in tests/in/good checks cleanly; every program
//! in tests/in/bad fails with the diagnostic its `# expect:` line names, and its full rendered
//! diagnostics match tests/out/diag/NAME.txt.

mod support;

use camc_compiler::check_source;

#[test]
fn good_programs_check_without_diagnostics() {
    let files = support::inputs("good");
    assert!(files.len() >= 40, "only {} good programs", files.len());
    let mut failures = Vec::new();
    for path in files {
        let name = format!("good/{}.cam", support::stem(&path));
        let text = std::fs::read_to_string(&path).expect("readable test input");
        let checked = check_source(&name, &text);
        if checked.program.is_none() || !checked.diagnostics.is_empty() {
            failures.push(format!("{name} should check cleanly:\n{}", checked.render(false)));
        }
    }
    support::report(failures);
}

#[test]
fn bad_programs_report_the_expected_diagnostics() {
    let files = support::inputs("bad");
    assert!(files.len() >= 40, "only {} bad programs", files.len());
    let mut failures = Vec::new();
    for path in files {
        let stem = support::stem(&path);
        let name = format!("bad/{stem}.cam");
        let text = std::fs::read_to_string(&path).expect("readable test input");
        let checked = check_source(&name, &text);
        let rendered = checked.render(false);
        if checked.program.is_some() || checked.errors() == 0 {
            failures.push(format!("{name} should fail to check"));
            continue;
        }
        let expectations: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# expect:"))
            .map(str::trim)
            .collect();
        if expectations.is_empty() {
            failures.push(format!("{name} has no `# expect:` line"));
        }
        for expected in expectations {
            if !rendered.contains(expected) {
                failures.push(format!("{name}: diagnostics lack `{expected}`:\n{rendered}"));
            }
        }
        if let Err(e) = support::snapshot(&format!("diag/{stem}.txt"), &rendered) {
            failures.push(e);
        }
    }
    support::report(failures);
}

#[test]
fn stdlib_definition_names_are_unique_across_files() {
    let mut seen = std::collections::HashMap::new();
    for name in camc_compiler::stdlib::names() {
        let source = camc_compiler::stdlib::source(name).expect("listed");
        let (file, errors) = camc_compiler::syntax::parse(camc_compiler::span::SourceId(0), source);
        assert!(errors.is_empty(), "{name} does not parse");
        for item in file.items {
            if let Some(other) = seen.insert(item.name.name.clone(), name) {
                panic!(
                    "`{}` is defined in stdlib/{other}.cam and stdlib/{name}.cam",
                    item.name.name
                );
            }
        }
    }
}

#[test]
fn user_definitions_do_not_leak_into_stdlib_bodies() {
    // A user `fn` with the name of a stdlib `cam` shadows it for the user's own calls only.
    let text = "fn gradcam(x: [k]) = x\ncam mine(A: [k,h,w], G: [k,h,w]) = relu(sum[k](gradcam(mean[h,w](G)) * A))\n\
                cam other(A: [k,h,w], G: [k,h,w]) = relu(sum[k](A)) + gradcampp(A, G)\n";
    let checked = check_source("shadow.cam", text);
    assert!(checked.program.is_some(), "{}", checked.render(false));
}
