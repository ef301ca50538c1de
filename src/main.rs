//! The forgectl binary: parses the command line and hands over to `forgectl::commands`.

mod cli;

use clap::{CommandFactory, Parser};
use forgectl::commands::{self, CommandError, ExecOptions, ExitCode, Membership, RunOptions};
use forgectl::engine::Selection;
use forgectl::inventory::{LoadError, ProviderKind, diagnostics};
use forgectl::output::{ColorChoice, Format, Options};
use forgectl::providers::local::Verb;
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // One TLS crypto provider for every client (etcd, later the Kubernetes API): aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = options(&cli.global);
    init_tracing(&opts);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            forgectl::errln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(ExitCode::Failed as u8);
        }
    };
    let code = match runtime.block_on(dispatch(cli.command, cli.global.file.clone(), &opts)) {
        Ok(code) => code,
        Err(e) => report(&e, &opts),
    };
    std::process::ExitCode::from(code as u8)
}

fn options(g: &cli::Global) -> Options {
    Options {
        format: match g.output {
            cli::OutputFormat::Text => Format::Text,
            cli::OutputFormat::Json => Format::Json,
        },
        color: match g.color {
            cli::Color::Auto => ColorChoice::Auto,
            cli::Color::Always => ColorChoice::Always,
            cli::Color::Never => ColorChoice::Never,
        },
        verbosity: g.verbose.min(3) as i8 - g.quiet.min(3) as i8,
        state_dir: g.state_dir.clone(),
        templates: g.templates.clone(),
    }
}

fn init_tracing(opts: &Options) {
    let level = match opts.verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORGECTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("forgectl={level}")));
    let ansi = forgectl::output::use_color(
        opts.color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

fn run_options(
    file: Option<PathBuf>,
    pb: Option<cli::PlaybookArgs>,
    yes: bool,
    dry_run: bool,
) -> RunOptions {
    let (playbook, selection) = match pb {
        Some(p) => (
            p.playbook,
            Selection {
                only: p.only,
                until: p.until,
            },
        ),
        None => ("down".to_string(), Selection::default()),
    };
    RunOptions {
        file,
        playbook,
        selection,
        yes,
        dry_run,
    }
}

async fn dispatch(
    cmd: cli::Command,
    file: Option<PathBuf>,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    use cli::Command as C;
    match cmd {
        C::Validate => commands::validate(file.as_deref(), opts),
        C::Plan { playbook } => {
            commands::plan(
                &run_options(file.clone(), Some(playbook), false, true),
                opts,
            )
            .await
        }
        C::Up {
            playbook,
            yes,
            dry_run,
        } => {
            commands::up(
                &run_options(file.clone(), Some(playbook), yes, dry_run),
                opts,
            )
            .await
        }
        C::Down { yes, dry_run } => {
            commands::down(&run_options(file.clone(), None, yes, dry_run), opts).await
        }
        C::Reset { yes, dry_run } => {
            let mut run = run_options(file.clone(), None, yes, dry_run);
            run.playbook = "reset".into();
            commands::reset(&run, opts).await
        }
        C::Upgrade { yes, dry_run } => {
            let mut run = run_options(file.clone(), None, yes, dry_run);
            run.playbook = "upgrade".into();
            commands::up(&run, opts).await
        }
        C::Node { verb } => match verb {
            cli::NodeVerb::Remove {
                name,
                drain_timeout,
                yes,
                dry_run,
            } => {
                let o = commands::RemoveOptions {
                    name,
                    drain_timeout,
                    yes,
                    dry_run,
                };
                commands::node_remove(file.as_deref(), &o, opts).await
            }
            cli::NodeVerb::Drain { name, timeout } => {
                let verb = commands::NodeVerb::Drain { name, timeout };
                commands::node(file.as_deref(), verb, opts).await
            }
            cli::NodeVerb::Uncordon { name } => {
                let verb = commands::NodeVerb::Uncordon { name };
                commands::node(file.as_deref(), verb, opts).await
            }
        },
        C::Render { playbook, out } => {
            commands::render(
                &run_options(file.clone(), Some(playbook), false, true),
                &out,
                opts,
            )
            .await
        }
        C::Init {
            provider,
            force,
            dir,
        } => {
            let kind = match provider {
                cli::Provider::Local => ProviderKind::Local,
                cli::Provider::Openstack => ProviderKind::Openstack,
                cli::Provider::Vagrant => ProviderKind::Vagrant,
                cli::Provider::Static => ProviderKind::Static,
            };
            commands::init(kind, &dir, force)
        }
        C::Schema => commands::schema(),
        C::Artifacts {
            verb: cli::ArtifactsVerb::List,
        } => commands::artifacts_list(file.as_deref(), opts),
        C::Artifacts {
            verb: cli::ArtifactsVerb::Fetch { to, images, arch },
        } => match images {
            true => commands::artifacts_fetch_images(file.as_deref(), &to, &arch, opts).await,
            false => commands::artifacts_fetch(file.as_deref(), &to, opts).await,
        },
        C::Certs {
            verb: cli::CertsVerb::Check,
        } => commands::certs_check(file.as_deref(), opts).await,
        C::Certs {
            verb: cli::CertsVerb::Renew { .. },
        } => commands::certs_renew(file.as_deref(), opts).await,
        C::Certs {
            verb: cli::CertsVerb::Recover { yes },
        } => commands::certs_recover(file.as_deref(), yes, opts).await,
        C::Status => commands::status(file.as_deref(), opts).await,
        C::Dashboard {
            kubeconfig,
            listen,
            ingress_metrics,
            no_etcd,
            certs_dir,
            print_rbac,
        } => {
            let d = commands::DashboardOptions {
                kubeconfig,
                listen,
                ingress_metrics,
                no_etcd,
                certs_dir,
                print_rbac,
            };
            commands::dashboard(file.as_deref(), &d, opts).await
        }
        C::Accounts {
            verb:
                cli::AccountsVerb::Sync {
                    dry_run,
                    allow_mass_removal,
                    kubeconfig,
                },
        } => {
            let a = commands::AccountsOptions {
                dry_run,
                allow_mass_removal,
                kubeconfig,
            };
            commands::accounts_sync(file.as_deref(), &a, opts).await
        }
        C::Accounts {
            verb:
                cli::AccountsVerb::Run {
                    kubeconfig,
                    listen,
                    interval,
                    lease_namespace,
                    lease_name,
                    identity,
                    lease_duration,
                },
        } => {
            let a = commands::AccountsRunOptions {
                kubeconfig,
                listen,
                interval,
                lease_namespace,
                lease_name,
                identity,
                lease_duration,
            };
            commands::accounts_run(file.as_deref(), &a, opts).await
        }
        C::Admission {
            verb:
                cli::AdmissionVerb::Serve {
                    listen,
                    cert,
                    key,
                    registries,
                    tool_domain,
                    namespace_prefix,
                },
        } => {
            let a = commands::AdmissionOptions {
                listen,
                cert,
                key,
                registries,
                tool_domain,
                namespace_prefix,
            };
            commands::admission_serve(file.as_deref(), &a, opts).await
        }
        C::Etcd {
            verb: cli::EtcdVerb::Status,
        } => commands::etcd_status(file.as_deref(), opts).await,
        C::Etcd {
            verb:
                cli::EtcdVerb::Snapshot {
                    verb: cli::SnapshotVerb::Save { path: out },
                },
        } => commands::etcd_snapshot_save(file.as_deref(), &out, opts).await,
        C::Etcd {
            verb:
                cli::EtcdVerb::Snapshot {
                    verb: cli::SnapshotVerb::Restore { path, yes },
                },
        } => commands::etcd_snapshot_restore(file.as_deref(), &path, yes, opts).await,
        C::Etcd {
            verb: cli::EtcdVerb::Replace { name, new_machine },
        } => {
            commands::etcd_membership(
                file.as_deref(),
                &Membership::Replace { name, new_machine },
                opts,
            )
            .await
        }
        C::Etcd {
            verb: cli::EtcdVerb::Add { name },
        } => commands::etcd_membership(file.as_deref(), &Membership::Add { name }, opts).await,
        C::Etcd {
            verb: cli::EtcdVerb::Remove { name },
        } => commands::etcd_membership(file.as_deref(), &Membership::Remove { name }, opts).await,
        C::Exec {
            hosts,
            timeout,
            sudo,
            command,
        } => {
            let e = ExecOptions {
                hosts,
                command: commands::exec_command_line(&command),
                timeout: timeout.map(std::time::Duration::from_secs),
                sudo,
            };
            commands::exec(file.as_deref(), &e, opts).await
        }
        C::Machines { verb } => {
            use cli::MachineVerb as M;
            let file = file.as_deref();
            let (name, v) = match verb {
                M::List => return commands::machines_list(file, opts).await,
                M::Stop { name } => (name, Verb::Stop),
                M::Start { name } => (name, Verb::Start),
                M::Kill { name } => (name, Verb::Kill),
                M::Freeze { name } => (name, Verb::Freeze),
                M::Thaw { name } => (name, Verb::Thaw),
                M::Cut { name } => (name, Verb::Cut),
                M::Heal { name } => (name, Verb::Heal),
            };
            commands::machines_apply(file, &name, v, opts).await
        }
        C::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "forgectl", &mut script);
            forgectl::out!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::Ok)
        }
    }
}

/// Prints an error for people (or as JSON) and returns its exit code.
fn report(e: &CommandError, opts: &Options) -> ExitCode {
    let code = e.exit_code();
    if opts.format == Format::Json {
        let doc = match e {
            CommandError::Inventory(LoadError::Invalid { input, diagnostics }) => {
                serde_json::json!({
                    "error": e.to_string(), "file": input.name, "diagnostics": diagnostics,
                })
            }
            _ => serde_json::json!({ "error": e.to_string(), "next_step": e.next_step() }),
        };
        forgectl::outln!("{doc}");
        return code;
    }
    let palette = commands::stderr_palette(opts);
    if let CommandError::Inventory(LoadError::Invalid {
        input,
        diagnostics: d,
    }) = e
    {
        forgectl::errout!(
            "{}",
            diagnostics::render(&input.name, &input.text, d, palette)
        );
    }
    forgectl::errln!("{}error{:#}: {e}", palette.error, palette.error);
    if let Some(next) = e.next_step() {
        forgectl::errln!("  = next: {next}");
    }
    code
}
