//! Errors of lab operations. Each names what failed: the command line, the
//! node, the path.

use std::path::PathBuf;

/// What went wrong while building, starting, inspecting or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A host tool (ip, mount, debootstrap, ...) failed or could not start.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A local file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Tools the lab needs are missing; `install` is the command that fixes it.
    #[error("missing prerequisites: {missing}\ninstall them with:\n  {install}")]
    Prereq { missing: String, install: String },
    /// A node could not be created, started, reached or stopped.
    #[error("lab {lab}, node {node}: {message}")]
    Node {
        lab: String,
        node: String,
        message: String,
    },
    /// Something about the lab as a whole.
    #[error("lab {lab}: {message}")]
    Lab { lab: String, message: String },
    /// A name or value given by the user is not acceptable.
    #[error("invalid {what} `{value}`: {message}")]
    Invalid {
        what: &'static str,
        value: String,
        message: String,
    },
    /// A wait was abandoned because a sibling operation failed first.
    #[error("cancelled because another node failed")]
    Cancelled,
    /// The base image or the mirror content could not be built.
    #[error("image: {message}")]
    Image { message: String },
}

/// Result of lab operations.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// An [`LabError::Io`] for `action` on `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    /// A [`LabError::Node`].
    pub fn node(lab: &str, node: &str, message: impl Into<String>) -> Self {
        LabError::Node {
            lab: lab.into(),
            node: node.into(),
            message: message.into(),
        }
    }

    /// A [`LabError::Lab`].
    pub fn lab(lab: &str, message: impl Into<String>) -> Self {
        LabError::Lab {
            lab: lab.into(),
            message: message.into(),
        }
    }
}

/// A lab error as the one error a cairn command ends with: rendered by
/// `cairn::diagnostic`, its exit code from `cairn::error::Error::exit_code`
/// (3 for missing prerequisites).
impl From<LabError> for cairn::error::Error {
    fn from(e: LabError) -> Self {
        let kind = match e {
            LabError::Prereq { .. } => cairn::error::LabFailure::Prereq,
            _ => cairn::error::LabFailure::Other,
        };
        cairn::error::Error::Lab {
            kind,
            error: Box::new(e),
        }
    }
}
