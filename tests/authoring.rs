//! Authoring without hosts, through the real binary: `cairn inventory check`
//! (every field, `key` relative to the inventory's folder, bad inventories
//! refused with the file and line), dates (`now()`, `days_until` on a
//! certificate's `not_after`), `warn()` in the summary without failing, and
//! `print()` under its section of a plan.

mod common;

use common::cairn;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn book(dir: &Path, name: &str, script: &str) {
    write(
        dir,
        &format!("{name}/runbook.toml"),
        &format!("name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"test\"\n"),
    );
    write(dir, &format!("{name}/main.rhai"), script);
}

const FULL_INVENTORY: &str = r#"[[hosts]]
name = "etcd-2"
address = "203.0.113.12"
private_address = "10.0.0.12"
fqdn = "etcd-2.example.net"
user = "admin"
port = 2222
key = "keys/id_test"
groups = ["etcd", "dc-1"]
labels = { rack = "r12", zone = "a" }
host_keys = "workspace"

[[hosts]]
name = "etcd-1"
address = "203.0.113.11"
"#;

#[test]
fn inventory_check_prints_every_field_with_the_key_relative_to_the_file() {
    let d = tempfile::tempdir().unwrap();
    let inv = write(d.path(), "site/hosts.toml", FULL_INVENTORY);
    let key = write(d.path(), "site/keys/id_test", "not really a key\n");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let o = cairn(d.path(), &["inventory", "check", "site/hosts.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(
        stdout(&o),
        "site/hosts.toml: 2 hosts\n\
         \n\
         etcd-2\n  \
           address          203.0.113.12\n  \
           private_address  10.0.0.12\n  \
           fqdn             etcd-2.example.net\n  \
           user             admin\n  \
           port             2222\n  \
           key              site/keys/id_test\n  \
           groups           etcd, dc-1\n  \
           labels           rack=r12, zone=a\n  \
           host_keys        workspace (pinned on first contact)\n\
         \n\
         etcd-1\n  \
           address          203.0.113.11\n  \
           private_address  -\n  \
           fqdn             -\n  \
           user             root\n  \
           port             22\n  \
           key              -\n  \
           groups           -\n  \
           labels           -\n  \
           host_keys        user (your ssh known_hosts)\n"
    );

    // the library agrees: the key is found from the file's folder, wherever cairn runs
    let hosts = cairn::launch::read_inventory(&inv).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hosts[0].key.as_deref(), Some(key.as_path()));
    assert!(hosts[0].key.as_deref().unwrap().exists());

    // a key others can read is refused, naming host, file and the fix
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = cairn(d.path(), &["inventory", "check", "site/hosts.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert_eq!(
        stderr(&o),
        "error: inventory site/hosts.toml: host `etcd-2`: key site/keys/id_test is readable by others \
         (mode 0644); ssh refuses it: run `chmod 600 site/keys/id_test`\n"
    );
}

#[test]
fn bad_inventories_are_refused_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[hosts]]\nname = \"a\"\nadress = \"10.0.0.1\"\n",
            "error: inventory hosts.toml: line 3, column 1: unknown field `adress`, expected one of \
             `name`, `address`, `private_address`, `fqdn`, `user`, `port`, `key`, `labels`, `groups`, `host_keys`\n",
        ),
        (
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n\n[[hosts]]\nname = \"a b\"\naddress = \"10.0.0.2\"\n",
            "error: inventory hosts.toml: line 5: [[hosts]] entry 2: name: `a b` is not a host name: \
             use 1 to 63 letters, digits, `-`, `_` and `.`, starting with a letter or digit\n",
        ),
        (
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 0\n",
            "error: inventory hosts.toml: line 1: host `a` has port 0\n",
        ),
        (
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[hosts]]\nname = \"a\"\naddress = \"10.0.0.2\"\n",
            "error: inventory hosts.toml: host name `a` appears twice\n",
        ),
        (
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\nkey = \"missing\"\n",
            "error: inventory hosts.toml: host `a`: key missing: No such file or directory (os error 2)\n",
        ),
    ];
    for (text, expected) in cases {
        write(d.path(), "hosts.toml", text);
        let o = cairn(d.path(), &["inventory", "check", "hosts.toml"]);
        assert_eq!(o.status.code(), Some(1), "{text}\n{}", all(&o));
        assert_eq!(stderr(&o), expected, "{text}");
    }
}

#[test]
fn days_until_a_certificate_expires_and_warn_in_the_summary() {
    let d = tempfile::tempdir().unwrap();
    book(
        d.path(),
        "dates",
        r#"let ca = gen_ca(#{ name: "soon", cn: "soon", key: "p256", days: 20, renew_before_days: 5 });
let t = now();
assert(t.add_days(1) > t && t.add_days(1) - t == 86400, "arithmetic");
assert(days_until(t.add_days(3)) == 2 || days_until(t.add_days(3)) == 3, "days_until(Timestamp)");
if is_known(ca.not_after) {
    let left = days_until(ca.not_after);
    print(`soon has ${left} days left`);
    if left < 30 { warn(`CA soon expires in ${left} days`); }
    assert(timestamp(ca.not_after) > now(), "compare");
}
"#,
    );
    let run = cairn(d.path(), &["run", "dates"]);
    assert_eq!(run.status.code(), Some(0), "{}", all(&run));
    let out = stdout(&run);
    // a certificate of 20 days has 19 whole days left a moment later
    assert!(out.contains("\nsoon has 19 days left\n"), "{out}");
    assert!(
        out.contains("\n! warning: CA soon expires in 19 days\n"),
        "{out}"
    );
    assert!(
        out.ends_with("1 warning:\n  CA soon expires in 19 days\n"),
        "{out}"
    );

    // the plan shows print and warning in the local section, and the warning
    // again after the summary; a warning changes nothing: exit 0
    let plan = cairn(d.path(), &["plan", "dates"]);
    assert_eq!(plan.status.code(), Some(0), "{}", all(&plan));
    assert_eq!(
        stdout(&plan),
        "Plan for dates 0.1.0\n\
         \n\
         local:\n  \
           | soon has 19 days left\n  \
           ! warning: CA soon expires in 19 days\n  \
           = 1 unchanged\n\
         \n\
         No changes.\n\
         Plan: 0 to create, 0 to change, 0 to delete, 0 to run, 1 unchanged, 0 to verify.\n\
         1 warning:\n  \
           CA soon expires in 19 days\n"
    );
}

#[test]
fn bad_dates_are_errors_at_their_line() {
    let d = tempfile::tempdir().unwrap();
    book(
        d.path(),
        "baddate",
        "let x = 1;\nlet left = days_until(\"next tuesday\");\n",
    );
    let o = cairn(d.path(), &["plan", "baddate"]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with("error: `next tuesday` is not a date and time in RFC 3339 form (like 2027-03-01T12:00:00Z)"),
        "{e}"
    );
    assert!(e.contains("baddate/main.rhai:2:"), "{e}");
}
