//! Remote primitives and the ssh pool against a real sshd on 127.0.0.1.
//!
//! The test sshd runs on this machine, so what a step writes "remotely" is
//! checked directly on the local file system.

mod common;

use common::{lab, sshd, Cairn};

use cairn::action::ActionKind;
use cairn::bundle::Bundle;
use cairn::error::StepError;
use cairn::host::Host;
use cairn::primitives::remote::*;
use cairn::ssh::Pool;
use cairn::step::{Ctx, Prepared, Validating};
use cairn::workspace::Workspace;
use sshd::Sshd;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct World {
    sshd: Sshd,
    ctx: Ctx,
    /// Where steps write (a temp folder on this machine, reached over ssh).
    dir: tempfile::TempDir,
    _ws: tempfile::TempDir,
}

fn ctx_with(ws: &Path, bundle: Bundle) -> Ctx {
    let workspace = Workspace::new(ws);
    Ctx {
        ssh: Pool::new(workspace.known_hosts()),
        workspace,
        http: reqwest::Client::new(),
        bundle: Arc::new(bundle),
        env: BTreeMap::new(),
    }
}

fn world_with(bundle: Bundle) -> World {
    let sshd = Sshd::start();
    let ws = tempfile::tempdir().unwrap();
    World {
        sshd,
        ctx: ctx_with(ws.path(), bundle),
        dir: tempfile::tempdir().unwrap(),
        _ws: ws,
    }
}

fn world() -> World {
    world_with(Bundle::default())
}

impl World {
    fn host(&self) -> Host {
        self.sshd.host()
    }
    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_string_lossy().into_owned()
    }
}

/// Prepare, apply when there is work, and return the actions and output.
async fn converge<S: Validating>(step: &S, ctx: &Ctx) -> (Vec<cairn::action::Action>, S::Output) {
    let Prepared {
        actions,
        predicted,
        work,
        ..
    } = step.prepare(ctx).await.expect("prepare");
    let output = match work {
        Some(work) => step.apply(ctx, work).await.expect("apply"),
        None => predicted,
    };
    (actions, output)
}

fn kinds(actions: &[cairn::action::Action]) -> Vec<ActionKind> {
    actions.iter().map(|a| a.kind).collect()
}

fn mode_of(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_and_share_one_connection() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let host = w.host();
    let out = w
        .ctx
        .ssh
        .exec(&host, "echo hi; echo err >&2; exit 3", None)
        .await
        .unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "err\n");

    let out = w
        .ctx
        .ssh
        .exec(&host, "wc -c", Some(b"12345"))
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "5");

    // Concurrent commands on one host share one master connection: the
    // server sees the same client address and port for all of them.
    let runs = (0..8).map(|_| w.ctx.ssh.exec(&host, "echo $SSH_CONNECTION", None));
    let outs = futures::future::join_all(runs).await;
    let seen: std::collections::BTreeSet<String> =
        outs.into_iter().map(|o| o.unwrap().stdout).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");

    // The host key was pinned in the workspace on first contact.
    let pinned = std::fs::read_to_string(w.ctx.workspace.known_hosts()).unwrap();
    assert!(
        pinned.contains(&format!("[127.0.0.1]:{}", w.sshd.port)),
        "{pinned}"
    );
    w.ctx.ssh.close_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn command_timeout_is_enforced() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let started = Instant::now();
    let err = w
        .ctx
        .ssh
        .exec_with(&w.host(), "sleep 30", None, Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StepError::Timeout { seconds: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sleep 30"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A command still running on a host — as one of a killed run keeps running
/// after cairn dies — holds the host's cairn lock: another cairn process's
/// commands wait for it instead of racing it, or fail naming the host when it
/// holds the lock too long, without having run.
#[tokio::test(flavor = "multi_thread")]
async fn commands_wait_for_a_command_still_running_on_the_host() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let f = w.dir.path().join("f");
    let gate = w.dir.path().join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success());

    // The "killed run": its command started, then blocks on the gate.
    let first = Arc::new(Pool::new(w._ws.path().join("a_known_hosts")));
    let host = w.host();
    let cmd = format!(
        "echo start > {f}; read x < {gate}; echo end >> {f}",
        f = f.display(),
        gate = gate.display()
    );
    let running = {
        let (first, host) = (first.clone(), host.clone());
        tokio::spawn(async move { first.exec(&host, &cmd, None).await })
    };
    // Opening the fifo for writing returns once the command is reading it,
    // that is once it holds the lock and has written `start`.
    let gate_path = gate.clone();
    let mut writer = tokio::task::spawn_blocking(move || std::fs::File::create(gate_path))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "start\n");

    // A run that may wait only one second is refused, its command not run.
    let impatient =
        Pool::new(w._ws.path().join("b_known_hosts")).with_lock_wait(Duration::from_secs(1));
    let err = impatient
        .exec(&host, &format!("echo impatient >> {}", f.display()), None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&host.name) && msg.contains("is busy"), "{msg}");
    assert!(
        msg.contains("echo impatient") && msg.contains("was not started"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "start\n");

    // The resumed run: its read waits for the running command to finish.
    let resumed = Pool::new(w._ws.path().join("c_known_hosts"));
    let read = {
        let host = host.clone();
        let f = f.clone();
        tokio::spawn(async move {
            let out = resumed
                .exec(&host, &format!("cat {}", f.display()), None)
                .await;
            resumed.close_all().await;
            out
        })
    };
    use std::io::Write;
    writer.write_all(b"go\n").unwrap();
    drop(writer);
    let done = running.await.unwrap().unwrap();
    assert_eq!(done.code, 0, "{done:?}");
    let out = read.await.unwrap().unwrap();
    assert_eq!(
        out.stdout, "start\nend\n",
        "the read raced the running command"
    );
    first.close_all().await;
    impatient.close_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_plans_guards_and_fails_loudly() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let host = w.host();
    let marker = w.path("marker");
    let cmd = format!("touch {marker}; echo made");
    let run = Run::new(
        host.clone(),
        &cmd,
        RunOptions {
            creates: Some(marker.clone()),
            ..Default::default()
        },
    );
    let p = run.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Run]);
    assert!(p.actions[0].what.contains("touch"), "{}", p.actions[0]);
    assert!(cairn::unknown::is_unknown(&p.predicted.stdout));
    assert!(
        !Path::new(&marker).exists(),
        "prepare must not run the command"
    );
    assert!(p.work.is_some());
    let out = run.apply(&w.ctx, ()).await.unwrap();
    assert_eq!(out.stdout, "made\n");

    let p = run.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Noop]);
    assert_eq!(
        p.actions[0].reason.as_deref(),
        Some(format!("{marker} exists").as_str())
    );
    assert!(p.work.is_none());

    let unless = Run::new(
        host.clone(),
        "false",
        RunOptions {
            unless: Some("true".into()),
            ..Default::default()
        },
    );
    let p = unless.prepare(&w.ctx).await.unwrap();
    assert_eq!(p.actions[0].reason.as_deref(), Some("`true` succeeded"));

    let failing = Run::new(host.clone(), "echo boom >&2; exit 7", RunOptions::default());
    let p = failing.prepare(&w.ctx).await.unwrap();
    assert!(p.work.is_some());
    let err = failing.apply(&w.ctx, ()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("local-sshd") && msg.contains("exited with 7"),
        "{msg}"
    );
    assert!(msg.contains("exit 7") && msg.contains("boom"), "{msg}");

    let allowed = Run::new(
        host.clone(),
        "cat; exit 7",
        RunOptions {
            allow_fail: true,
            stdin: Some("fed".into()),
            ..Default::default()
        },
    );
    let (_, out) = converge(&allowed, &w.ctx).await;
    assert_eq!((out.code, out.stdout.as_str()), (7, "fed"));
    // The journal key never holds stdin, only its hash.
    let args = serde_json::to_string(&allowed).unwrap();
    assert!(
        !args.contains("\"fed\"") && args.contains("sha256:"),
        "{args}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fact_reads_in_prepare_as_a_noop() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let fact = Fact::new(w.host(), "echo 42", FactOptions::default());
    let p = fact.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Noop]);
    assert_eq!(p.actions[0].what, "read `echo 42`");
    assert_eq!(p.predicted.stdout, "42\n");
    assert!(p.work.is_none());

    let failing = Fact::new(w.host(), "test -e /nonexistent", FactOptions::default());
    assert!(matches!(
        failing.prepare(&w.ctx).await,
        Err(StepError::Command { code: 1, .. })
    ));
    let allowed = Fact::new(
        w.host(),
        "test -e /nonexistent",
        FactOptions {
            allow_fail: true,
            ..Default::default()
        },
    );
    assert_eq!(allowed.prepare(&w.ctx).await.unwrap().predicted.code, 1);
}

fn file(host: Host, path: &str, content: &str) -> File {
    File {
        host,
        args: FileArgs {
            path: path.into(),
            content: content.into(),
            mode: None,
            owner: Some("root".into()),
            group: Some("root".into()),
            secret: false,
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_is_created_then_left_alone_then_changed_with_a_diff() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let path = w.path("etc/default/etcd");
    let step = file(w.host(), &path, "A=1\nB=2\n");

    // intent: a blank host gets the whole content
    let intent = step.intent().unwrap();
    assert_eq!(kinds(&intent.actions), [ActionKind::Create]);
    assert!(intent.actions[0]
        .diff
        .as_deref()
        .unwrap()
        .contains("+A=1\n+B=2\n"));

    let p = step.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Create]);
    assert_eq!(p.actions[0].what, format!("file {path} (0644 root:root)"));
    assert_eq!(
        p.actions[0].reason.as_deref(),
        Some("with its parent folders")
    );
    assert!(p.actions[0]
        .diff
        .as_deref()
        .unwrap()
        .contains("+A=1\n+B=2\n"));
    assert!(!Path::new(&path).exists(), "prepare must not write");
    let out = step.apply(&w.ctx, p.work.unwrap()).await.unwrap();
    assert_eq!((out.created, out.changed), (true, true));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=1\nB=2\n");
    assert_eq!(mode_of(&path), 0o644);
    // no temp files left next to it
    let names: Vec<_> = std::fs::read_dir(Path::new(&path).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["etcd"]);

    let p = step.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Noop]);
    assert_eq!(
        p.actions[0].reason.as_deref(),
        Some("content, mode and owner already match")
    );
    assert_eq!((p.predicted.created, p.predicted.changed), (false, false));
    assert!(p.work.is_none());

    let changed = file(w.host(), &path, "A=1\nB=3\n");
    let p = changed.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Change]);
    assert_eq!(p.actions[0].reason.as_deref(), Some("content"));
    let diff = p.actions[0].diff.clone().unwrap();
    assert!(diff.contains(" A=1\n-B=2\n+B=3\n"), "{diff}");
    let out = changed.apply(&w.ctx, p.work.unwrap()).await.unwrap();
    assert_eq!((out.created, out.changed), (false, true));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=1\nB=3\n");

    // mode drift alone is fixed in place, listed without a diff
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = changed.prepare(&w.ctx).await.unwrap();
    assert_eq!(p.actions[0].reason.as_deref(), Some("mode 0666 -> 0644"));
    assert_eq!(p.actions[0].diff, None);
    changed.apply(&w.ctx, p.work.unwrap()).await.unwrap();
    assert_eq!(mode_of(&path), 0o644);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_keys_are_written_0600_and_never_shown() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let path = w.path("server.key");
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKEYMATERIAL\n-----END PRIVATE KEY-----\n";
    let step = file(w.host(), &path, key);
    let p = step.prepare(&w.ctx).await.unwrap();
    assert_eq!(p.actions[0].what, format!("file {path} (0600 root:root)"));
    let diff = p.actions[0].diff.clone().unwrap();
    assert!(
        diff.starts_with("(content hidden) sha256 (none) -> "),
        "{diff}"
    );
    assert!(!format!("{:?}", p.actions).contains("KEYMATERIAL"));
    step.apply(&w.ctx, p.work.unwrap()).await.unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);

    // secret: true hides ordinary text too, also in the intent
    let mut token = file(w.host(), &w.path("token"), "s3cr3t-token\n");
    token.args.secret = true;
    let p = token.prepare(&w.ctx).await.unwrap();
    assert!(!format!("{:?}", p.actions).contains("s3cr3t"));
    assert!(!format!("{:?}", token.intent().unwrap().actions).contains("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_reads_the_runbook_folder_and_the_workspace_only() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("files/motd"), b"hello\n".to_vec());
    let w = world_with(Bundle::new("test-runbook", files));
    let upload = |src: &str, dest: &str| Upload {
        host: w.host(),
        args: UploadArgs {
            src: src.into(),
            dest: dest.into(),
            mode: None,
            owner: None,
            group: None,
            secret: false,
        },
    };

    let dest = w.path("motd");
    let step = upload("files/motd", &dest);
    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Create]);
    assert!(out.created);
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello\n");
    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Noop]);
    assert!(!out.changed);

    // absolute paths: inside the workspace only (a generated key here)
    let pki = w.ctx.workspace.pki_dir();
    std::fs::create_dir_all(&pki).unwrap();
    let key = pki.join("node.key");
    std::fs::write(
        &key,
        "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let dest_key = w.path("node.key");
    let (actions, _) = converge(&upload(key.to_str().unwrap(), &dest_key), &w.ctx).await;
    assert!(actions[0]
        .diff
        .as_deref()
        .unwrap()
        .starts_with("(content hidden)"));
    assert_eq!(mode_of(&dest_key), 0o600);

    let outside = upload("/etc/hostname", &w.path("x"));
    let err = outside.prepare(&w.ctx).await.err().unwrap();
    assert!(err.to_string().contains("outside the workspace"), "{err}");
    let escape = upload("../secret", &w.path("x"));
    let err = escape.prepare(&w.ctx).await.err().unwrap();
    assert!(
        err.to_string().contains("escapes the runbook folder"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_host_key_is_refused() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let mut w = world();
    let host = w.host();
    w.ctx.ssh.exec(&host, "true", None).await.unwrap();
    w.ctx.ssh.close_all().await;

    w.sshd.restart_with_new_host_key();
    let fresh = Pool::new(w.ctx.workspace.known_hosts());
    let err = fresh.exec(&host, "true", None).await.unwrap_err();
    match &err {
        StepError::HostKeyChanged {
            host, known_hosts, ..
        } => {
            assert_eq!(host, "local-sshd");
            assert_eq!(known_hosts, &w.ctx.workspace.known_hosts());
        }
        other => panic!("expected HostKeyChanged, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_host_fails_fast_with_its_name() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed once the listener is dropped
    let ws = tempfile::tempdir().unwrap();
    let mut host = Host::new("gone-1", "127.0.0.1");
    host.port = port;
    host.host_keys = cairn::host::HostKeys::Workspace;
    let pool = Pool::new(ws.path().join("known_hosts"));
    let started = Instant::now();
    let err = pool.exec(&host, "true", None).await.unwrap_err();
    assert!(started.elapsed() < cairn::ssh::CONNECT_TIMEOUT);
    match &err {
        StepError::Connect { host, message, .. } => {
            assert_eq!(host, "gone-1");
            assert!(message.contains("Connection refused"), "{message}");
        }
        other => panic!("expected Connect, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_readable_identity_file_is_refused_with_advice() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let key = w.dir.path().join("loose_key");
    std::fs::copy(w.sshd.client_key(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut host = w.host();
    host.key = Some(key);
    let err = w.ctx.ssh.exec(&host, "true", None).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StepError::Connect { .. }), "{msg}");
    assert!(
        msg.contains("mode 0644") && msg.contains("chmod 600"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_is_forwarded_over_the_connection() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = server.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = server.accept().await {
            let _ = s.write_all(b"hello from the host").await;
        }
    });
    let local = w
        .ctx
        .ssh
        .forward(&w.host(), &remote.to_string())
        .await
        .unwrap();
    assert_ne!(local.port(), remote.port());
    let again = w
        .ctx
        .ssh
        .forward(&w.host(), &remote.to_string())
        .await
        .unwrap();
    assert_eq!(local, again, "forwards are cached");
    let read = |addr: std::net::SocketAddr| async move {
        use tokio::io::AsyncReadExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        buf
    };
    assert_eq!(read(local).await, "hello from the host");

    // The connection dies (server side): asking again forwards over a new one.
    let _ = w.ctx.ssh.exec(&w.host(), "kill -9 $PPID", None).await;
    let renewed = w
        .ctx
        .ssh
        .forward(&w.host(), &remote.to_string())
        .await
        .unwrap();
    assert_eq!(read(renewed).await, "hello from the host");
}

fn dir_step(host: Host, path: &str, mode: &str) -> Dir {
    Dir {
        host,
        args: DirArgs {
            path: path.into(),
            mode: Some(mode.into()),
            owner: Some("root".into()),
            group: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dir_is_created_then_a_noop_then_its_mode_fixed() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let path = w.path("var/lib/etcd");
    let step = dir_step(w.host(), &path, "0700");
    assert_eq!(kinds(&step.intent().unwrap().actions), [ActionKind::Create]);
    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Create]);
    assert_eq!(actions[0].what, format!("dir {path} (0700 root:-)"));
    assert!(out.created);
    assert!(Path::new(&path).is_dir());
    assert_eq!(mode_of(&path), 0o700);

    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Noop]);
    assert!(!out.changed);

    let (actions, _) = converge(&dir_step(w.host(), &path, "0750"), &w.ctx).await;
    assert_eq!(actions[0].reason.as_deref(), Some("mode 0700 -> 0750"));
    assert_eq!(mode_of(&path), 0o750);

    // a file where a directory is wanted is an error, not a silent replace
    let file_path = w.path("plain");
    std::fs::write(&file_path, "x").unwrap();
    let err = dir_step(w.host(), &file_path, "0755")
        .prepare(&w.ctx)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// Serve `body` over HTTP on 127.0.0.1 (the test sshd's host is this machine).
async fn serve(body: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            });
        }
    });
    format!("http://{addr}/etcd.tar.gz")
}

fn sha256(bytes: &[u8]) -> String {
    cairn::primitives::remote::put::sha256_hex(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn download_is_verified_before_it_is_installed() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    const BODY: &[u8] = b"pretend this is etcd\n";
    let w = world();
    let url = serve(BODY).await;
    let dest = w.path("opt/etcd.tar.gz");
    let step = |sha: String| Download {
        host: w.host(),
        args: DownloadArgs {
            url: url.clone(),
            sha256: sha,
            dest: dest.clone(),
            mode: None,
            owner: None,
            group: None,
        },
    };

    let wrong = step("0".repeat(64));
    let p = wrong.prepare(&w.ctx).await.unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Create]);
    let err = wrong.apply(&w.ctx, p.work.unwrap()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains(&"0".repeat(64)), "{msg}");
    assert!(msg.contains(&sha256(BODY)), "{msg}");
    assert!(!Path::new(&dest).exists(), "nothing is put in place");
    let left: Vec<_> = std::fs::read_dir(Path::new(&dest).parent().unwrap())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "temp file removed: {left:?}");

    let right = step(sha256(BODY));
    let (actions, out) = converge(&right, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Create]);
    assert!(out.created);
    assert_eq!(std::fs::read(&dest).unwrap(), BODY);
    assert_eq!(mode_of(&dest), 0o644);
    let (actions, out) = converge(&right, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Noop]);
    assert_eq!(
        actions[0].reason.as_deref(),
        Some("already downloaded (sha256 matches)")
    );
    assert!(!out.changed);
}

/// `unpack` of an etcd-like `archive` into `opt/etcd` (first path component
/// stripped), told it creates `bin/etcd`: (step, dest, creates).
fn unpack_etcd(w: &World, archive: &str) -> (Unpack, String, String) {
    let dest = w.path("opt/etcd");
    let creates = format!("{dest}/bin/etcd");
    let step = Unpack {
        host: w.host(),
        args: UnpackArgs {
            archive: archive.to_string(),
            dest: dest.clone(),
            strip: Some(1),
            creates: Some(creates.clone()),
        },
    };
    (step, dest, creates)
}

#[tokio::test(flavor = "multi_thread")]
async fn unpack_extracts_once_when_told_what_it_creates() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let src = w.path("src/etcd-v3.5.1/bin");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(format!("{src}/etcd"), "#!/bin/sh\n").unwrap();
    let archive = w.path("etcd.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["-czf", &archive, "-C", &w.path("src"), "etcd-v3.5.1"])
        .status()
        .unwrap();
    assert!(status.success());

    let (step, _, creates) = unpack_etcd(&w, &archive);
    assert_eq!(kinds(&step.intent().unwrap().actions), [ActionKind::Create]);
    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Create]);
    assert!(out.created && out.changed);
    assert_eq!(std::fs::read_to_string(&creates).unwrap(), "#!/bin/sh\n");

    let (actions, out) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Noop]);
    assert_eq!(
        actions[0].reason.as_deref(),
        Some(format!("{creates} exists").as_str())
    );
    assert!(!out.changed);

    // a wrong `creates` is caught after extracting
    let wrong = Unpack {
        host: w.host(),
        args: UnpackArgs {
            archive,
            dest: w.path("opt/other"),
            strip: None,
            creates: Some(w.path("opt/other/bin/etcd")),
        },
    };
    let p = wrong.prepare(&w.ctx).await.unwrap();
    let err = wrong.apply(&w.ctx, p.work.unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("did not create"), "{err}");
}

/// `creates` only appears once the whole archive is in place: an extraction
/// that fails part-way (here a truncated archive, as a cut-off download or a
/// full disk would leave) leaves no `creates` for the next run to skip on, and
/// no staging folder behind.
#[tokio::test(flavor = "multi_thread")]
async fn unpack_puts_creates_in_place_last() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let src = w.path("src/etcd-v3.5.1/bin");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(format!("{src}/etcd"), "etcd\n").unwrap();
    // Incompressible, so truncating the .tar.gz cuts into this file.
    let big: Vec<u8> = (0..1_000_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(format!("{src}/zz-etcdutl"), &big).unwrap();
    let archive = w.path("etcd.tar.gz");
    let pack = || {
        // `creates` first in the archive, as etcd's tarball has `etcd` before `etcdutl`.
        let status = std::process::Command::new("tar")
            .args(["-czf", &archive, "-C", &w.path("src")])
            .args(["etcd-v3.5.1/bin/etcd", "etcd-v3.5.1/bin/zz-etcdutl"])
            .status()
            .unwrap();
        assert!(status.success());
    };
    pack();
    let full = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &full[..full.len() / 2]).unwrap();

    let (step, dest, creates) = unpack_etcd(&w, &archive);
    let p = step.prepare(&w.ctx).await.unwrap();
    let err = step.apply(&w.ctx, p.work.unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("unpack"), "{err}");
    assert!(
        !Path::new(&creates).exists(),
        "{creates} exists after a failed extraction: the next run would skip it"
    );
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cairn-unpack"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // With the whole archive, the next run extracts everything.
    pack();
    let (actions, _) = converge(&step, &w.ctx).await;
    assert_eq!(kinds(&actions), [ActionKind::Create]);
    assert_eq!(std::fs::read_to_string(&creates).unwrap(), "etcd\n");
    assert_eq!(
        std::fs::read(format!("{dest}/bin/zz-etcdutl")).unwrap(),
        big
    );
}

/// The Rhai functions, through the real binary: plan, run, plan again.
#[test]
fn a_runbook_drives_the_remote_primitives() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("target");
    let rb = work.path().join("rb");
    std::fs::create_dir_all(rb.join("files")).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"remote\"\nversion = \"1.0.0\"\ndescription = \"remote primitives\"\n",
    )
    .unwrap();
    std::fs::write(rb.join("files/motd"), "welcome\n").unwrap();
    let script = format!(
        r#"
let h = host(#{{ name: "local-sshd", address: "127.0.0.1", port: {port}, key: "{key}", host_keys: "workspace" }});
let root = "{root}";
let d = dir(h, #{{ path: `${{root}}/etc`, mode: "0750" }});
let f = file(h, #{{ path: `${{root}}/etc/app.conf`, content: "a=1\n" }});
let u = upload(h, #{{ src: "files/motd", dest: `${{root}}/motd` }});
let r = run(h, `touch ${{root}}/done`, #{{ creates: `${{root}}/done` }});
let who = fact(h, "id -un").stdout;
who.trim();
print(`user: ${{who}} file changed: ${{f.changed}} dir: ${{d}}`);
"#,
        port = sshd.port,
        key = sshd.client_key().display(),
        root = root.display(),
    );
    std::fs::write(rb.join("main.rhai"), script).unwrap();
    let cairn = |args: &[&str]| {
        let out = Cairn::new(work.path()).args(args).output();
        let text = common::text(&out);
        (out.status.code(), text)
    };

    let (code, plan) = cairn(&["plan", "rb", "--show-unchanged"]);
    assert_eq!(code, Some(2), "{plan}");
    assert!(
        plan.contains(&format!("dir {}/etc (0750)", root.display())),
        "{plan}"
    );
    assert!(plan.contains("+a=1"), "{plan}");
    assert!(plan.contains("run `touch"), "{plan}");
    assert!(plan.contains("read `id -un`"), "{plan}");
    assert!(!root.exists(), "a plan changes nothing");

    let (code, run) = cairn(&["run", "rb"]);
    assert_eq!(code, Some(0), "{run}");
    assert!(run.contains("user: root file changed: true"), "{run}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "a=1\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("motd")).unwrap(),
        "welcome\n"
    );
    assert!(root.join("done").exists());

    let (code, again) = cairn(&["plan", "rb"]);
    assert_eq!(code, Some(0), "{again}");
    assert!(
        again.contains("0 to create, 0 to change, 0 to delete, 0 to run"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_is_reopened_for_the_next_command() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let host = w.host();
    let first = w
        .ctx
        .ssh
        .exec(&host, "echo $SSH_CONNECTION", None)
        .await
        .unwrap();
    // Kill this connection's sshd process on the server side: the master dies.
    let _ = w.ctx.ssh.exec(&host, "kill -9 $PPID", None).await;
    let again = w
        .ctx
        .ssh
        .exec(&host, "echo $SSH_CONNECTION", None)
        .await
        .unwrap();
    assert_eq!(again.code, 0);
    assert_ne!(
        first.stdout, again.stdout,
        "a new connection (new client port)"
    );
}

/// apt's facts, read-only, from this machine's dpkg: installed packages are a
/// no-op, missing ones planned (nothing is installed here).
#[tokio::test(flavor = "multi_thread")]
async fn apt_plans_from_dpkg_facts() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let apt = |packages: &[&str]| Apt {
        host: w.host(),
        args: AptArgs {
            packages: packages.iter().map(|p| p.to_string()).collect(),
            update: AptUpdate::Never,
            version: None,
            hint: None,
            start_services: None,
        },
    };
    let p = apt(&["coreutils", "openssh-server"])
        .prepare(&w.ctx)
        .await
        .unwrap();
    assert_eq!(kinds(&p.actions), [ActionKind::Noop]);
    assert!(p.work.is_none());
    assert_eq!(p.predicted.installed, Vec::<String>::new());

    let p = apt(&["coreutils", "cairn-no-such-package"])
        .prepare(&w.ctx)
        .await
        .unwrap();
    let lines: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(lines, ["+ create apt package cairn-no-such-package"]);
    assert_eq!(p.predicted.installed, ["cairn-no-such-package"]);
}

/// Exit 127 (command not found) is an exit code like any other: with
/// `allow_fail` `fact` and `run` return it with the shell's message (the ssh
/// multiplexer alone would turn it into a transport error); without it the
/// error names host, command and 127. A stderr that merely looks like the
/// marker, or a plain `exit 127` in a subshell with `set -e`, changes nothing.
/// `$SSH_CONNECTION` of the pool's connection to the test sshd.
async fn connection_of(w: &World) -> String {
    let out = w
        .ctx
        .ssh
        .exec(&w.host(), "echo $SSH_CONNECTION", None)
        .await;
    out.unwrap().stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_127_is_returned_like_any_exit_code() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let allow = FactOptions {
        allow_fail: true,
        ..Default::default()
    };
    let missing = "cairn-no-such-command --version";
    let out = Fact::new(w.host(), missing, allow.clone())
        .prepare(&w.ctx)
        .await
        .unwrap()
        .predicted;
    assert_eq!(out.code, 127, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("cairn-no-such-command") && out.stderr.contains("not found"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("cairn: exit status"), "{out:?}");

    // the same connection still serves the next command
    let again = Fact::new(w.host(), "echo still here", allow.clone())
        .prepare(&w.ctx)
        .await
        .unwrap()
        .predicted;
    assert_eq!((again.code, again.stdout.as_str()), (0, "still here\n"));

    // Every primitive's commands get it, not only fact and run: the pool
    // itself returns 127 as an exit code and keeps its connection.
    let before = connection_of(&w).await;
    let raw = w.ctx.ssh.exec(&w.host(), missing, None).await.unwrap();
    assert_eq!(raw.code, 127, "{raw:?}");
    assert!(!raw.stderr.contains("cairn: exit status"), "{raw:?}");
    assert_eq!(
        connection_of(&w).await,
        before,
        "the connection was dropped"
    );

    // set -e, an explicit exit 127, output before it, and a timeout
    for (cmd, stdout) in [
        (
            "set -e; echo before; cairn-no-such-command; echo after",
            "before\n",
        ),
        ("echo out; exit 127", "out\n"),
    ] {
        for timeout in [None, Some(30)] {
            let opts = FactOptions {
                allow_fail: true,
                timeout,
            };
            let out = Fact::new(w.host(), cmd, opts)
                .prepare(&w.ctx)
                .await
                .unwrap()
                .predicted;
            assert_eq!((out.code, out.stdout.as_str()), (127, stdout), "{cmd}");
        }
    }

    let Err(err) = Fact::new(w.host(), missing, FactOptions::default())
        .prepare(&w.ctx)
        .await
    else {
        panic!("`{missing}` without allow_fail must fail");
    };
    assert!(
        matches!(&err, StepError::Command { code: 127, command, .. } if command == missing),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("local-sshd") && msg.contains("not found"),
        "{msg}"
    );

    let run = Run::new(
        w.host(),
        missing,
        RunOptions {
            allow_fail: true,
            ..Default::default()
        },
    );
    let out = run.apply(&w.ctx, ()).await.unwrap();
    assert_eq!(out.code, 127, "{out:?}");
    assert!(out.stderr.contains("not found"), "{out:?}");
    let err = Run::new(w.host(), missing, RunOptions::default())
        .apply(&w.ctx, ())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepError::Command { code: 127, .. }),
        "{err:?}"
    );

    // other codes and output pass through untouched, a lookalike of the
    // wrapper's marker included
    let out = Fact::new(
        w.host(),
        "printf 'x\\ncairn: exit status 127\\n' >&2; exit 0",
        allow,
    )
    .prepare(&w.ctx)
    .await
    .unwrap()
    .predicted;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, "x\ncairn: exit status 127\n")
    );
}

// ---- Defects of issue 12: links planted by another account, values that
// ---- would be code, and the host lock. The test sshd's host is this
// ---- machine, so "another account" is `nobody`.

const NOBODY: u32 = 65534;

fn own_by_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

fn owner_and_mode(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

/// Defect 1: a folder owned by another account holds a link where `dir`
/// wants a folder. Following it (as `stat -L` + `chown` did) gave that
/// account the folder the link points to. `dir` refuses it, names the link,
/// and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn dir_never_follows_a_link_planted_where_a_folder_belongs() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let victim = w.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = w.dir.path().join("opt-etcd");
    std::fs::create_dir(&service).unwrap();
    own_by_nobody(&service);
    let data = service.join("data");
    std::os::unix::fs::symlink(&victim, &data).unwrap();
    own_by_nobody(&data);

    let mut step = dir_step(w.host(), &data.to_string_lossy(), "0700");
    step.args.owner = Some("nobody".into());
    let err = step.prepare(&w.ctx).await.err().expect("a link is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("is a symlink") && msg.contains(&victim.display().to_string()),
        "{msg}"
    );
    assert_eq!(owner_and_mode(&victim), (0, 0o755), "the link was followed");
    assert!(std::fs::symlink_metadata(&data).unwrap().is_symlink());

    // A real folder in a folder of another account is fine: made and set
    // without following anything.
    std::fs::remove_file(&data).unwrap();
    let (_, out) = converge(&step, &w.ctx).await;
    assert!(out.created);
    assert_eq!(owner_and_mode(&data), (NOBODY, 0o700));
    assert_eq!(owner_and_mode(&victim), (0, 0o755));
}

/// Defect 5: a link at a file's path pointing at a secret file. The plan's
/// diff showed the secret's content (read through the link); now the plan
/// says the link is replaced, never reads through it, and the write puts a
/// new file in its place, leaving the secret as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_link_at_a_file_path_is_replaced_and_never_read_through() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let secret = w.dir.path().join("shadow");
    std::fs::write(&secret, "root:$6$SECRETHASH:19000::::::\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let etc = w.dir.path().join("etc-etcd");
    std::fs::create_dir(&etc).unwrap();
    own_by_nobody(&etc);
    let conf = etc.join("etcd.conf");
    std::os::unix::fs::symlink(&secret, &conf).unwrap();
    own_by_nobody(&conf);

    let mut step = file(w.host(), &conf.to_string_lossy(), "name: n1\n");
    step.args.owner = Some("nobody".into());
    let p = step.prepare(&w.ctx).await.unwrap();
    let shown = format!("{:?}", p.actions);
    assert!(!shown.contains("SECRETHASH"), "{shown}");
    assert_eq!(kinds(&p.actions), [ActionKind::Change]);
    assert_eq!(
        p.actions[0].reason.as_deref(),
        Some(format!("replace symlink → {}", secret.display()).as_str())
    );
    step.apply(&w.ctx, p.work.unwrap()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:$6$SECRETHASH:19000::::::\n"
    );
    assert_eq!(owner_and_mode(&secret), (0, 0o600), "the link was followed");
    assert!(!std::fs::symlink_metadata(&conf).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "name: n1\n");
    assert_eq!(owner_and_mode(&conf), (NOBODY, 0o644));
    // nothing left behind in the folder
    let names: Vec<_> = std::fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["etcd.conf"]);

    // A hard link to the secret (the other account could make one where
    // hard links are not protected) is hashed, never shown.
    std::fs::remove_file(&conf).unwrap();
    std::fs::hard_link(&secret, &conf).unwrap();
    let p = step.prepare(&w.ctx).await.unwrap();
    let shown = format!("{:?}", p.actions);
    assert!(!shown.contains("SECRETHASH"), "{shown}");
}

/// A folder on the way that another account may change could be swapped
/// for a link between the check and the write: writing below it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn writes_below_a_folder_another_account_controls_are_refused() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let theirs = w.dir.path().join("theirs");
    std::fs::create_dir_all(theirs.join("sub")).unwrap();
    own_by_nobody(&theirs);
    let target = theirs.join("sub/app.conf");
    let err = file(w.host(), &target.to_string_lossy(), "x\n")
        .prepare(&w.ctx)
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("is below {}", theirs.display())) && msg.contains("uid 65534"),
        "{msg}"
    );
    assert!(!target.exists());
}

/// Defect 2, runbook side: `run(h, [argv])` and `fact(h, [argv])` pass each
/// item as one argument, in plans and runs, whatever it holds.
#[test]
fn argument_lists_never_become_code() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("target");
    std::fs::create_dir_all(&root).unwrap();
    // Injected commands would run in root's home folder (the login's).
    let name = format!("cairn-argv-injected-{}", std::process::id());
    let marker = Path::new("/root").join(&name);
    let _ = std::fs::remove_file(&marker);
    let rb = work.path().join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"argv\"\nversion = \"1.0.0\"\ndescription = \"argv\"\n\
         [params.v]\ntype = \"string\"\nhelp = \"a value\"\nrequired = true\n",
    )
    .unwrap();
    let script = format!(
        r#"
let h = host(#{{ name: "local-sshd", address: "127.0.0.1", port: {port}, key: "{key}", host_keys: "workspace" }});
let seen = fact(h, ["printf", "[%s]", params.v]).stdout;
run(h, ["touch", "--", `{root}/${{params.v}}`], #{{ unless: ["test", "-e", `{root}/${{params.v}}`] }});
print(`seen: ${{seen}}`);
"#,
        port = sshd.port,
        key = sshd.client_key().display(),
        root = root.display(),
    );
    std::fs::write(rb.join("main.rhai"), script).unwrap();
    let m = &name;
    for hostile in [
        format!("x;touch {m};:"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("x'; touch {m}; '"),
        format!("a\ntouch {m}\n"),
    ] {
        for cmd in ["plan", "run"] {
            let out = Cairn::new(work.path())
                .args([cmd, "rb", "--var", &format!("v={hostile}")])
                .output();
            let text = common::text(&out);
            assert!(
                matches!(out.status.code(), Some(0 | 2)),
                "{cmd} {hostile:?}: {text}"
            );
            assert!(!marker.exists(), "{cmd} with {hostile:?} ran it: {text}");
            // printed lines sit under their section, each behind `  | `
            let printed = text.replace("\n  | ", "\n");
            assert!(printed.contains(&format!("seen: [{hostile}]")), "{text}");
        }
        assert!(root.join(&hostile).exists(), "one file named {hostile:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn argument_lists_are_checked_before_they_run() {
    use cairn::primitives::remote::run::argv_line;
    assert_eq!(
        argv_line(["echo".to_string(), "a b".into(), "$(x)".into()]).unwrap(),
        "echo 'a b' '$(x)'"
    );
    assert!(argv_line(Vec::<String>::new()).is_err());
    assert!(argv_line(["echo".to_string(), "a\0b".into()]).is_err());
}

/// Defect 4: the host lock was a world-writable `/run/lock` file any local
/// account could hold (stalling every cairn command for 15 minutes) or
/// replace with a link. It lives in root's own folder now, which no other
/// account can enter.
#[tokio::test(flavor = "multi_thread")]
async fn no_other_account_can_reach_the_host_lock() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    w.ctx.ssh.exec(&w.host(), "true", None).await.unwrap();
    let lock = Path::new(cairn::ssh::HOST_LOCK);
    let folder = lock.parent().unwrap();
    assert_eq!(owner_and_mode(folder), (0, 0o700), "{}", folder.display());
    assert_eq!(owner_and_mode(lock), (0, 0o600));
    // `nobody` can neither open the lock (to hold it) nor create it.
    let hold = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "flock", "-n"])
        .arg(lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(
        !hold.status.success(),
        "nobody could take the host lock {}",
        lock.display()
    );
    w.ctx.ssh.close_all().await;
}

/// The lock's folder is made safe whatever was planted there first: a link
/// (to a folder another account could then reach), a folder of another
/// account, a wide mode, a link as the lock file. Nothing the links point to
/// is touched.
#[tokio::test(flavor = "multi_thread")]
async fn the_lock_folder_is_repaired_and_links_are_never_followed() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let dir = format!("/run/cairn-test-{}", std::process::id());
    let lock_dir = Path::new(&dir);
    let elsewhere = w.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o777)).unwrap();
    let nologin = w.dir.path().join("nologin");

    // 1. a link where the folder belongs
    std::os::unix::fs::symlink(&elsewhere, lock_dir).unwrap();
    let pool = Pool::new(w._ws.path().join("kh1")).with_lock_dir(&dir);
    pool.exec(&w.host(), "true", None).await.unwrap();
    pool.close_all().await;
    assert!(!std::fs::symlink_metadata(lock_dir).unwrap().is_symlink());
    assert_eq!(owner_and_mode(lock_dir), (0, 0o700));
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "written through the link"
    );

    // 2. a folder another account owns, wide open, its lock file a link
    std::fs::remove_dir_all(lock_dir).unwrap();
    std::fs::create_dir(lock_dir).unwrap();
    std::fs::set_permissions(lock_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    own_by_nobody(lock_dir);
    std::os::unix::fs::symlink(&nologin, lock_dir.join("lock")).unwrap();
    own_by_nobody(&lock_dir.join("lock"));
    let pool = Pool::new(w._ws.path().join("kh2")).with_lock_dir(&dir);
    let out = pool.exec(&w.host(), "echo ran", None).await.unwrap();
    pool.close_all().await;
    assert_eq!(out.stdout, "ran\n");
    assert_eq!(owner_and_mode(lock_dir), (0, 0o700));
    assert_eq!(owner_and_mode(&lock_dir.join("lock")), (0, 0o600));
    assert!(
        !nologin.exists(),
        "the lock was opened through a planted link"
    );
    std::fs::remove_dir_all(lock_dir).unwrap();
}

/// A command that cannot get the lock in time names who holds it: the
/// holder's pid on the host, its program, the cairn process and since when.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_lock_names_its_holder() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let w = world();
    let dir = format!("/run/cairn-test-busy-{}", std::process::id());
    let gate = w.dir.path().join("gate");
    assert!(std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap()
        .success());
    let holder = Arc::new(Pool::new(w._ws.path().join("kh1")).with_lock_dir(&dir));
    let host = w.host();
    let cmd = format!("cat {}", gate.display());
    let running = {
        let (holder, host) = (holder.clone(), host.clone());
        tokio::spawn(async move { holder.exec(&host, &cmd, None).await })
    };
    let gate_path = gate.clone();
    let mut writer = tokio::task::spawn_blocking(move || std::fs::File::create(gate_path))
        .await
        .unwrap()
        .unwrap();
    let waiting = Pool::new(w._ws.path().join("kh2"))
        .with_lock_dir(&dir)
        .with_lock_wait(Duration::from_secs(1));
    let err = waiting.exec(&host, "echo late", None).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("was held for")
            && msg.contains("by pid ")
            && msg.contains("command `cat` of cairn pid ")
            && msg.contains(&format!("pid {}", std::process::id()))
            && msg.contains("since "),
        "{msg}"
    );
    assert!(msg.contains("`echo late` was not started"), "{msg}");
    use std::io::Write;
    writer.write_all(b"go\n").unwrap();
    drop(writer);
    running.await.unwrap().unwrap();
    holder.close_all().await;
    waiting.close_all().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
