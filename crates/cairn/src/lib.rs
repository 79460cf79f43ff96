//! cairn: runbooks for bootstrapping and operating etcd clusters.
//!
//! A runbook is a Rhai script over typed primitives. Every primitive call is a
//! [`step::Step`]: it observes facts, decides [`action::Action`]s, and — only when
//! the [`executor`] says so — applies them. Plan versus apply is decided in the
//! executor alone.

pub mod action;
pub mod args;
pub mod audit;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod diagnostic;
pub mod docs;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fanout;
pub mod host;
pub mod host_lock;
pub mod inventory;
pub mod journal;
pub mod labs;
pub mod launch;
pub mod limit;
pub mod lock;
pub mod manifest;
pub mod params;
pub mod primitives;
pub mod private_file;
pub mod reference;
pub mod registration;
pub mod report;
pub mod runbook;
pub mod runs;
pub mod scratch;
pub mod seal;
pub mod secrets;
pub mod ssh;
pub mod state;
pub mod step;
pub mod unknown;
pub mod value_kind;
pub mod workspace;
