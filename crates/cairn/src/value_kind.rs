//! Kinds of values that become names on hosts: host names, unit names,
//! paths and URLs. Each is checked where it enters cairn (a manifest
//! parameter of that type, an inventory, an environment variable), so a value
//! that would mean something else to a shell, systemd, a URL parser or a
//! certificate never gets as far as a command. The messages name the value;
//! the caller names where it came from.

/// A host name: dot-separated labels of letters, digits and `-` (not first
/// or last), each 1 to 63 characters, 253 in all.
pub fn hostname(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{}` is not a host name: {why}", shown(s)));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in s.strip_suffix('.').unwrap_or(s).split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, `-` and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with `-`");
        }
    }
    Ok(())
}

/// A host's name in an inventory (also an etcd member name and a certificate
/// CN in shipped runbooks): letters, digits, `-`, `_` and `.`, starting with
/// a letter or digit, at most 63 characters.
pub fn host_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a host name: use 1 to 63 letters, digits, `-`, `_` and `.`, starting with a letter or digit",
            shown(s)
        ))
    }
}

/// An address to reach a host at: an IP address or a host name.
pub fn address(s: &str) -> Result<(), String> {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    hostname(s).map_err(|_| {
        format!(
            "`{}` is not an address: give an IP address or a host name",
            shown(s)
        )
    })
}

/// A systemd unit name: letters, digits and `@._:-\`, not starting with `-`,
/// at most 255 characters.
pub fn unit(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a systemd unit name: use letters, digits and `@._:-`, not starting with `-`",
            shown(s)
        ))
    }
}

/// An absolute path on a host: `/` then components of letters, digits and
/// `._-+@%:,=`, none of them `.` or `..`, no empty ones, no trailing `/`.
pub fn path(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{}` is not a path: {why}", shown(s)));
    if !s.starts_with('/') {
        return bad("it must be absolute (start with `/`)");
    }
    if s == "/" {
        return Ok(());
    }
    if s.len() > 4096 {
        return bad("longer than 4096 characters");
    }
    for part in s[1..].split('/') {
        if part.is_empty() {
            return bad("it has an empty component (`//` or a trailing `/`)");
        }
        if part == "." || part == ".." {
            return bad("`.` and `..` components are not allowed");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@%:,=".contains(&b))
        {
            return bad("only letters, digits and `/._-+@%:,=` are allowed");
        }
    }
    Ok(())
}

/// An http or https URL with a host, made only of characters that mean the
/// same to a shell-free argument list, a URL parser and a human: no spaces,
/// quotes, `$`, backquotes, `\`, `<>{}|^` or control characters. The empty
/// string stands for "not given".
pub fn url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("`{}` is not a URL: {why}", shown(s)));
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "'\"$`\\<>{}|^".contains(*c))
    {
        return bad(&format!("it contains {c:?}"));
    }
    let parsed = match reqwest::Url::parse(s) {
        Ok(u) => u,
        Err(e) => return bad(&e.to_string()),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return bad("only http and https URLs are allowed");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return bad("it has no host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("credentials in a URL would be shown in plans: leave them out");
    }
    Ok(())
}

/// A release version: an optional `v`, then a digit, then letters, digits
/// and `.-+` (`3.5.1`, `v3.5.9`, `3.6.0-rc.1`), at most 64 characters.
pub fn version(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix('v').unwrap_or(s);
    let ok = s.len() <= 64
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
        && !rest.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a version: use digits, letters and `.-+` like 3.5.1 or v3.5.9",
            shown(s)
        ))
    }
}

/// A value for a message: control characters escaped, long ones cut.
fn shown(s: &str) -> String {
    let escaped: String = s.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() > 80 {
        format!("{}...", escaped.chars().take(77).collect::<String>())
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in ["node-1", "node-1.lab.example", "a", "x1.", "10-0-0-1"] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "n1;touch /tmp/x;:",
            "-n",
            "a..b",
            "a b",
            "$(id)",
            "a_b",
            "é",
        ] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(
            hostname("n1;touch /tmp/x;:").unwrap_err(),
            "`n1;touch /tmp/x;:` is not a host name: only letters, digits, `-` and dots are allowed"
        );
        assert!(host_label("node_1").is_ok());
        assert!(host_label("n1;touch /tmp/x;:").is_err());
        assert!(host_label("-x").is_err());
        assert!(address("10.0.0.1").is_ok() && address("::1").is_ok() && address("h.lab").is_ok());
        assert!(address("10.0.0.1;id").is_err());
    }

    #[test]
    fn units_paths_urls() {
        assert!(unit("etcd").is_ok() && unit("etcd@a.service").is_ok());
        assert!(unit("-x").is_err() && unit("etcd;id").is_err() && unit("").is_err());
        assert!(path("/etc/ssl/etcd").is_ok() && path("/").is_ok());
        for bad in [
            "etc",
            "/etc/../x",
            "/a//b",
            "/a/",
            "/x;touch /tmp/x;:",
            "/a\nb",
            "/$(id)",
        ] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            path("/a\nb").unwrap_err(),
            "`/a\\nb` is not a path: only letters, digits and `/._-+@%:,=` are allowed"
        );
        assert!(
            version("3.5.1").is_ok() && version("v3.5.9").is_ok() && version("3.6.0-rc.1").is_ok()
        );
        for bad in [
            "",
            "v",
            "x3",
            "3.5.1;touch /tmp/x;:",
            "3.5.1/../../x",
            "$(id)",
        ] {
            assert!(version(bad).is_err(), "{bad}");
        }
        assert!(url("https://github.com").is_ok() && url("http://10.0.0.1:7480").is_ok());
        assert!(url("").is_ok(), "empty: not given");
        for bad in [
            "http://x/$(touch /tmp/x)",
            "http://x/`id`",
            "ftp://x",
            "http://x/ a",
            "file:///etc/shadow",
            "http://u:p@x",
            "x",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}
