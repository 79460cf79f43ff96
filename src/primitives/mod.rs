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

/// Register every primitive family into the engine.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    cloud::register(engine, exec);
    datadir::register(engine, exec);
    local::register(engine, exec);
    owner::register(engine, exec);
    pki::register(engine, exec);
    etcd::register(engine, exec);
    render::register(engine, exec);
    remote::register(engine, exec);
}
