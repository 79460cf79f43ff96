//! `cairn runs` on the team state: the runs stored in etcd, read into a
//! scratch folder (no lock, no key needed: journals hold no secrets) and
//! listed as the local ones are.

use super::{Shared, StateOptions};
use crate::error::{Error, Success};
use std::path::Path;
use std::sync::Arc;

/// Call `f` with the folder whose `runs/` to show: the local `state_dir`, or
/// with `--state` a scratch copy of the team state's runs.
pub fn with_runs(
    state_dir: &Path,
    shared: Option<Arc<StateOptions>>,
    f: impl FnOnce(&Path) -> Result<Success, Error>,
) -> Result<Success, Error> {
    let Some(opts) = shared else {
        return f(state_dir);
    };
    let s = Shared::connect(&opts, state_dir)?;
    let dir = tempfile::Builder::new()
        .prefix("cairn-runs-")
        .tempdir()
        .map_err(Error::io(
            "create a scratch folder in",
            std::env::temp_dir(),
        ))?;
    let ws = crate::workspace::Workspace::new(dir.path());
    super::sync::pull(&s, &ws, None, false).map_err(super::StateError::Etcd)?;
    f(dir.path())
}
