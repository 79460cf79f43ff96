//! `cairn list`, `show`, `check` and `new`: what runbooks there are, what they
//! take, whether they compile, and a fresh one to start from.

use crate::diagnostic::{render_parse, Sources};
use crate::error::{Error, Success};
use crate::runbook::{builtins, stdlib_modules, Runbook};

/// List shipped runbooks with versions.
pub fn list() -> Result<Success, Error> {
    let mut errors = Vec::new();
    for r in builtins() {
        match r {
            Ok(rb) => println!(
                "{:<28} {:<8} {}",
                rb.manifest.name,
                rb.manifest.version,
                rb.manifest.description.lines().next().unwrap_or("")
            ),
            Err(e) => errors.push(Error::Load(e)),
        }
    }
    match errors.is_empty() {
        true => Ok(Success::Done),
        false => Err(Error::Several(errors)),
    }
}

/// Describe one runbook.
pub fn show(spec: &str) -> Result<Success, Error> {
    let rb = Runbook::load(spec)?;
    let m = &rb.manifest;
    println!("{} {}\n\n{}\n", m.name, m.version, m.description.trim_end());
    if m.params.0.is_empty() {
        println!("No parameters.");
    } else {
        println!("Parameters:");
    }
    for (name, p) in m.params.iter() {
        let kind = match p.items {
            Some(item) => format!("list of {item}"),
            None => p.kind.to_string(),
        };
        let mut extra = Vec::new();
        if p.required {
            extra.push("required".to_string());
        }
        if let Some(d) = &p.default {
            extra.push(format!("default {d}"));
        }
        if let Some(e) = &p.env {
            extra.push(format!("env {e}"));
        }
        if let Some(c) = &p.choices {
            let c: Vec<String> = c.iter().map(|v| v.to_string()).collect();
            extra.push(format!("one of {}", c.join(", ")));
        }
        if let Some(min) = p.min {
            extra.push(format!("min {min}"));
        }
        if let Some(max) = p.max {
            extra.push(format!("max {max}"));
        }
        println!(
            "  {name} ({kind}{}{})",
            if extra.is_empty() { "" } else { "; " },
            extra.join("; ")
        );
        println!("      {}", p.help);
    }
    Ok(Success::Done)
}

/// Compile every script of a runbook, validate its manifest, and run the
/// script with placeholders and no network (see [`crate::launch::check_offline`]).
pub fn check(spec: &str) -> Result<Success, Error> {
    let rb = Runbook::load(spec)?;
    let n = check_runbook(&rb)?;
    let label = format!("{} {}", rb.manifest.name, rb.manifest.version);
    let steps = crate::launch::check_offline(rb)?;
    println!(
        "{label}: manifest ok, {n} scripts compile, \
         the script runs with placeholder hosts and parameters ({steps} steps planned)"
    );
    Ok(Success::Done)
}

/// Compile `main.rhai`, the runbook's other `.rhai` files, and the stdlib.
/// Returns how many scripts compiled, or the first error.
pub fn check_runbook(rb: &Runbook) -> Result<usize, Error> {
    let engine = crate::engine::compile_engine();
    let mut scope = rhai::Scope::new();
    scope.push("params", ());
    let mut sources = Sources::default();
    let mut scripts = Vec::new();
    for (path, bytes) in rb.bundle.files() {
        if path.extension().is_some_and(|e| e == "rhai") {
            let text = String::from_utf8_lossy(bytes).to_string();
            let name = path.display().to_string();
            sources.add(name.clone(), format!("{}/{name}", rb.label), text.clone());
            scripts.push((name, text));
        }
    }
    for (name, text) in stdlib_modules() {
        sources.add(name.clone(), name.clone(), text);
        scripts.push((name, text.to_string()));
    }
    for (name, text) in &scripts {
        let compiled = if name == "main.rhai" {
            engine.compile_with_scope(&scope, text)
        } else {
            engine.compile(text)
        };
        if let Err(e) = compiled {
            return Err(render_parse(&e, name, &sources).into());
        }
    }
    for (path, bytes) in rb.bundle.files() {
        let p = path.display().to_string();
        if p.starts_with("templates/") {
            let text = String::from_utf8_lossy(bytes);
            let mut env = minijinja::Environment::new();
            if let Err(e) = env.add_template(&p, &text) {
                return Err(Error::Template {
                    name: format!("{}/{p}", rb.label),
                    line: e.line().unwrap_or(0),
                    message: e.kind().to_string(),
                });
            }
        }
    }
    Ok(scripts.len())
}

/// Create a runbook folder `name` with a manifest, a script and a README.
pub fn scaffold(name: &str) -> Result<Success, Error> {
    let dir = std::path::Path::new(name);
    let base = dir.file_name().and_then(|n| n.to_str()).unwrap_or(name);
    if dir.exists() {
        return Err(Error::input(
            name,
            format!("{name} already exists; choose another name"),
        ));
    }
    let files = [
        (
            "runbook.toml",
            format!(
                "name = \"{base}\"\nversion = \"0.1.0\"\ndescription = \"What this runbook does, in one line.\"\n\n\
                 [params.greeting]\ntype = \"string\"\ndefault = \"hello from cairn\"\nhelp = \"Text written to /tmp/cairn-greeting on every host.\"\n"
            ),
        ),
        (
            "main.rhai",
            "// Runs on every host of the inventory (--inventory FILE or --lab), in parallel.\n\
             on(hosts(), |h| {\n    \
                 file(h, #{ path: \"/tmp/cairn-greeting\", content: params.greeting + \"\\n\", mode: \"0644\" });\n\
             });\n"
                .to_string(),
        ),
        (
            "README.md",
            format!(
                "# {base}\n\nDescribe what this runbook does, its parameters, and how to verify the result.\n\n\
                 ```\ncairn check {name}\ncairn plan {name} --lab\ncairn run {name} --lab\n```\n"
            ),
        ),
        ("templates/.keep", String::new()),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        }
        std::fs::write(&path, text).map_err(Error::io("write", &path))?;
    }
    println!("Created runbook {name}/ (runbook.toml, main.rhai, README.md, templates/).");
    print!("{}", next_steps(name, &labs_up()));
    Ok(Success::Done)
}

/// Names of the labs on this machine whose daemon is running.
pub fn labs_up() -> Vec<String> {
    crate::labs::lab_names()
        .into_iter()
        .filter(|name| crate::labs::daemon_running(name))
        .collect()
}

/// What to type next after `cairn new NAME`: the exact plan command for each
/// lab that is up (`--lab` alone for the default lab `cairn`), or how to
/// start one or use an inventory.
pub fn next_steps(name: &str, labs: &[String]) -> String {
    let q = crate::ssh::quote(name);
    let lab_arg = |lab: &str| {
        if lab == "cairn" {
            "--lab".to_string()
        } else {
            format!("--lab {}", crate::ssh::quote(lab))
        }
    };
    match labs {
        [] => format!(
            "Next: cairn check {q}\n\
             No lab is up: start one with `cairn lab up`, then `cairn plan {q} --lab`;\n\
             or plan on your own hosts: `cairn plan {q} --inventory hosts.toml` (docs/inventory.md).\n"
        ),
        [lab] => format!(
            "Next: cairn check {q} && cairn plan {q} {}\n",
            lab_arg(lab)
        ),
        many => {
            let mut text = format!(
                "Next: cairn check {q}, then plan on one of the {} labs that are up:\n",
                many.len()
            );
            for lab in many {
                text.push_str(&format!("  cairn plan {q} {}\n", lab_arg(lab)));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_steps;

    #[test]
    fn next_steps_name_the_labs_that_are_up() {
        let labs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            next_steps("mine", &labs(&["cairn"])),
            "Next: cairn check mine && cairn plan mine --lab\n"
        );
        assert_eq!(
            next_steps("my book", &labs(&["demo"])),
            "Next: cairn check 'my book' && cairn plan 'my book' --lab demo\n"
        );
        assert_eq!(
            next_steps("mine", &labs(&["a", "cairn"])),
            "Next: cairn check mine, then plan on one of the 2 labs that are up:\n  \
             cairn plan mine --lab a\n  cairn plan mine --lab\n"
        );
        let none = next_steps("mine", &[]);
        assert!(
            none.contains(
                "No lab is up: start one with `cairn lab up`, then `cairn plan mine --lab`"
            ),
            "{none}"
        );
    }
}
