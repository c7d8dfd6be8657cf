//! The `percore` command line: `serve` (the default) and `check-config`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::runtime::cpus::CpuList;

/// percore: a thread-per-core HTTP/1.1 and HTTP/2 server on `io_uring`.
#[derive(Debug, Parser)]
#[command(name = "percore", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the app (the default command).
    Serve(ServeArgs),
    /// Check a configuration file; print every problem with its key.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Check whether this host can run percore well (as configured).
    Doctor(ServeArgs),
}

/// Flags of `percore serve`; each overrides the environment and the file.
#[derive(Clone, Debug, Default, Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "PERCORE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, such as 127.0.0.1:8080 or [`::1`]:8080 (repeatable).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Number of shards (default: one per usable CPU).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// CPUs to run shards on, such as 1 or 0,2-3.
    #[arg(long, value_name = "LIST")]
    cpus: Option<CpuList>,
    /// Socket I/O path: uring (the shard's own ring) or glommio.
    #[arg(long, value_name = "PATH", value_parser = parse_io)]
    io: Option<crate::config::IoPath>,
    /// Log filter, such as info or percore=debug (overrides `RUST_LOG`).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Also serve HTTPS on 127.0.0.1:8443 (unless tls.listen is set) with a
    /// self-signed certificate made at start, for development.
    #[arg(long)]
    dev_tls: bool,
    /// Share the listen ports with the percore already serving them, for a
    /// zero-downtime upgrade: start the new one with --takeover, then stop
    /// the old one (SIGTERM).
    #[arg(long)]
    takeover: bool,
}

/// Runs the command line `args` (program name first) of the `percore`
/// binary, which serves the reference app.
///
/// # Errors
/// Whatever stopped the command; `main` prints it and exits non-zero.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    run_app(args, crate::reference::app)
}

/// Runs the command line `args` (program name first) with `app` as the
/// app `serve` serves: every command, flag, `PERCORE_*` variable and
/// configuration key of the `percore` binary, SIGHUP reload, `--dev-tls`
/// and `--takeover`, for your own service. `app` is called once, by the
/// commands that serve.
///
/// # Errors
/// Whatever stopped the command.
pub fn run_app<S: 'static>(
    args: impl IntoIterator<Item = OsString>,
    app: impl FnOnce() -> App<S>,
) -> Result<(), Error> {
    let mut args = args.into_iter().peekable();
    let mut command = Cli::command();
    if let Some(name) = args
        .peek()
        .and_then(|program| std::path::Path::new(program).file_stem())
        .and_then(|stem| stem.to_str())
        .filter(|stem| *stem != "percore")
    {
        // The binary's own name in help and usage (once per process).
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        command = command.name(name).bin_name(name);
    }
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        // `--help` and `--version` come as errors that go to standard output.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return Ok(());
        }
        Err(error) => return Err(Error::Usage(error.render().to_string())),
    };
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file, app),
        Some(Command::Serve(serve_args)) => serve_command(serve_args, app),
        Some(Command::Doctor(args)) => doctor(args),
        None => serve_command(cli.serve, app),
    }
}

/// The whole `percore` binary for your own app: runs the process's command
/// line with [`run_app`]; on an error prints one sentence (prefixed with
/// the binary's name) and returns its exit status.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     percore::main(|| percore::App::new().get("/", async || "hello"))
/// }
/// ```
pub fn main<S: 'static>(app: impl FnOnce() -> App<S>) -> std::process::ExitCode {
    let program = std::env::args_os()
        .next()
        .and_then(|program| {
            std::path::Path::new(&program)
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "percore".to_owned());
    match run_app(std::env::args_os(), app) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            std::process::ExitCode::from(error.exit_code())
        }
    }
}

fn check_config<S: 'static>(
    file: &std::path::Path,
    app: impl FnOnce() -> App<S>,
) -> Result<(), Error> {
    let config = Config::load(Some(file), std::iter::empty()).map_err(Error::Config)?;
    // The app's own verdict: its `[app]` settings, the built-in paths its
    // routes claim.
    crate::route::service::RouteService::from(app())
        .check(&config)
        .map_err(Error::Config)?;
    println!(
        "{}: ok ({} listen address(es))",
        file.display(),
        config.server.listen.len()
    );
    Ok(())
}

fn doctor(args: ServeArgs) -> Result<(), Error> {
    let (config, _) = configure(args, None)?;
    let findings = crate::doctor::examine(&config);
    for finding in &findings {
        println!("{} {}", finding.verdict, finding.text);
    }
    let failed = findings
        .iter()
        .filter(|f| f.verdict == crate::doctor::Verdict::Fail)
        .count();
    if failed > 0 {
        return Err(Error::Doctor(failed));
    }
    Ok(())
}

fn serve_command<S: 'static>(args: ServeArgs, app: impl FnOnce() -> App<S>) -> Result<(), Error> {
    let dev = if args.dev_tls {
        let dir = std::env::temp_dir().join(format!("percore-dev-tls-{}", std::process::id()));
        let (certificate, fingerprint) = crate::tls::dev_certificate(&dir)?;
        eprintln!(
            "percore: development TLS with a self-signed certificate for localhost and 127.0.0.1; SHA-256 fingerprint {fingerprint}"
        );
        Some(certificate)
    } else {
        None
    };
    let (config, filter) = configure(args.clone(), dev.as_ref())?;
    crate::observe::log::init(&filter);
    if args.log_level.is_some() || std::env::var("RUST_LOG").is_ok_and(|l| !l.is_empty()) {
        crate::observe::log::pin_filter();
    }
    // SIGHUP reads the same file, environment and flags again.
    app().serve_reloading(config, move || Ok(configure(args.clone(), dev.as_ref())?.0))
}

/// The configuration from file, environment and flags (and the development
/// certificate), and the log filter.
fn configure(
    args: ServeArgs,
    dev: Option<&crate::config::CertificateConfig>,
) -> Result<(Config, String), Error> {
    let flags = |config: &mut Config| {
        if !args.listen.is_empty() {
            config.server.listen.clone_from(&args.listen);
        }
        if args.shards.is_some() {
            config.server.shards = args.shards;
        }
        if args.cpus.is_some() {
            config.server.cpus.clone_from(&args.cpus);
        }
        if let Some(io) = args.io {
            config.server.io = io;
        }
        if args.takeover {
            config.server.takeover = true;
        }
        if let Some(certificate) = dev {
            if config.tls.listen.is_empty() {
                config.tls.listen = vec![SocketAddr::from(([127, 0, 0, 1], 8443))];
            }
            config.tls.certificate.insert(0, certificate.clone());
        }
    };
    let config = Config::load_with(args.config.as_deref(), std::env::vars(), flags)
        .map_err(Error::Config)?;
    let filter = match (args.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => level,
        (None, Ok(rust_log)) if !rust_log.is_empty() => rust_log,
        _ => config.log.level.clone(),
    };
    Ok((config, filter))
}

fn parse_io(text: &str) -> Result<crate::config::IoPath, String> {
    match text {
        "uring" => Ok(crate::config::IoPath::Uring),
        "glommio" => Ok(crate::config::IoPath::Glommio),
        _ => Err(format!("'{text}' is not an I/O path: use uring or glommio")),
    }
}
