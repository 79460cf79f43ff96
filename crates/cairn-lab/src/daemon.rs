//! The lab daemon, `cairn lab serve --name LAB`, started detached by `lab up`
//! (its pid is recorded; `lab down` stops it). It listens on the lab's
//! gateway address only:
//!
//! * port [`MIRROR_PORT`]: the image cache's mirror directory as static files
//!   (`/debian/...` apt repository, `/etcd-io/etcd/releases/download/...`),
//!   and `/healthz`;
//! * port [`CLOUD_PORT`]: the cloud API emulations from [`super::cloud_routes`]
//!   (`/v1` Hetzner, `/v2` DigitalOcean), given a [`LabState`].

use super::error::{LabError, Result};
use super::naming::{CLOUD_PORT, MIRROR_PORT};
use super::paths::{image_paths, LabPaths};
use super::process;
use super::record::LabRecord;
use super::state::LabState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The executable started as the daemon: `$CAIRN_LAB_EXE` if set (tests that
/// drive the library from another binary), else the running executable.
fn daemon_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_LAB_EXE") {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().map_err(LabError::io(
        "find the running executable",
        "/proc/self/exe",
    ))
}

/// Pids of lab `name`'s daemon processes.
pub fn pids(name: &str) -> Vec<u32> {
    let tail = format!(" lab serve --name {name}");
    process::find(|cl| cl.ends_with(&tail))
}

/// Starts the daemon unless it already answers; waits until it serves.
pub fn ensure_running(paths: &LabPaths, rec: &mut LabRecord) -> Result<()> {
    let gw = rec.gateway();
    if healthy(&gw, &rec.name) {
        if let Some(p) = pids(&rec.name).first() {
            rec.daemon_pid = Some(*p);
            return Ok(());
        }
    }
    stop(&rec.name, rec.daemon_pid);
    let exe = daemon_exe()?;
    let argv = vec![
        exe.display().to_string(),
        "lab".into(),
        "serve".into(),
        "--name".into(),
        rec.name.clone(),
    ];
    let pid = process::spawn_detached("", &argv, &paths.daemon_log)?;
    rec.daemon_pid = Some(pid);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if healthy(&gw, &rec.name) {
            return Ok(());
        }
        if !process::alive(pid) || Instant::now() >= deadline {
            stop(&rec.name, Some(pid));
            let log = std::fs::read_to_string(&paths.daemon_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(LabError::lab(
                &rec.name,
                format!(
                    "lab daemon `{}` (pid {pid}) did not start serving on {gw}:{MIRROR_PORT}; {}:\n{}",
                    argv.join(" "),
                    paths.daemon_log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether lab `name`'s daemon answers `/healthz` on `gw`.
pub fn healthy(gw: &str, name: &str) -> bool {
    let Ok(addr) = format!("{gw}:{MIRROR_PORT}").parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {gw}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    body.starts_with("HTTP/1.1 200") && body.ends_with(&format!("cairn lab {name}\n"))
}

/// Stops the daemon of lab `name` (recorded pid and any found by command line).
pub fn stop(name: &str, recorded: Option<u32>) {
    let mut ps = pids(name);
    if let Some(p) = process::verified(recorded, &["lab serve --name", name]) {
        if !ps.contains(&p) {
            ps.push(p);
        }
    }
    for p in &ps {
        process::signal(*p, libc::SIGTERM);
    }
    if !process::wait_gone(&ps, Duration::from_secs(5)) {
        for p in &ps {
            process::signal(*p, libc::SIGKILL);
        }
        process::wait_gone(&ps, Duration::from_secs(5));
    }
}

/// Runs the daemon of lab `name` until killed.
pub async fn serve(name: &str) -> Result<()> {
    let rec = LabRecord::load(name)?
        .ok_or_else(|| LabError::lab(name, "has no record; run `cairn lab up` first"))?;
    let gw = rec.gateway();
    let state = LabState::new(name)?;
    let mirror_root = Arc::new(image_paths().mirror);
    let lab_name = Arc::new(name.to_string());
    let mirror = Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let n = lab_name.clone();
                async move { format!("cairn lab {n}\n") }
            }),
        )
        .fallback(serve_file)
        .with_state(mirror_root);
    let cloud = Router::new().merge(super::cloud_routes(state));
    let bind = |port: u16| {
        let addr = format!("{gw}:{port}");
        async move {
            tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| LabError::lab(name, format!("cannot listen on {addr}: {e}")))
        }
    };
    let (m, c) = (bind(MIRROR_PORT).await?, bind(CLOUD_PORT).await?);
    eprintln!("cairn lab {name}: serving mirror on {gw}:{MIRROR_PORT}, cloud on {gw}:{CLOUD_PORT}");
    let a = tokio::spawn(async move { axum::serve(m, mirror).await });
    let b = tokio::spawn(async move { axum::serve(c, cloud).await });
    let r = tokio::select! { r = a => r, r = b => r };
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LabError::lab(name, format!("server failed: {e}"))),
        Err(e) => Err(LabError::lab(name, format!("server task failed: {e}"))),
    }
}

/// GET/HEAD of a file below the mirror root.
async fn serve_file(State(root): State<Arc<PathBuf>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(path) = resolve(&root, req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let len = bytes.len();
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(&path))
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Maps a URL path onto a regular file below `root`; refuses `..`, hidden
/// names and directories.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut p = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    p.is_file().then_some(p)
}

/// Decodes `%XX` escapes (apt sends `+` in versions as `%2b`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("gz") => "application/gzip",
        Some("deb") => "application/vnd.debian.binary-package",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_files_below_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("debian")).unwrap();
        std::fs::write(root.join("debian/etcd_3.4.23-4+b4_amd64.deb"), "x").unwrap();
        std::fs::write(root.join(".cairn-mirror"), "x").unwrap();
        assert_eq!(
            resolve(root, "/debian/./etcd_3.4.23-4%2bb4_amd64.deb"),
            Some(root.join("debian/etcd_3.4.23-4+b4_amd64.deb"))
        );
        assert_eq!(resolve(root, "/debian/../../etc/passwd"), None);
        assert_eq!(resolve(root, "/.cairn-mirror"), None);
        assert_eq!(resolve(root, "/debian"), None, "directories are not served");
        assert_eq!(resolve(root, "/debian/%zz"), None);
    }
}
