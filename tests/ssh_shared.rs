//! Shared ssh masters (`Pool::shared`): the next cairn process reuses a
//! run's master instead of logging in again, host keys stay checked per
//! known_hosts file, a dead master is replaced, and a process's port forwards
//! are closed when it is done.

mod common;

use common::{lab, sshd};

use cairn::ssh::Pool;
use sshd::Sshd;
use std::path::Path;
use std::time::Duration;

/// `$SSH_CONNECTION` as the server sees it: the client's source port tells
/// which master connection a command came over.
async fn connection(pool: &Pool, host: &cairn::host::Host) -> String {
    let out = pool.exec(host, "echo $SSH_CONNECTION", None).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// The master sockets in `dir` (lock files aside).
fn sockets(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none())
        .collect()
}

/// Ask every master in `dir` to exit.
fn exit_masters(dir: &Path) {
    for p in sockets(dir) {
        let _ = std::process::Command::new("ssh")
            .arg("-S")
            .arg(&p)
            .args(["-O", "exit", "unused"])
            .output();
    }
}

/// SIGKILL every master in `dir`, leaving their socket files behind.
fn kill_masters(dir: &Path) {
    for p in sockets(dir) {
        let out = std::process::Command::new("ssh")
            .arg("-S")
            .arg(&p)
            .args(["-O", "check", "unused"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        let pid = text
            .split("pid=")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|p| p.parse::<i32>().ok());
        let pid = pid.unwrap_or_else(|| panic!("no live master at {}: {text}", p.display()));
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(p.exists(), "the killed master's socket stays behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_process_reuses_a_live_master_and_replaces_a_dead_one() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let sshd = Sshd::start();
    let host = sshd.host();
    let ws = tempfile::tempdir().unwrap();
    let masters = tempfile::tempdir().unwrap();
    let kh = ws.path().join("known_hosts");
    let shared = |kh: &Path| {
        Pool::shared(
            kh.to_path_buf(),
            masters.path().to_path_buf(),
            Duration::from_secs(60),
        )
    };

    // A run: one connection, a forward, then the process ends.
    let first = shared(&kh);
    let conn1 = connection(&first, &host).await;
    let forwarded = first
        .forward(&host, &format!("127.0.0.1:{}", sshd.port))
        .await
        .unwrap();
    assert!(std::net::TcpStream::connect(forwarded).is_ok());
    first.close_all().await;
    drop(first);
    // Its forward is gone with it; its master is not.
    assert!(
        std::net::TcpStream::connect(forwarded).is_err(),
        "a finished process's forward still listens on {forwarded}"
    );

    // The next run on the same hosts and workspace rides the same master.
    let second = shared(&kh);
    assert_eq!(connection(&second, &host).await, conn1);
    second.close_all().await;
    drop(second);

    // Another workspace's known_hosts: its own master, its own pin.
    let other_kh = ws.path().join("other_known_hosts");
    let other = shared(&other_kh);
    assert_ne!(connection(&other, &host).await, conn1);
    let pinned = std::fs::read_to_string(&other_kh).unwrap();
    assert!(
        pinned.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{pinned}"
    );
    other.close_all().await;
    drop(other);

    // A master that died without cleaning up (killed; its socket file is
    // left behind) is replaced.
    kill_masters(masters.path());
    let third = shared(&kh);
    let conn3 = connection(&third, &host).await;
    assert_ne!(conn3, conn1, "a dead master was not replaced");
    third.close_all().await;
    drop(third);
    exit_masters(masters.path());
}
