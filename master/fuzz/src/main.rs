//! `agora-fuzz`: runs the fuzz targets of `agora_fuzz` (see its crate documentation and
//! master/fuzz/README.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_fuzz::engine::{self, Options, Target};
use agora_fuzz::targets::{by_name, TARGETS};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agora-fuzz",
    about = "Structure-aware fuzzing of Agora's untrusted inputs (stable Rust, no instrumentation)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Fuzzes a target (or `all`, one after the other) until the time is up; stops at the
    /// first panic with the input in artifacts/<target>/crash-<hash>.
    Run {
        /// A target name, or `all`.
        target: String,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Corpus to start from (default master/fuzz/corpus/<target>; one target only).
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Where crashing and slow inputs go (default master/fuzz/artifacts/<target>).
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Seed of the mutations (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// After the run, write the smallest inputs covering every feature seen here as
        /// min-<hash> (removing older min-* files; one target only).
        #[arg(long)]
        minimize_into: Option<PathBuf>,
        /// Record every distinct crash and go on instead of stopping at the first.
        #[arg(long)]
        keep_going: bool,
        /// An input taking longer than this (ms) is written to artifacts as slow-<hash>.
        #[arg(long, default_value_t = 2000)]
        slow_ms: u64,
        /// Print a status line every this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        status_every: u64,
    },
    /// Runs the given inputs (files, or directories of them) once each: regressions.
    Replay {
        target: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print what each input means (the commands or messages it makes).
        #[arg(long)]
        describe: bool,
    },
    /// (Re)writes a target's committed seeds as seed-<name> (other files are kept).
    Seed {
        /// A target name, or `all`.
        #[arg(default_value = "all")]
        target: String,
        /// Directory to write into (default master/fuzz/corpus/<target>; one target only).
        #[arg(long)]
        into: Option<PathBuf>,
    },
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn targets(name: &str) -> Result<Vec<&'static Target>, String> {
    if name == "all" {
        return Ok(TARGETS.iter().collect());
    }
    by_name(name).map(|t| vec![t]).ok_or_else(|| {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        format!("no target {name:?}; targets: {}, all", names.join(", "))
    })
}

fn one_only(list: &[&Target], flag: &str, given: bool) -> Result<(), String> {
    if given && list.len() > 1 {
        return Err(format!("{flag} needs one target, not all"));
    }
    Ok(())
}

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agora-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Cmd::List => {
            for t in &TARGETS {
                println!("{:10} {}", t.name, t.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Seed { target, into } => {
            let list = targets(&target)?;
            one_only(&list, "--into", into.is_some())?;
            for t in list {
                let dir = into
                    .clone()
                    .unwrap_or_else(|| fuzz_dir().join("corpus").join(t.name));
                let n =
                    engine::write_seeds(t, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                println!("{}: wrote {n} seeds to {}", t.name, dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay {
            target,
            files,
            describe,
        } => {
            let t = by_name(&target).ok_or_else(|| format!("no target {target:?}"))?;
            engine::install_panic_hook();
            let mut inputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            for f in files {
                if f.is_dir() {
                    inputs.extend(engine::read_dir_files(&f));
                } else {
                    let data = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                    inputs.push((f, data));
                }
            }
            let mut failed = 0;
            for (path, data) in &inputs {
                if let (true, Some(describe)) = (describe, t.describe) {
                    println!("{}:\n{}", path.display(), describe(data));
                }
                match engine::execute(t, data) {
                    Ok(_) => println!("ok    {}", path.display()),
                    Err(crash) => {
                        failed += 1;
                        println!("CRASH {}\n{}", path.display(), crash.report.trim_end());
                    }
                }
            }
            println!("{}: {} inputs, {failed} crashed", t.name, inputs.len());
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Run {
            target,
            seconds,
            corpus,
            artifacts,
            seed,
            minimize_into,
            keep_going,
            slow_ms,
            status_every,
        } => {
            let list = targets(&target)?;
            one_only(&list, "--corpus", corpus.is_some())?;
            one_only(&list, "--artifacts", artifacts.is_some())?;
            one_only(&list, "--minimize-into", minimize_into.is_some())?;
            let seed = seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            engine::install_panic_hook();
            let mut crashed = false;
            for t in list {
                let opts = Options {
                    duration: Duration::from_secs(seconds),
                    seed,
                    corpus: corpus
                        .clone()
                        .unwrap_or_else(|| fuzz_dir().join("corpus").join(t.name)),
                    artifacts: artifacts
                        .clone()
                        .unwrap_or_else(|| fuzz_dir().join("artifacts").join(t.name)),
                    minimize_into: minimize_into.clone(),
                    keep_going,
                    slow: Duration::from_millis(slow_ms),
                    status_every: (status_every > 0).then(|| Duration::from_secs(status_every)),
                };
                println!(
                    "{}: fuzzing for {seconds} s from {} (seed {seed})",
                    t.name,
                    short(&opts.corpus)
                );
                let r = engine::run(t, &opts);
                println!(
                    "{}: {} execs in {:.1} s ({:.0} execs/s), corpus {}, {} features, {} slow, {} crashes",
                    t.name,
                    r.execs,
                    r.elapsed.as_secs_f64(),
                    r.execs_per_sec(),
                    r.corpus,
                    r.features,
                    r.slow,
                    r.crashes.len()
                );
                crashed |= !r.crashes.is_empty();
            }
            Ok(if crashed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// `path` relative to the current directory when it is under it.
fn short(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
