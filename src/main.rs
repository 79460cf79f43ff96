fn main() {
    // Die quietly on a closed pipe (`cairn show X | head`), as command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The one place an error becomes a process exit: rendered once, its code
    // from `Error::exit_code`.
    let code = match cli() {
        Ok(done) => done.exit_code(),
        Err(err) => {
            eprint!("{}", cairn::diagnostic::render(&err));
            err.exit_code()
        }
    };
    std::process::exit(code);
}

/// The core's commands, and `cairn lab ...` with the `lab` feature.
fn cli() -> Result<cairn::error::Success, cairn::error::Error> {
    let command = cairn::cli::command();
    #[cfg(feature = "lab")]
    let command = cairn_lab::cli::add_to(command);
    let matches = command.get_matches();
    #[cfg(feature = "lab")]
    if let Some(done) = cairn_lab::cli::run_matched(&matches) {
        return done;
    }
    cairn::cli::run(&matches)
}
