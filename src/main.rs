//! The `percore` binary: parse the command line, run it, turn an error into
//! one sentence on standard error and a non-zero exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    match percore::cli::run(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("percore: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
