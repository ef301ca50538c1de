//! `forgectl exec`: run one command on many hosts over SSH.

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::executor::{ExecError, endpoints, ssh_settings};
use crate::output::{Format, Options};
use crate::playbook::{self, Step};
use crate::ssh::{Output, Pool};

/// What `exec` needs.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Host selectors (roles, names, `all`).
    pub hosts: Vec<String>,
    /// The command line the remote shell runs (see [`command_line`]).
    pub command: String,
    /// Per-host timeout.
    pub timeout: Option<Duration>,
    /// Run as root (sudo when the login user is not root).
    pub sudo: bool,
}

/// The remote shell line for `exec`'s arguments, as `kubectl exec` passes them: one argument
/// is a shell line (`forgectl exec -- 'cd /x && make'`); several are a command and its
/// arguments, each quoted so the remote shell hands them over intact
/// (`forgectl exec -- sh -c 'a; b'` runs `sh` with `-c` and `a; b`).
pub fn command_line(args: &[String]) -> String {
    match args {
        [line] => line.clone(),
        _ => args
            .iter()
            .map(|a| crate::ssh::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Runs the command on the selected hosts, prints each host's output with a prefix and a summary.
pub async fn exec(
    file: Option<&Path>,
    e: &ExecOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    let step = Step {
        phase: "exec".into(),
        hosts: if e.hosts.is_empty() {
            vec!["all".into()]
        } else {
            e.hosts.clone()
        },
    };
    let machines = playbook::select(&inv, "exec", &step)?;
    if machines.is_empty() {
        return Err(CommandError::Usage(format!(
            "--hosts {} matches no machine",
            e.hosts.join(",")
        )));
    }
    let dir = super::state_dir(&inv, opts)?;
    let mut settings =
        ssh_settings(&inv, &dir).map_err(|e| CommandError::Exec(ExecError::Ssh(e)))?;
    if let Some(t) = e.timeout {
        settings.command_timeout = t;
    }
    let limit = settings.command_timeout;
    let pool = Pool::new(settings);
    let eps = endpoints(&inv, &machines);
    let started = Instant::now();
    let results = pool
        .each(&eps, |s| {
            let cmd = if e.sudo {
                s.as_root(&e.command)
            } else {
                e.command.clone()
            };
            async move { s.exec_with(&cmd, None, limit).await }
        })
        .await;
    let wall = started.elapsed();
    pool.close().await;
    let failed = results
        .iter()
        .filter(|r| !r.result.as_ref().is_ok_and(Output::success))
        .count();
    match opts.format {
        Format::Json => {
            let hosts: Vec<_> = results
                .iter()
                .map(|r| match &r.result {
                    Ok(o) => json!({
                        "host": r.host, "exit_code": o.exit_code, "signal": o.signal,
                        "stdout": String::from_utf8_lossy(&o.stdout), "stderr": String::from_utf8_lossy(&o.stderr),
                        "ms": o.duration.as_secs_f64() * 1000.0,
                    }),
                    Err(err) => json!({ "host": r.host, "error": err.to_string(), "next_step": err.next_step() }),
                })
                .collect();
            crate::outln!(
                "{}",
                json!({ "hosts": hosts, "failed": failed, "wall_ms": wall.as_secs_f64() * 1000.0 })
            );
        }
        Format::Text => {
            let width = results
                .iter()
                .map(|r| r.host.len())
                .max()
                .unwrap_or(4)
                .max(4);
            for r in &results {
                if let Ok(o) = &r.result {
                    for line in String::from_utf8_lossy(&o.stdout).lines() {
                        crate::outln!("{:width$} | {line}", r.host);
                    }
                    for line in String::from_utf8_lossy(&o.stderr).lines() {
                        crate::outln!("{:width$} ! {line}", r.host);
                    }
                }
            }
            if opts.verbosity >= 0 {
                crate::outln!();
                crate::outln!("{:width$}  RESULT", "HOST");
                for r in &results {
                    let what = match &r.result {
                        Ok(o) if o.success() => {
                            format!("ok ({:.0} ms)", o.duration.as_secs_f64() * 1000.0)
                        }
                        Ok(o) => match (&o.exit_code, &o.signal) {
                            (Some(c), _) => {
                                format!("exit {c} ({:.0} ms)", o.duration.as_secs_f64() * 1000.0)
                            }
                            (None, Some(s)) => format!("killed by {s}"),
                            _ => "ended without status".into(),
                        },
                        Err(err) => format!("error: {err}"),
                    };
                    crate::outln!("{:width$}  {what}", r.host);
                }
                crate::outln!(
                    "{} host(s): {} ok, {failed} failed, {:.2} s",
                    results.len(),
                    results.len() - failed,
                    wall.as_secs_f64()
                );
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
}

#[cfg(test)]
mod command_line_tests {
    use super::command_line;

    /// What a real POSIX shell makes of `line`: the arguments `printf` gets, one a line.
    fn words(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("set -- {line}; printf '%s\\n' \"$@\""))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn several_arguments_reach_the_remote_command_intact() {
        let argv: Vec<String> = ["sh", "-c", "a; b", "it's", "$(x)", "*", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(words(&command_line(&argv)), argv);
    }

    #[test]
    fn one_argument_is_a_shell_line() {
        assert_eq!(
            command_line(&["echo a; echo b".to_string()]),
            "echo a; echo b"
        );
    }
}
