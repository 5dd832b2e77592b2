//! `facegate`: the command line of the operator interface in API.md.

mod backup_cmd;
mod batch_cmd;
mod tenants_cmd;
mod vision_cmds;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use facegate_core::SpoofCondition;
use facegate_models::provision::{self, InstallOptions};
use facegate_server::config::{resolve, LogFormat, TenantConfig};

type CmdResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "Self-hosted face recognition and liveness server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (installs the models first if they are missing).
    Serve {
        /// Config file; default `<data_dir>/facegate.toml`, created on first start.
        #[arg(long, env = "FACEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the server's routes (the same
    /// one it serves at /openapi.json), e.g. to generate a client.
    Openapi {
        /// Leave out /metrics, as a server with `metrics_listen` set does.
        #[arg(long)]
        no_metrics: bool,
        /// Leave out the console, as a server with `console = false` does.
        #[arg(long)]
        no_console: bool,
    },
    /// Manage the models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Detect faces in images and print the API's face details as JSON.
    Detect {
        /// Image files (PNG or JPEG).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Also run liveness.
        #[arg(long)]
        spoofing: bool,
        /// Liveness sensitivity (implies --spoofing).
        #[arg(long, value_enum)]
        spoofing_condition: Option<Condition>,
    },
    /// Similarity (0-100) of IMAGE_A's largest face to every face of IMAGE_B.
    Compare {
        /// Source image.
        image_a: PathBuf,
        /// Target image.
        image_b: PathBuf,
    },
    /// Manage tenants in the config file.
    Tenants {
        /// Config file to edit (default `<data_dir>/facegate.toml`).
        #[arg(long, env = "FACEGATE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Manage the master key.
    Keys {
        /// Config file (default `<data_dir>/facegate.toml`).
        #[arg(long, env = "FACEGATE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Enrol a folder of photos into a group of a running server (face API
    /// key from FACEGATE_API_KEY); re-running skips photos already added.
    Enroll {
        /// The photos (.jpg, .jpeg, .png): one sub-folder per person, or flat.
        dir: PathBuf,
        /// The group.
        #[arg(long)]
        group: String,
        /// Server URL (default: the config's `listen`).
        #[arg(long)]
        server: Option<String>,
        /// The appKey (default: the config's only tenant).
        #[arg(long)]
        app_key: Option<String>,
        /// Where each photo's externalImageId comes from.
        #[arg(long, value_enum, default_value = "auto")]
        external_id_from: batch_cmd::ExternalIdFrom,
        /// Concurrent requests (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Create the group if it does not exist.
        #[arg(long)]
        create_group: bool,
        /// Results file (default `<DIR>/facegate-enroll.csv`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Config file (for the defaults of --server and --app-key).
        #[arg(long, env = "FACEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Search a group of a running server with every photo of a folder;
    /// prints one line per photo with its best matches.
    SearchDir {
        /// The photos (.jpg, .jpeg, .png), at any depth.
        dir: PathBuf,
        /// The group.
        #[arg(long)]
        group: String,
        /// Server URL (default: the config's `listen`).
        #[arg(long)]
        server: Option<String>,
        /// The appKey (default: the config's only tenant).
        #[arg(long)]
        app_key: Option<String>,
        /// Matches per photo.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=4096))]
        limit: u32,
        /// Least similarity (0-100 scale) of a match.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
        threshold: u32,
        /// Output lines.
        #[arg(long, value_enum, default_value = "csv")]
        format: batch_cmd::OutputFormat,
        /// Concurrent requests (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Config file (for the defaults of --server and --app-key).
        #[arg(long, env = "FACEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write one group to an encrypted, checksummed backup file (only the
    /// master key of this data directory opens it).
    Export {
        /// The group.
        #[arg(long)]
        group: String,
        /// The backup file (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// The appKey (default: the config's only tenant).
        #[arg(long)]
        app_key: Option<String>,
        /// Config file (default `<data_dir>/facegate.toml`).
        #[arg(long, env = "FACEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Restore a group from a backup file made by `facegate export`.
    Import {
        /// The backup file.
        file: PathBuf,
        /// The new group's id (default: the exported group's); must not exist.
        #[arg(long)]
        group: Option<String>,
        /// The appKey (default: the exported group's, which must be a tenant
        /// of this config).
        #[arg(long)]
        app_key: Option<String>,
        /// The master key file of the server that exported the file, when it
        /// is not this config's (repeatable).
        #[arg(long = "master-key")]
        master_keys: Vec<PathBuf>,
        /// Config file (default `<data_dir>/facegate.toml`).
        #[arg(long, env = "FACEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download, verify and convert the models.
    Install {
        /// Model directory (default: the config's model_dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A directory or http(s) URL mirroring the upstream files.
        #[arg(long)]
        mirror: Option<String>,
        /// Also install ONNX Runtime's CUDA build and the CUDA 13 libraries
        /// it loads (about 2 GB, for `runtime = "cuda"`; needs the NVIDIA
        /// driver at run time, not at install time).
        #[arg(long)]
        gpu: bool,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Add a tenant with random keys (shown once).
    Add {
        /// The appKey (random when omitted).
        app_key: Option<String>,
    },
    /// List the appKeys (keys are not shown).
    List,
    /// Remove a tenant (its data stays in the database).
    Remove {
        /// The appKey.
        app_key: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored embedding under a new master key and install
    /// it; running servers switch keys by themselves and keep serving.
    Rotate {
        /// Only write the new key to `<master_key_file>.next` and stop. On
        /// several nodes, copy that file to every node, then run `keys
        /// rotate` on one of them, then on the others (which only install).
        #[arg(long)]
        prepare: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Condition {
    Weak,
    Balanced,
    Strict,
}

impl From<Condition> for SpoofCondition {
    fn from(c: Condition) -> Self {
        match c {
            Condition::Weak => SpoofCondition::Weak,
            Condition::Balanced => SpoofCondition::Balanced,
            Condition::Strict => SpoofCondition::Strict,
        }
    }
}

fn init_logging(format: LogFormat) {
    // FACEGATE_LOG=debug|info|warn|error; info by default.
    let level = std::env::var("FACEGATE_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colour codes only for a person at a terminal, not in log files.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // One object per line, the event's fields at the top level and
        // the request span's (request id, method, route) under "span".
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .try_init(),
    };
}

fn print_tenant_keys(t: &TenantConfig) {
    // Printed exactly once, at creation; never logged.
    println!("appKey:              {}", t.app_key);
    println!("face_api_key:        {}  (x-nhn-apikey)", t.face_api_key);
    println!(
        "liveness_secret_key: {}  (Authorization)",
        t.liveness_secret_key
    );
    println!("argos_api_key:       {}  (x-api-key)", t.argos_api_key);
}

/// The first start's message. On a terminal it shows the new tenant's
/// keys once. Anywhere else (a service manager's journal, a log file, a
/// pipe) it names only the config file, which holds the keys and is
/// readable by its owner alone (mode 0600): keys must not end up in logs.
fn announce_first_start(config: &Path, t: &TenantConfig, to_terminal: bool) {
    if to_terminal {
        println!(
            "First start: created {} with one tenant. Keep these keys; they are not shown again:",
            config.display()
        );
        print_tenant_keys(t);
    } else {
        println!(
            "First start: created {} (mode 0600) with one tenant, appKey {}. Its keys are in \
             that file; they are not printed because standard output is not a terminal.",
            config.display(),
            t.app_key
        );
    }
}

fn config_path(explicit: Option<PathBuf>) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = explicit.unwrap_or_else(facegate_server::default_config_path);
    if !path.exists() {
        return Err(format!(
            "no config file at {} (run `facegate serve` once to create one, or pass --config)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn serve(config: Option<PathBuf>) -> CmdResult {
    let loaded = facegate_server::load_or_init(config.as_deref())?;
    init_logging(loaded.config.log_format);
    if let Some(t) = &loaded.created_tenant {
        announce_first_start(&loaded.path, t, std::io::stdout().is_terminal());
    }
    let model_dir = loaded.config.model_dir();
    ensure_models(&model_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(facegate_server::serve(loaded.config, Some(loaded.path)));
    // The shutdown deadline has passed: work still running on the blocking
    // pool (an abandoned request's inference) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(())
}

fn ensure_models(model_dir: &Path) -> CmdResult {
    if provision::is_installed(model_dir) {
        return Ok(());
    }
    tracing::info!(dir = %model_dir.display(), "models missing; installing");
    provision::install(
        &InstallOptions {
            dir: model_dir.to_path_buf(),
            mirror: None,
        },
        &mut |line| tracing::info!("models: {line}"),
    )?;
    Ok(())
}

fn run(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Openapi {
            no_metrics,
            no_console,
        } => {
            let doc = facegate_server::openapi_document(facegate_server::PublicRoutes {
                metrics: !no_metrics,
                console: !no_console,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Models {
            command: ModelsCommand::Install { dir, mirror, gpu },
        } => {
            let dir = match dir {
                Some(d) => d,
                None => resolve(None)?.model_dir(),
            };
            vision_cmds::models_install(&dir, mirror, gpu)
        }
        Command::Detect {
            images,
            spoofing,
            spoofing_condition,
        } => {
            let config = resolve(None)?;
            let condition = match (spoofing, spoofing_condition) {
                (_, Some(c)) => Some(c.into()),
                (true, None) => Some(SpoofCondition::Balanced),
                (false, None) => None,
            };
            vision_cmds::detect(&config, &images, condition)
        }
        Command::Compare { image_a, image_b } => {
            let config = resolve(None)?;
            vision_cmds::compare(&config, &image_a, &image_b)
        }
        Command::Tenants { config, command } => {
            let path = config_path(config)?;
            match command {
                TenantsCommand::Add { app_key } => {
                    let t = facegate_server::add_tenant(&path, app_key)?;
                    println!(
                        "Added tenant to {}. Keep these keys; they are not shown again:",
                        path.display()
                    );
                    print_tenant_keys(&t);
                    eprintln!("A running server puts this in force within 2 s.");
                }
                TenantsCommand::List => {
                    let app_keys = facegate_server::list_tenants(&path)?;
                    for app_key in &app_keys {
                        println!("{app_key}");
                    }
                    let listen = facegate_server::config::Config::load(&path)?.listen;
                    eprintln!("{}", tenants_cmd::server_status(&listen, &app_keys));
                }
                TenantsCommand::Remove { app_key } => {
                    facegate_server::remove_tenant(&path, &app_key)?;
                    println!("Removed tenant {app_key}");
                    eprintln!("A running server puts this in force within 2 s.");
                }
            }
            Ok(())
        }
        Command::Keys {
            config,
            command: KeysCommand::Rotate { prepare },
        } => {
            let config = facegate_server::config::Config::load(&config_path(config)?)?;
            if prepare {
                let key_file = config.master_key_file();
                let (key, created) = facegate_server::keys::prepare_rotation(&key_file)?;
                println!(
                    "{} {} (key id {}).",
                    if created { "Wrote" } else { "Already there:" },
                    facegate_server::keys::next_key_path(&key_file).display(),
                    key.key_id()
                );
                return Ok(());
            }
            let report = facegate_server::rotate_keys(&config)?;
            if report.remaining == 0 {
                println!(
                    "Rotated the master key: {} records re-encrypted; {} now holds the new key.",
                    report.reencrypted,
                    config.master_key_file().display()
                );
            } else {
                println!(
                    "Rotation incomplete: {} records left; run `facegate keys rotate` again.",
                    report.remaining
                );
            }
            Ok(())
        }
        Command::Enroll {
            dir,
            group,
            server,
            app_key,
            external_id_from,
            jobs,
            create_group,
            out,
            config,
        } => {
            let config = resolve(config.as_deref())?;
            let target = batch_cmd::Target::resolve(&config, server, app_key, group)?;
            let summary = batch_cmd::enroll(
                target,
                batch_cmd::EnrollOptions {
                    dir,
                    external_id_from,
                    jobs: jobs.unwrap_or_else(default_jobs),
                    create_group,
                    out,
                },
            )?;
            println!(
                "{} faces added, {} images with no face, {} errors; {} already added before (skipped).",
                summary.added, summary.no_face, summary.errors, summary.skipped
            );
            if summary.errors > 0 {
                return Err(format!(
                    "{} images failed (recorded in the results file); run again to retry them",
                    summary.errors
                )
                .into());
            }
            Ok(())
        }
        Command::SearchDir {
            dir,
            group,
            server,
            app_key,
            limit,
            threshold,
            format,
            jobs,
            config,
        } => {
            let config = resolve(config.as_deref())?;
            let target = batch_cmd::Target::resolve(&config, server, app_key, group)?;
            let summary = batch_cmd::search_dir(
                target,
                batch_cmd::SearchOptions {
                    dir,
                    limit,
                    threshold,
                    jobs: jobs.unwrap_or_else(default_jobs),
                    format,
                },
                &mut std::io::stdout().lock(),
            )?;
            eprintln!(
                "{} images matched, {} matched nothing, {} with no face, {} errors.",
                summary.matched, summary.unmatched, summary.no_face, summary.errors
            );
            if summary.errors > 0 {
                return Err(format!("{} images failed", summary.errors).into());
            }
            Ok(())
        }
        Command::Export {
            group,
            out,
            app_key,
            config,
        } => {
            let config = facegate_server::config::Config::load(&config_path(config)?)?;
            backup_cmd::export(&config, &group, &out, app_key.as_deref())
        }
        Command::Import {
            file,
            group,
            app_key,
            master_keys,
            config,
        } => {
            let config = facegate_server::config::Config::load(&config_path(config)?)?;
            backup_cmd::import(
                &config,
                &file,
                group.as_deref(),
                app_key.as_deref(),
                &master_keys,
            )
        }
    }
}

/// Concurrent requests of `enroll` and `search-dir` by default.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate: {e}");
            ExitCode::FAILURE
        }
    }
}
