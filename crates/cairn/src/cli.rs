//! The command line: parse arguments and call into the library. Its result
//! goes back to `main.rs`, which renders an error and exits with its code.
//! The binary adds subcommands of its own to [`command`] (`cairn lab`, from
//! the crate `cairn-lab`, with its `lab` feature) and hands the rest to [`run`].

use crate::error::{Error, Success};
use crate::launch::{self, Request};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// cairn: bootstrap and operate etcd clusters with runbooks you can plan, run,
/// resume and rerun.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    /// Workspace folder (journals, PKI, pinned host keys).
    #[arg(long, global = true, env = "CAIRN_STATE_DIR", default_value = ".cairn")]
    pub state_dir: PathBuf,
    /// Team state in etcd instead of the local folder:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (see docs/team-state.md).
    #[arg(long, global = true, env = "CAIRN_STATE", value_name = "URL")]
    pub state: Option<String>,
    /// CA certificate (PEM) of the state etcd.
    #[arg(long, global = true, env = "CAIRN_STATE_CACERT", value_name = "FILE")]
    pub state_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for the state etcd.
    #[arg(long, global = true, env = "CAIRN_STATE_CERT", value_name = "FILE")]
    pub state_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, env = "CAIRN_STATE_KEY_FILE", value_name = "FILE")]
    pub state_key: Option<PathBuf>,
    /// Seconds the team lock outlives a holder that died (its lease TTL).
    #[arg(long, global = true, env = "CAIRN_STATE_LOCK_TTL", value_name = "SECS",
          default_value_t = crate::state::DEFAULT_LOCK_TTL)]
    pub state_lock_ttl: u64,
    /// Debug logs (-v) and trace logs (-vv) on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Inputs shared by `run` and `plan`.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// A shipped runbook's name (see `cairn list`) or a runbook folder.
    pub runbook: String,
    /// Set a parameter: --var name=value (repeatable; lists as a,b,c).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read parameters from a TOML file (repeatable; --var wins).
    #[arg(long = "vars", value_name = "FILE")]
    pub vars_files: Vec<PathBuf>,
    /// Hosts file: [[hosts]] tables (see docs/inventory.md; `cairn inventory check FILE`).
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Use a lab's hosts, mirrors and cloud emulations (default lab: cairn).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "cairn")]
    pub lab: Option<String>,
    /// At most N hosts of an `on(...)` at once, unless the runbook's `on` sets
    /// `max_parallel` (default 32).
    #[arg(long, value_name = "N", env = "CAIRN_MAX_PARALLEL", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// Touch only these hosts: comma-separated inventory host names and group
    /// names (as Ansible's --limit). `hosts()` still lists every host; `on()`
    /// skips those outside the limit, and any step on one of them is an error.
    /// Recorded in the journal: `cairn resume` must give the same limit.
    #[arg(long, value_name = "NAMES|GROUPS")]
    pub limit: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply a runbook, journaling every step.
    Run {
        #[command(flatten)]
        target: Target,
        /// Apply exactly this saved plan (from `cairn plan -o`); refuse if anything drifted.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
    /// Show what a run would do, with diffs, changing nothing.
    /// Exit 0: nothing to change; 2: changes pending; 1: error.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Plan with no network at all; unknown values show as placeholders.
        #[arg(long)]
        offline: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Save the plan to apply it later with `cairn run --plan FILE`.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// List every unchanged (`= ok`) and verify line, not just their count
        /// per host (`-v` does too).
        #[arg(long)]
        show_unchanged: bool,
    },
    /// Continue a failed, interrupted or killed run where it stopped.
    Resume {
        /// The run (default: the last one that did not succeed).
        run_id: Option<String>,
        /// Resume even though the runbook changed since the run started
        /// (the journal records the version it continued with).
        #[arg(long)]
        force: bool,
        /// Give a secret parameter again (secrets are never journaled). Only
        /// secrets: a run keeps the values it started with.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Read secret parameters from a TOML file (only secrets, as --var).
        #[arg(long = "vars", value_name = "FILE")]
        vars_files: Vec<PathBuf>,
        /// At most N hosts of an `on(...)` at once, unless the runbook's `on` sets
        /// `max_parallel` (default 32).
        #[arg(long, value_name = "N", env = "CAIRN_MAX_PARALLEL", value_parser = clap::value_parser!(u32).range(1..))]
        max_parallel: Option<u32>,
        /// The run's own --limit, if it had one (another limit, or none, is
        /// refused before anything runs).
        #[arg(long, value_name = "NAMES|GROUPS")]
        limit: Option<String>,
    },
    /// List runs with their status; `runs show ID` lists a run's steps.
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
    },
    /// List the shipped runbooks and their versions.
    List,
    /// Describe a runbook: version, description, parameters.
    Show { runbook: String },
    /// List every function a runbook can call, with its documentation.
    Functions {
        /// Only functions whose name contains this.
        filter: Option<String>,
    },
    /// Write the function reference pages (one per primitive family) from
    /// the registered functions' doc comments.
    Docs {
        /// Where to write them.
        #[arg(long, default_value = "docs/primitives")]
        out: std::path::PathBuf,
    },
    /// Compile a runbook's scripts and validate its manifest; changes nothing.
    Check { path: String },
    /// Create a new runbook folder to start from.
    New { name: String },
    /// Validate an inventory file and print its hosts.
    Inventory {
        #[command(subcommand)]
        cmd: InventoryCommand,
    },
    /// The workspace's state: the team key for sealed secrets, the audit log.
    State {
        #[command(subcommand)]
        cmd: StateCommand,
    },
}

/// `cairn state ...`
#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Print a new random team key for CAIRN_STATE_KEY (the only command that
    /// ever prints a key).
    Keygen,
    /// Who ran what: every run, plan and resume of this workspace, oldest first.
    Log {
        /// One JSON array of the entries.
        #[arg(long)]
        json: bool,
    },
    /// Force the team lock of `--state` away from a holder that is gone:
    /// deletes it only if LOCK_ID is the current holder's (see the warning
    /// it prints).
    Unlock {
        /// The lock id, as the refused runner's error shows it.
        lock_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// The steps of one run (`last`: the newest); a failed run's error first.
    Show { id: String },
}

#[derive(Subcommand, Debug)]
pub enum InventoryCommand {
    /// Parse FILE, check every host and its key file, print every field.
    Check { file: PathBuf },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))
}

impl Cli {
    /// `--state` and its options, if given.
    fn state_options(&self) -> Option<std::sync::Arc<crate::state::StateOptions>> {
        let url = self.state.clone().filter(|u| !u.is_empty())?;
        Some(std::sync::Arc::new(crate::state::StateOptions {
            url,
            cacert: self.state_cacert.clone(),
            cert: self.state_cert.clone(),
            key: self.state_key.clone(),
            lock_ttl: self.state_lock_ttl,
        }))
    }
}

fn request(state_dir: PathBuf, t: Target) -> Request {
    Request {
        runbook: t.runbook,
        vars: t.vars,
        vars_files: t.vars_files,
        inventory: t.inventory,
        lab: t.lab,
        state_dir,
        max_parallel: t.max_parallel.map(|n| n as usize),
        limit: t.limit,
        ..Default::default()
    }
}

/// Logs on stderr: warnings, or debug logs (`verbose` 1) or trace logs (2);
/// `CAIRN_LOG` (an env filter) overrides.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "cairn=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The core's command line, to which the binary may add subcommands it runs
/// itself before calling [`run`].
pub fn command() -> clap::Command {
    Cli::command()
}

/// Run the core command that `matches` (parsed from [`command`]) names. A
/// command line that is not one of the core's exits with clap's usage error.
pub fn run(matches: &clap::ArgMatches) -> Result<Success, Error> {
    let cli = Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    let shared = cli.state_options();
    let state = cli.state_dir;
    match cli.command {
        Command::Run { target, plan } => {
            let mut req = request(state, target);
            req.shared = shared;
            req.approved_plan = plan;
            launch::run(&req)
        }
        Command::Plan {
            target,
            offline,
            json,
            out,
            show_unchanged,
        } => {
            let mut req = request(state, target);
            req.shared = shared;
            req.json = json;
            req.save_plan = out;
            req.show_unchanged = show_unchanged || cli.verbose > 0;
            launch::plan(&req, offline)
        }
        Command::Resume {
            run_id,
            force,
            vars,
            vars_files,
            max_parallel,
            limit,
        } => launch::resume(
            &state,
            &launch::ResumeRequest {
                id: run_id,
                force,
                vars,
                vars_files,
                max_parallel: max_parallel.map(|n| n as usize),
                limit,
                shared,
            },
        ),
        Command::Runs { show } => crate::state::runs::with_runs(&state, shared, |dir| match show {
            None => crate::runs::list(dir),
            Some(RunsCommand::Show { id }) => crate::runs::show(dir, &id),
        }),
        Command::List => crate::catalog::list(),
        Command::Show { runbook } => crate::catalog::show(&runbook),
        Command::Functions { filter } => Ok(crate::reference::print(filter.as_deref())),
        Command::Docs { out } => crate::docs::run(&out),
        Command::Check { path } => crate::catalog::check(&path),
        Command::New { name } => crate::catalog::scaffold(&name),
        Command::Inventory {
            cmd: InventoryCommand::Check { file },
        } => crate::inventory::check(&file),
        Command::State { cmd } => match cmd {
            StateCommand::Keygen => Ok(crate::seal::keygen()),
            StateCommand::Log { json } => match &shared {
                Some(opts) => crate::state::audit::log(opts, &state, json),
                None => crate::audit::log(&state, json),
            },
            StateCommand::Unlock { lock_id } => match &shared {
                Some(opts) => crate::state::unlock_command(opts, &state, &lock_id),
                None => Err(Error::input(
                    "--state",
                    "`cairn state unlock` needs --state (or CAIRN_STATE): the local \
                     workspace's lock is released by the kernel when its holder dies",
                )),
            },
        },
    }
}
