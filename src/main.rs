fn main() {
    // Die quietly on a closed pipe (`cairn show X | head`), as command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The one place an error becomes a process exit: rendered once, its code
    // from `Error::exit_code`.
    let code = match cairn::cli::main() {
        Ok(done) => done.exit_code(),
        Err(err) => {
            eprint!("{}", cairn::diagnostic::render(&err));
            err.exit_code()
        }
    };
    std::process::exit(code);
}
