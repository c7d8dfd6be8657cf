//! The `percore` binary: the reference app behind percore's command line
//! (`percore::main` turns an error into one sentence on standard error and
//! a non-zero exit).

use std::process::ExitCode;

fn main() -> ExitCode {
    percore::main(percore::reference::app)
}
