//! `toolctl` (also `webservice` when called by that name): web services and jobs for tool
//! owners, run as the tool with the kubeconfig forgectl wrote into its home.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use forgectl::jobs::{self, Schedule};
use forgectl::tool_context::{ToolContext, ToolError};
use forgectl::webservice;

/// Web services and jobs of a tool, without Kubernetes YAML.
#[derive(Debug, Parser)]
#[command(name = "toolctl", version)]
struct Cli {
    /// The tool's kubeconfig [default: ~/.kube/config].
    #[arg(long, global = true, env = "TOOLCTL_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Output: text or json.
    #[arg(short, long, global = true, default_value = "text")]
    output: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The tool's web service at https://NAME.<tool domain>/:
    /// `webservice [TYPE] start|stop|restart|status|logs`.
    #[command(
        after_help = "Examples:\n  webservice python3.11 start\n  webservice status\n  webservice restart\n  webservice logs --tail 100\n  webservice stop"
    )]
    Webservice {
        /// [TYPE] ACTION: the image type (for start) and start, stop, restart, status or logs.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// How long start and restart wait until the service is ready.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Lines of log per pod (logs).
        #[arg(long)]
        tail: Option<i64>,
        /// Keep streaming the newest pod's log (logs).
        #[arg(short, long)]
        follow: bool,
    },
    /// One-off, scheduled and continuous jobs.
    #[command(
        after_help = "Examples:\n  toolctl jobs run update --image python3.11 --command './update.sh'\n  toolctl jobs run nightly --image python3.11 --command './backup.sh' --schedule '0 3 * * *'\n  toolctl jobs run bot --image python3.11 --command 'python3 bot.py' --continuous\n  toolctl jobs list\n  toolctl jobs logs update"
    )]
    Jobs {
        #[command(subcommand)]
        verb: JobsVerb,
    },
}

#[derive(Debug, Subcommand)]
enum JobsVerb {
    /// Start a job.
    Run {
        /// Its name.
        name: String,
        /// The image type.
        #[arg(long)]
        image: String,
        /// The command (run with /bin/sh -c in the tool's home).
        #[arg(long)]
        command: String,
        /// Run on this cron schedule.
        #[arg(long, conflicts_with = "continuous")]
        schedule: Option<String>,
        /// Keep it running (restarted when it ends).
        #[arg(long)]
        continuous: bool,
    },
    /// Every job of the tool.
    List,
    /// One job.
    Show {
        /// Its name.
        name: String,
    },
    /// Delete a job and its pods.
    Delete {
        /// Its name.
        name: String,
    },
    /// The logs of a job's pods.
    Logs {
        /// Its name.
        name: String,
        /// Lines per pod.
        #[arg(long)]
        tail: Option<i64>,
        /// Keep streaming the newest pod's log.
        #[arg(short, long)]
        follow: bool,
    },
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        forgectl::outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
        );
    } else {
        forgectl::out!("{}", text());
    }
}

fn status_text(s: &webservice::Status) -> String {
    if !s.running {
        return "no web service running\n".into();
    }
    format!(
        "web service ({}) {} ready, {}\n  {}\n",
        s.kind.as_deref().unwrap_or("?"),
        s.ready,
        s.url,
        s.objects.join(", ")
    )
}

async fn run(cli: Cli) -> Result<(), ToolError> {
    let json = cli.output == "json";
    let env_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let kubeconfig = cli
        .kubeconfig
        .clone()
        .unwrap_or_else(|| env_home.join(".kube/config"));
    // The tool is whoever owns the kubeconfig forgectl wrote into its home (so an admin running
    // toolctl with a tool's kubeconfig acts as that tool); its home is where that is.
    let meta = std::fs::metadata(&kubeconfig).map_err(|e| ToolError::Kubeconfig {
        path: kubeconfig.display().to_string(),
        cause: e.to_string(),
    })?;
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        (meta.uid(), meta.gid())
    };
    let home = kubeconfig
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == ".kube"))
        .and_then(|d| d.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or(env_home);
    let t = ToolContext::load(&kubeconfig, uid, gid, home).await?;
    match cli.command {
        Command::Webservice {
            args,
            wait,
            tail,
            follow,
        } => {
            let (kind, action) = match args.as_slice() {
                [action] => (None, action.as_str()),
                [kind, action] => (Some(kind.as_str()), action.as_str()),
                _ => return Err(ToolError::Usage("webservice [TYPE] ACTION".into())),
            };
            match action {
                "start" => {
                    let kind = match kind {
                        Some(k) => k.to_string(),
                        None => webservice::status(&t).await?.kind.ok_or_else(|| {
                            ToolError::Usage(format!(
                                "give the type: `webservice TYPE start` (types: {})",
                                t.images.keys().cloned().collect::<Vec<_>>().join(", ")
                            ))
                        })?,
                    };
                    let s = webservice::start(&t, &kind, wait).await?;
                    print(json, &s, || status_text(&s));
                }
                "stop" => {
                    let gone = webservice::stop(&t).await?;
                    print(json, &gone, || format!("stopped: {}\n", gone.join(", ")));
                }
                "restart" => {
                    let s = webservice::restart(&t, wait).await?;
                    print(json, &s, || status_text(&s));
                }
                "status" => {
                    let s = webservice::status(&t).await?;
                    print(json, &s, || status_text(&s));
                }
                "logs" if follow => webservice::follow(&t, tail, &mut tokio::io::stdout()).await?,
                "logs" => forgectl::out!("{}", webservice::logs(&t, tail).await?),
                other => {
                    return Err(ToolError::Usage(format!(
                        "unknown action {other:?}: start, stop, restart, status or logs"
                    )));
                }
            }
        }
        Command::Jobs { verb } => match verb {
            JobsVerb::Run {
                name,
                image,
                command,
                schedule,
                continuous,
            } => {
                let schedule = match (schedule, continuous) {
                    (Some(c), _) => Schedule::Cron(c),
                    (None, true) => Schedule::Continuous,
                    (None, false) => Schedule::Once,
                };
                let j = jobs::run(&t, &name, &image, &command, &schedule).await?;
                print(json, &j, || {
                    format!("started {} job {}\n", j.schedule, j.name)
                });
            }
            JobsVerb::List => {
                let all = jobs::list(&t).await?;
                print(json, &all, || {
                    let mut out = format!(
                        "{:<24} {:<11} {:<12} {}\n",
                        "NAME", "SCHEDULE", "TYPE", "STATE"
                    );
                    for j in &all {
                        out.push_str(&format!(
                            "{:<24} {:<11} {:<12} {}\n",
                            j.name, j.schedule, j.kind, j.state
                        ));
                    }
                    out
                });
            }
            JobsVerb::Show { name } => {
                let j = jobs::show(&t, &name).await?;
                print(json, &j, || {
                    format!(
                        "name: {}\nschedule: {}\ntype: {}\nimage: {}\ncommand: {}\nstate: {}\n",
                        j.name, j.schedule, j.kind, j.image, j.command, j.state
                    )
                });
            }
            JobsVerb::Delete { name } => {
                let d = jobs::delete(&t, &name).await?;
                print(json, &d, || format!("deleted {d}\n"));
            }
            JobsVerb::Logs { name, tail, follow } => {
                if follow {
                    jobs::follow(&t, &name, tail, &mut tokio::io::stdout()).await?;
                } else {
                    forgectl::out!("{}", jobs::logs(&t, &name, tail).await?);
                }
            }
        },
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args: Vec<String> = std::env::args().collect();
    // Called as `webservice`: the same as `toolctl webservice`.
    if args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "webservice")
    {
        args.insert(1, "webservice".into());
    }
    let cli = Cli::parse_from(args);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            forgectl::errln!("error: {e}");
            if let Some(n) = e.next_step() {
                forgectl::errln!("  = next: {n}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
