//! The README's flag tables stay true: every flag each program accepts (read from its clap
//! definition, the same one `--help` prints) appears in the README's section for that program,
//! with its environment fallback when it has one, and the README names no flag a program lacks.

use clap::CommandFactory;

/// The README text of the `### <program>` section under `## Flags`.
fn section(readme: &str, program: &str) -> String {
    let flags = readme
        .split("\n## Flags")
        .nth(1)
        .expect("README has a Flags section");
    let flags = flags.split("\n## ").next().unwrap_or(flags);
    flags
        .split("\n### ")
        .find(|s| s.starts_with(program))
        .unwrap_or_else(|| panic!("README Flags has no ### {program} section"))
        .to_string()
}

fn check(program: &str, cmd: clap::Command) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let text = section(&readme, program);
    let mut missing = Vec::new();
    let mut known = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        known.push(format!("--{long}"));
        if !text.contains(&format!("`--{long}`")) {
            missing.push(format!("--{long}"));
        }
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            if !text.contains(env.as_ref()) {
                missing.push(format!("--{long}'s env {env}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README ### {program} lacks: {missing:?}"
    );
    // Every `--flag` the section names is a real flag (other programs' flags, such as
    // etcd's `--max-txn-ops`, are named as theirs).
    let parts: Vec<&str> = text.split('`').collect();
    let named: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(i, t)| i % 2 == 1 && t.starts_with("--") && !t.contains(' '))
        .filter(|(i, _)| !parts[i - 1].ends_with("etcd's "))
        .map(|(_, t)| t.split('=').next().unwrap_or(t))
        .collect();
    let stale: Vec<&&str> = named
        .iter()
        .filter(|n| !known.iter().any(|k| k == *n))
        .collect();
    assert!(
        stale.is_empty(),
        "README ### {program} names flags the program lacks: {stale:?}"
    );
}

#[test]
fn skydns_flags_are_all_in_the_readme() {
    check("skydns", skydns::Config::command());
}

#[test]
fn kube2sky_flags_are_all_in_the_readme() {
    check("kube2sky", kube2sky::config::Config::command());
}

#[test]
fn healthz_flags_are_all_in_the_readme() {
    check("healthz", healthz::config::Config::command());
}
