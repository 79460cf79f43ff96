// Shipped runbooks and the stdlib (at the repository root) are embedded with
// include_dir: rebuild when any of their files change.
fn main() {
    println!("cargo:rerun-if-changed=../../runbooks");
    println!("cargo:rerun-if-changed=../../stdlib");
}
