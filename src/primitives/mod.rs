//! Primitive families: each a typed Rust API plus one `register` into Rhai.

use crate::executor::Executor;
use std::sync::Arc;

/// Register every primitive family into the engine.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    let _ = (engine, exec);
}
