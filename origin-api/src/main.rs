//! The `origin-api` command line: parse, then call into the library. Every failure exits
//! non-zero with one line on standard error.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use origin_api::Config;

#[derive(Parser)]
#[command(
    name = "origin-api",
    version,
    about = "sessiongate origin: the authoritative session service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create an ADMIN (or promote an existing user); the password is read from stdin.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Delete expired sessions and print how many.
    Cleanup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc, not glibc's malloc. Its per-thread free lists take the many small allocations
/// of a request (hyper's buffers, header maps, boxed futures) off glibc's shared arenas,
/// where a fifth of the warm-verify CPU went (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`; BENCHMARKS.md). It also serves each argon2id hash's 19 MiB working area
/// from its own segment, returned to the system after a short delay once freed: glibc kept
/// those areas in whichever blocking-pool thread's heap ran the hash until its mmap
/// threshold was pinned (716 MiB resident after 540 hashes; the reliability suite's load
/// scenario bounds the peak).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    origin_api::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => origin_api::run(config).await,
            Command::Migrate => {
                origin_api::migrate(&config).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::CreateAdmin { email } => {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                let password = line.trim_end_matches(['\r', '\n']).to_owned();
                let created = origin_api::create_admin(&config, &email, password).await?;
                println!(
                    "{}",
                    if created {
                        "admin created"
                    } else {
                        "existing user promoted to admin"
                    }
                );
                Ok(())
            }
            Command::Cleanup => {
                let n = origin_api::cleanup_once(&config).await?;
                println!("{n}");
                Ok(())
            }
        }
    })
}
