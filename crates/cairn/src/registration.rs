//! How a function enters the runbook language: [`function`], the one place
//! that builds a `rhai::FuncRegistration`.
//!
//! Every primitive family, the core functions (`hosts`, `on`, `env`, ...) and
//! the helpers (`apt_upstream_version`, `days_until`, ...) register through
//! it with three things besides the closure: the name runbooks call, the
//! parameters as `cairn docs` shows them (`"host: Host", "options: Map"`,
//! then the result type), and the doc comment (`///` lines) that becomes the
//! function's Rhai doc metadata, from which `cairn docs` writes
//! `docs/primitives/` and which a test requires of every function.
//!
//! A step primitive's closure builds its step from the arguments
//! (`crate::args::parse`) and hands it to [`crate::executor::Executor::exec`],
//! the one path that validates it into a [`crate::step::Valid`] and decides
//! plan versus apply; no closure calls a step's `prepare` or `apply` itself.

use rhai::{Engine, FuncRegistration, RhaiNativeFunc, Variant};

/// Register `f` as the Rhai function `name`. `params` are the parameters
/// (`"name: Type"`) followed by the result type; `doc` is the doc comment, as
/// `///` lines (one string per block, a block may hold several lines).
/// Overloads (`run(host, cmd)` and `run(host, cmd, options)`) are separate calls
/// with the same name.
pub fn function<A, const N: usize, const X: bool, R, const F: bool, P, D>(
    engine: &mut Engine,
    name: &str,
    params: impl IntoIterator<Item = P>,
    doc: impl IntoIterator<Item = D>,
    f: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
) where
    A: 'static,
    R: Variant + Clone,
    P: AsRef<str>,
    D: AsRef<str>,
{
    FuncRegistration::new(name)
        .with_params_info(params)
        .with_comments(doc)
        .register_into_engine(engine, f);
}
