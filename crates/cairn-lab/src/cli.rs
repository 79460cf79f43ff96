//! The `cairn lab` subcommands. The `cairn` binary adds them to the core's
//! command line with [`add_to`] and runs them with [`run_matched`]; their
//! errors become [`cairn::error::Error::Lab`] (exit code from
//! `Error::exit_code`). It builds its own tokio runtime where it needs one.

use super::error::{LabError, Result};
use super::lifecycle;
use super::paths::paths;
use super::record::LabRecord;
use super::DEFAULT_LAB;
use clap::{FromArgMatches, Subcommand};
use std::time::{Duration, Instant};

/// `cairn lab`, the subcommand the binary adds to the core's commands.
#[derive(Subcommand, Debug, Clone)]
pub enum Lab {
    /// Real systemd hosts on this machine to rehearse runbooks on.
    Lab {
        #[command(subcommand)]
        cmd: LabCommand,
    },
}

/// `command` (the core's command line) with `cairn lab ...` added.
pub fn add_to(command: clap::Command) -> clap::Command {
    Lab::augment_subcommands(command)
}

/// Runs `cairn lab ...` if `matches` (of a command line from [`add_to`]) is
/// one; `None` for the core's commands.
pub fn run_matched(
    matches: &clap::ArgMatches,
) -> Option<std::result::Result<cairn::error::Success, cairn::error::Error>> {
    if !matches!(matches.subcommand(), Some(("lab", _))) {
        return None;
    }
    cairn::cli::init_logging(matches.get_count("verbose"));
    let Lab::Lab { cmd } = Lab::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    Some(run(cmd))
}

/// `cairn lab ...`
#[derive(Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Start a lab (or repair it): N Debian nodes with systemd and sshd, an
    /// apt and release mirror, cloud API emulations. Idempotent.
    Up {
        /// Number of nodes, named node-1..node-N.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Lab name (nodes are <node>.<name>.lab).
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
        /// Seconds to wait for all nodes to be ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Also start a TLS etcd for cairn's team state (`--state`) on the
        /// lab's gateway address, and print the values to use.
        #[arg(long)]
        state_etcd: bool,
    },
    /// Stop a lab and remove everything it created. Idempotent.
    Down {
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
    },
    /// Show a lab's nodes, their systemd state and memory, and its files.
    Status {
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
    },
    /// ssh into a node as root with the lab key (runs CMD if given).
    Ssh {
        /// Node name, e.g. node-1.
        node: String,
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
        /// Command to run instead of a login shell.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Power a node off or on, keeping its disk (fault tests).
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Build the cached base image and mirror content (once; --force rebuilds).
    Image {
        /// Rebuild even if the cache is complete (no lab may be up).
        #[arg(long)]
        force: bool,
    },
    /// Run the lab daemon (mirror and cloud emulation); started by `up`.
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
    },
}

/// `cairn lab node ...`
#[derive(Subcommand, Debug, Clone)]
pub enum NodeAction {
    /// Pull a node's plug: its network goes first (peers see silence, not a
    /// closed connection), then every process is killed without a shutdown.
    /// Its disk (/etc, /var/lib, host key) is kept for `poweron`.
    Poweroff {
        /// Node name, e.g. node-2.
        node: String,
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
    },
    /// Boot a powered-off node from its disk, with the same address and host
    /// key; waits until it answers ssh with systemd running.
    Poweron {
        /// Node name, e.g. node-2.
        node: String,
        #[arg(long, default_value = DEFAULT_LAB)]
        name: String,
        /// Seconds to wait for the node to be ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
}

/// Runs a lab command.
pub fn run(cmd: LabCommand) -> std::result::Result<cairn::error::Success, cairn::error::Error> {
    execute(cmd)?;
    Ok(cairn::error::Success::Done)
}

fn execute(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up {
            nodes,
            name,
            timeout,
            state_etcd,
        } => {
            let t0 = Instant::now();
            let st = lifecycle::up(&name, nodes, Duration::from_secs(timeout))?;
            let rec =
                LabRecord::load(&name)?.ok_or_else(|| LabError::lab(&name, "record vanished"))?;
            let p = paths(&name);
            let state = match state_etcd {
                true => Some(super::state_etcd::ensure(&p, &rec)?),
                false => None,
            };
            println!(
                "lab {name} is up: {} nodes on {} in {:.1} s",
                st.len(),
                super::naming::subnet(rec.subnet),
                t0.elapsed().as_secs_f64()
            );
            for n in &st {
                println!(
                    "  {:<12} {:<14} {:<28} {}",
                    n.name, n.address, n.fqdn, n.state
                );
            }
            println!("inventory: {}", p.inventory.display());
            println!("env:       {}", p.env.display());
            println!(
                "ssh:       cairn lab ssh --name {name} {}",
                st.first().map(|n| n.name.as_str()).unwrap_or("NODE")
            );
            if let Some(s) = &state {
                print!("{}", super::state_etcd::usage(s));
            }
            Ok(())
        }
        LabCommand::Down { name } => {
            let t0 = Instant::now();
            lifecycle::down(&name)?;
            println!(
                "lab {name} is down ({:.1} s); nothing left",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        LabCommand::Status { name } => {
            print!("{}", lifecycle::status(&name)?);
            Ok(())
        }
        LabCommand::Ssh { node, name, cmd } => ssh(&name, &node, &cmd),
        LabCommand::Node {
            action: NodeAction::Poweroff { node, name },
        } => {
            let t0 = Instant::now();
            lifecycle::power_off(&name, &node_key(&name, &node)?)?;
            println!(
                "{node} of lab {name} is powered off ({:.1} s); its disk is kept",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        LabCommand::Node {
            action:
                NodeAction::Poweron {
                    node,
                    name,
                    timeout,
                },
        } => {
            let t0 = Instant::now();
            let state = lifecycle::power_on(
                &name,
                &node_key(&name, &node)?,
                Duration::from_secs(timeout),
            )?;
            println!(
                "{node} of lab {name} is up again ({:.1} s): {state}",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        LabCommand::Image { force } => {
            super::prereq::check(true)?;
            let img = super::image::ensure(force)?;
            println!("image:  {}", img.rootfs.display());
            println!("mirror: {}", img.mirror.display());
            Ok(())
        }
        LabCommand::Serve { name } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| LabError::lab(&name, format!("cannot start tokio runtime: {e}")))?;
            rt.block_on(super::daemon::serve(&name))?;
            Ok(())
        }
    }
}

/// The name of the node `node` refers to (a node name, or a host name as
/// the inventory lists it); `node` itself if there is none, for the callee
/// to refuse.
fn node_key(lab: &str, node: &str) -> Result<String> {
    let rec = LabRecord::load(lab)?.ok_or_else(|| LabError::lab(lab, "is not up"))?;
    Ok(rec
        .find_node(node)
        .map_or_else(|| node.to_string(), |n| n.name.clone()))
}

fn ssh(lab: &str, node: &str, cmd: &[String]) -> Result<()> {
    let rec = LabRecord::load(lab)?.ok_or_else(|| LabError::lab(lab, "is not up"))?;
    let n = rec
        .find_node(node)
        .ok_or_else(|| LabError::node(lab, node, "no such node"))?;
    let options: &[&str] = if cmd.is_empty() { &["-t"] } else { &[] };
    let mut c = super::ssh::command_with(&paths(lab), &n.address, options);
    c.args(cmd);
    use std::os::unix::process::CommandExt;
    let e = c.exec();
    Err(LabError::Command {
        command: super::exec::describe(&c),
        detail: format!("cannot exec: {e}"),
    })
}
