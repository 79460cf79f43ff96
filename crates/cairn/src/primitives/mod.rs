//! Primitive families: each a typed Rust API plus one `register` into Rhai.

pub mod cloud;
pub mod datadir;
pub mod etcd;
pub mod local;
pub mod owner;
pub mod pki;
pub mod remote;
pub mod render;
pub mod template_format;

use crate::executor::Executor;
use std::sync::Arc;

/// A family's registration into an engine.
pub type Register = fn(&mut rhai::Engine, &Arc<Executor>);

/// Every primitive family by name, in registration order (`cairn docs`
/// writes one page per family).
pub const FAMILIES: &[(&str, Register)] = &[
    ("cloud", cloud::register),
    ("datadir", datadir::register),
    ("local", local::register),
    ("owner", owner::register),
    ("pki", pki::register),
    ("etcd", etcd::register),
    ("render", render::register),
    ("remote", remote::register),
];

/// Register every primitive family into the engine.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    for (_, register) in FAMILIES {
        register(engine, exec);
    }
}
