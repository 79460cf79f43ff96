//! How a function enters the runbook language: the `function!` macro and
//! [`register`], the one place that builds a `rhai::FuncRegistration`.
//!
//! Every primitive family, the core functions (`hosts`, `on`, `env`, ...) and
//! the helpers (`apt_upstream_version`, `days_until`, ...) register through
//! it with three things besides the closure: the name runbooks call, the
//! parameters as `cairn docs` shows them (`"host: Host", "options: Map"`,
//! then the result type), and the doc comment that becomes the function's
//! Rhai doc metadata, from which `cairn docs` writes `docs/primitives/` and
//! which a test requires of every function.
//!
//! A function's doc is written once, as Rust doc comments (`///` lines), never
//! as a string (a test refuses string literals that start with `///`):
//!
//! - at the call site, above the function's header:
//!   ```ignore
//!   crate::registration::function!(
//!       engine,
//!       /// The cluster's members, asked of the first endpoint that answers.
//!       fn "etcd_member_list"("args: Map") -> "Array" + CONN =
//!       move |call: NativeCallContext, args: Map| -> Res<Array> { ... }
//!   );
//!   ```
//!   (`+ CONN` appends a shared [`Doc`] as a further block);
//! - on a named [`Doc`] that several functions share, through `documented!`
//!   (`documented! { /// ... pub(super) const DOC_RUN; }`), used with
//!   `fn "run"(...) -> "CommandResult" as run::DOC_RUN = ...`;
//! - for a step primitive registered from a table (`file`, `dir`, `apt`, ...
//!   in `primitives/remote`), on the step's struct, also through
//!   `documented!`, which implements [`Documented`]: the struct's rustdoc is
//!   the runbook function's doc.
//!
//! `macro_rules!` sees a `/// text` line as `#[doc = " text"]`; the macros turn
//! those back into the `///` block Rhai keeps ([`DOC_LINE`] before each text),
//! so rustdoc and `cairn docs` show the same text from one source.
//!
//! A step primitive's closure builds its step from the arguments
//! (`crate::args::parse`) and hands it to [`crate::executor::Executor::exec`],
//! the one path that validates it into a [`crate::step::Valid`] and decides
//! plan versus apply; no closure calls a step's `prepare` or `apply` itself.

use crate::executor::Executor;
use crate::step::Step;
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, Map, NativeCallContext,
    RhaiNativeFunc, Variant,
};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::sync::Arc;

/// What starts each line of a doc block in Rhai's metadata: three slashes.
pub const DOC_LINE: &str = "///";

/// A function's documentation for runbook authors: one or more blocks of
/// `///` lines, as Rhai's doc metadata holds them. Only the macros
/// (`function!`, `documented!`) make one, from doc comments.
#[derive(Clone, Debug)]
pub struct Doc {
    blocks: Cow<'static, [&'static str]>,
}

impl Doc {
    /// The doc made of these `///` blocks. For the macros only: a doc is
    /// written as doc comments, not as strings.
    #[doc(hidden)]
    pub const fn from_doc_comments(blocks: &'static [&'static str]) -> Doc {
        Doc {
            blocks: Cow::Borrowed(blocks),
        }
    }

    /// This doc followed by `more`'s blocks (a note several functions share,
    /// such as how to reach etcd).
    pub fn and(self, more: &Doc) -> Doc {
        let mut blocks = self.blocks.into_owned();
        blocks.extend_from_slice(&more.blocks);
        Doc {
            blocks: Cow::Owned(blocks),
        }
    }

    /// The blocks, each a run of `///` lines.
    pub fn blocks(&self) -> &[&'static str] {
        &self.blocks
    }
}

/// A type whose doc comment is a runbook function's doc (a step primitive's
/// struct); implemented by `documented!`.
pub trait Documented {
    /// The type's doc comment as a [`Doc`].
    const DOC: Doc;
}

/// Register `f` as the Rhai function `name`. `params` are the parameters
/// (`"name: Type"`) followed by the result type. Overloads (`run(host, cmd)`
/// and `run(host, cmd, options)`) are separate calls with the same name.
/// Call sites use `function!`, which builds the [`Doc`] from doc comments.
pub fn register<A, const N: usize, const X: bool, R, const F: bool, P>(
    engine: &mut Engine,
    name: &str,
    params: impl IntoIterator<Item = P>,
    doc: Doc,
    f: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
) where
    A: 'static,
    R: Variant + Clone,
    P: AsRef<str>,
{
    FuncRegistration::new(name)
        .with_params_info(params)
        .with_comments(doc.blocks())
        .register_into_engine(engine, f);
}

/// Register a function whose doc is the doc comment above its header:
///
/// ```ignore
/// crate::registration::function!(
///     engine,
///     /// Start opening the ssh connections to `hosts` ...
///     fn "connect"("hosts: Array") -> "()" = move |hosts: rhai::Array| { ... }
/// );
/// ```
///
/// The header is `fn NAME(PARAM, ...) -> RESULT`, each a string as `cairn docs`
/// shows it (`NAME` may be a variable). `+ SHARED` after the result appends a
/// shared [`Doc`]; without doc comments, `as SHARED` names the whole doc.
macro_rules! function {
    (
        $engine:expr,
        $(#[doc = $doc:literal])+
        fn $name:tt ($($param:tt),* $(,)?) -> $result:tt
        $(+ $($more:ident)::+)* = $f:expr $(,)?
    ) => {
        $crate::registration::register(
            $engine,
            $name,
            [$($param,)* $result],
            $crate::registration::doc_block!($($doc),+)$(.and(&$($more)::+))*,
            $f,
        )
    };
    (
        $engine:expr,
        fn $name:tt ($($param:tt),* $(,)?) -> $result:tt
        as $($doc:ident)::+ $(+ $($more:ident)::+)* = $f:expr $(,)?
    ) => {
        $crate::registration::register(
            $engine,
            $name,
            [$($param,)* $result],
            $($doc)::+$(.and(&$($more)::+))*,
            $f,
        )
    };
}
pub(crate) use function;

/// A documented item whose doc comment is a runbook function's doc:
///
/// - `documented! { /// ... pub const NAME; }`: a doc several functions share,
///   a `pub const NAME: Doc` with that doc comment;
/// - `documented! { /// ... #[derive(..)] pub struct Step { .. } }` (doc
///   comments first, then other attributes): the struct as written, and
///   [`Documented`] for it with its doc comment.
macro_rules! documented {
    ($(#[doc = $doc:literal])+ $vis:vis const $name:ident;) => {
        $(#[doc = $doc])+
        $vis const $name: $crate::registration::Doc = $crate::registration::doc_block!($($doc),+);
    };
    ($(#[$($attr:tt)*])+ $vis:vis struct $name:ident $($body:tt)*) => {
        $(#[$($attr)*])+
        $vis struct $name $($body)*

        impl $crate::registration::Documented for $name {
            const DOC: $crate::registration::Doc =
                $crate::registration::doc_block!(@docs [] $(#[$($attr)*])+);
        }
    };
}
pub(crate) use documented;

/// The [`Doc`] of doc-comment texts (`" text"` from `/// text`): one block,
/// [`DOC_LINE`] before each line, lines joined by newlines (no newline at the
/// end). `@docs` picks the doc comments out of a list of attributes.
#[doc(hidden)]
macro_rules! doc_block {
    (@docs [$($doc:literal),*]) => {
        $crate::registration::doc_block!($($doc),*)
    };
    (@docs [$($doc:literal),*] #[doc = $next:literal] $($rest:tt)*) => {
        $crate::registration::doc_block!(@docs [$($doc,)* $next] $($rest)*)
    };
    (@docs [$($doc:literal),*] #[$($other:tt)*] $($rest:tt)*) => {
        $crate::registration::doc_block!(@docs [$($doc),*] $($rest)*)
    };
    ($first:literal $(, $doc:literal)*) => {
        $crate::registration::Doc::from_doc_comments(&[concat!(
            "///", $first $(, "\n///", $doc)*
        )])
    };
}
pub(crate) use doc_block;

/// The closure of a step primitive called with one options map
/// (`etcd_defrag(#{ ... })`): the map parsed into `S` (an error names `name`
/// and the key), the step run through [`crate::executor::Executor::exec`],
/// its output returned as it is. Used as `function!`'s closure:
/// `fn "etcd_put"("args: Map") -> "bool" = map_step::<EtcdPut>(exec, "etcd_put")`.
pub fn map_step<S>(
    exec: &Arc<Executor>,
    name: &'static str,
) -> impl Fn(NativeCallContext, Map) -> Result<S::Output, Box<EvalAltResult>> + Send + Sync + 'static
where
    S: Step + DeserializeOwned + 'static,
{
    map_step_then::<S, _>(exec, name, std::convert::identity)
}

/// [`map_step`] with the step's output turned into what runbooks get by
/// `out` ([`array`], [`or_unit`], or the family's own).
pub fn map_step_then<S, R>(
    exec: &Arc<Executor>,
    name: &'static str,
    out: fn(S::Output) -> R,
) -> impl Fn(NativeCallContext, Map) -> Result<R, Box<EvalAltResult>> + Send + Sync + 'static
where
    S: Step + DeserializeOwned + 'static,
    R: 'static,
{
    let exec = exec.clone();
    move |call: NativeCallContext, args: Map| {
        let step: S = crate::args::parse(&call, name, args)?;
        exec.exec(&call, step).map(out)
    }
}

/// A list of handles as a Rhai array.
pub fn array<T: Variant + Clone>(items: Vec<T>) -> Array {
    items.into_iter().map(Dynamic::from).collect()
}

/// A value, or `()` when there is none.
pub fn or_unit<T: Variant + Clone>(value: Option<T>) -> Dynamic {
    value.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}
