//! `--vars` files and `--var` values against a manifest with every parameter
//! type: the text before the first NUL byte is the vars file, the lines after
//! it are `--var name=value`s. Errors name their origin. No panics.

#![no_main]

use cairn::manifest::{resolve, toml_message, Inputs, Manifest};
use libfuzzer_sys::fuzz_target;

const MANIFEST: &str = r#"
name = "fuzz"
version = "1.0.0"
description = "every parameter type"

[params.s]
type = "string"
default = "x"
choices = ["x", "y"]
help = "h"

[params.n]
type = "int"
default = 3
min = 1
max = 9
help = "h"

[params.b]
type = "bool"
default = false
help = "h"

[params.l]
type = "list"
items = "ip"
default = ["10.0.0.1"]
help = "h"

[params.m]
type = "map"
default = { a = "b" }
help = "h"

[params.ip]
type = "ip"
default = "10.0.0.1"
help = "h"

[params.net]
type = "cidr"
default = "10.0.0.0/16"
help = "h"

[params.token]
type = "secret"
env = "FUZZ_TOKEN"
help = "h"
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let m = Manifest::parse("runbook.toml", MANIFEST).expect("the fuzz manifest parses");
    let (file, cli) = text.split_once('\0').unwrap_or((text, ""));
    let mut inputs = Inputs::default();
    match toml::from_str::<toml::Table>(file) {
        Ok(table) => inputs.files.push(("vars.toml".into(), table)),
        Err(e) => {
            let _ = toml_message(file, &e);
        }
    }
    for line in cli.lines() {
        if let Some((k, v)) = line.split_once('=') {
            inputs.vars.push((k.into(), v.into()));
        }
    }
    let env = Default::default();
    if let Err(e) = resolve(&m, &inputs, &env) {
        let _ = e.to_string();
    }
});
