//! The `vagrant` provider: a Vagrantfile rendered from the inventory (libvirt or virtualbox), `vagrant
//! up --parallel` where the provider supports it, SSH endpoints from `vagrant ssh-config`, and
//! `vagrant destroy -f` on `down`.

use serde::Serialize;
use std::path::Path;

use crate::inventory::model::VagrantBackend;
use crate::inventory::{Loaded, ProviderKind};
use crate::render::{RenderError, Templates};

/// First host port for the machines' forwarded SSH ports (one per machine, in inventory order).
pub const FIRST_SSH_PORT: u16 = 2722;

/// Why Vagrant could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    /// The inventory does not use the vagrant provider.
    #[error("this inventory does not use the vagrant provider")]
    NotVagrant,
    /// A machine has no address.
    #[error("machine {0} needs an address (the VM's private network IP)")]
    NoAddress(String),
    /// The Vagrantfile could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// vagrant is missing.
    #[error(
        "vagrant is not installed (needed by the vagrant provider); install it from your distribution or HashiCorp, with the {plugin} provider"
    )]
    Missing {
        /// The provider plugin needed.
        plugin: String,
    },
    /// The provider plugin is missing.
    #[error("the vagrant plugin {0} is not installed; run `vagrant plugin install {0}`")]
    PluginMissing(String),
    /// A vagrant command failed.
    #[error("`{command}` failed: {cause}")]
    Command {
        /// The command.
        command: String,
        /// Its error output.
        cause: String,
    },
}

#[derive(Serialize)]
struct VmVars {
    name: String,
    address: String,
    ssh_port: u16,
}

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    r#box: &'a str,
    provider: &'a str,
    cpus: u32,
    memory_mb: u32,
    user: &'a str,
    public_key: &'a str,
    machines: Vec<VmVars>,
}

/// The Vagrantfile for `inv`, with `public_key` authorised for the SSH user on every VM.
pub fn vagrantfile(
    inv: &Loaded,
    templates: &Templates,
    public_key: &str,
) -> Result<String, VagrantError> {
    if inv.inventory.provider != ProviderKind::Vagrant {
        return Err(VagrantError::NotVagrant);
    }
    let v = inv.inventory.vagrant.clone().unwrap_or_default();
    let mut machines = Vec::new();
    for (i, m) in inv.machines.iter().enumerate() {
        let address = m
            .address
            .ok_or_else(|| VagrantError::NoAddress(m.name.clone()))?;
        machines.push(VmVars {
            name: m.name.clone(),
            address: address.to_string(),
            ssh_port: FIRST_SSH_PORT + i as u16,
        });
    }
    let vars = Vars {
        cluster: &inv.inventory.name,
        r#box: &v.box_name,
        provider: plugin_provider(v.provider),
        cpus: v.cpus,
        memory_mb: v.memory_mb,
        user: &inv.inventory.ssh.user,
        public_key: public_key.trim(),
        machines,
    };
    Ok(templates.render("vagrant/Vagrantfile.tera", &vars)?)
}

fn plugin_provider(b: VagrantBackend) -> &'static str {
    match b {
        VagrantBackend::Libvirt => "libvirt",
        VagrantBackend::Virtualbox => "virtualbox",
    }
}

/// One machine's SSH endpoint as `vagrant ssh-config` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshConfig {
    /// The VM's name (`Host`).
    pub host: String,
    /// `HostName`.
    pub hostname: String,
    /// `Port`.
    pub port: u16,
    /// `User`.
    pub user: String,
    /// `IdentityFile` (Vagrant's own key).
    pub identity_file: Option<String>,
}

/// Parses `vagrant ssh-config` output (one `Host` block per VM).
pub fn parse_ssh_config(text: &str) -> Vec<SshConfig> {
    let mut out: Vec<SshConfig> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.to_ascii_lowercase().as_str() {
            "host" => out.push(SshConfig {
                host: value,
                hostname: String::new(),
                port: 22,
                user: String::new(),
                identity_file: None,
            }),
            "hostname" => {
                if let Some(c) = out.last_mut() {
                    c.hostname = value;
                }
            }
            "port" => {
                if let Some(c) = out.last_mut() {
                    c.port = value.parse().unwrap_or(22);
                }
            }
            "user" => {
                if let Some(c) = out.last_mut() {
                    c.user = value;
                }
            }
            "identityfile" => {
                if let Some(c) = out.last_mut() {
                    c.identity_file.get_or_insert(value);
                }
            }
            _ => {}
        }
    }
    out
}

/// Checks that vagrant and the provider plugin are installed (a clear message if not).
pub async fn check_installed(inv: &Loaded) -> Result<(), VagrantError> {
    let backend = inv.inventory.vagrant.clone().unwrap_or_default().provider;
    let plugin = match backend {
        VagrantBackend::Libvirt => "vagrant-libvirt",
        VagrantBackend::Virtualbox => "virtualbox",
    };
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
    };
    if !on_path("vagrant") {
        return Err(VagrantError::Missing {
            plugin: plugin.into(),
        });
    }
    if backend == VagrantBackend::Libvirt {
        let out = tokio::process::Command::new("vagrant")
            .args(["plugin", "list"])
            .output()
            .await;
        let listed = out
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(plugin))
            .unwrap_or(false);
        if !listed {
            return Err(VagrantError::PluginMissing(plugin.into()));
        }
    } else if !on_path("VBoxManage") {
        return Err(VagrantError::Missing {
            plugin: plugin.into(),
        });
    }
    Ok(())
}

/// Where forgectl keeps a cluster's Vagrantfile (`STATE/CLUSTER/vagrant`).
pub fn dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("vagrant")
}

/// Renders the Vagrantfile into `STATE/CLUSTER/vagrant/` and runs `vagrant up` for `names`
/// (in parallel where the provider supports it). Checks that vagrant is installed first.
/// `templates` carries the `--templates` overrides.
pub async fn up(
    inv: &Loaded,
    templates: &Templates,
    state_dir: &Path,
    public_key: &str,
    names: &[String],
) -> Result<(), VagrantError> {
    check_installed(inv).await?;
    let text = vagrantfile(inv, templates, public_key)?;
    let d = dir(state_dir);
    let io = |e: std::io::Error| VagrantError::Command {
        command: format!("write {}", d.display()),
        cause: e.to_string(),
    };
    std::fs::create_dir_all(&d).map_err(io)?;
    std::fs::write(d.join("Vagrantfile"), text).map_err(io)?;
    let backend = inv.inventory.vagrant.clone().unwrap_or_default().provider;
    let mut args = vec![
        "up".to_string(),
        format!("--provider={}", plugin_provider(backend)),
    ];
    // VirtualBox cannot create machines in parallel.
    args.push(
        if backend == VagrantBackend::Libvirt {
            "--parallel"
        } else {
            "--no-parallel"
        }
        .into(),
    );
    args.extend(names.iter().cloned());
    run(&d, &args).await
}

/// `vagrant destroy -f` for the cluster, then its Vagrantfile directory. Nothing to do when forgectl
/// never made a Vagrantfile for it.
pub async fn destroy(inv: &Loaded, state_dir: &Path) -> Result<bool, VagrantError> {
    let d = dir(state_dir);
    if !d.join("Vagrantfile").exists() {
        return Ok(false);
    }
    check_installed(inv).await?;
    run(&d, &["destroy".to_string(), "-f".to_string()]).await?;
    let _ = std::fs::remove_dir_all(&d);
    Ok(true)
}

async fn run(cwd: &Path, args: &[String]) -> Result<(), VagrantError> {
    let shown = format!("vagrant {}", args.join(" "));
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        tokio::process::Command::new("vagrant")
            .args(args)
            .env("VAGRANT_CWD", cwd)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| VagrantError::Command {
        command: shown.clone(),
        cause: "did not finish within an hour".into(),
    })?
    .map_err(|e| VagrantError::Command {
        command: shown.clone(),
        cause: e.to_string(),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(10).collect();
        return Err(VagrantError::Command {
            command: shown,
            cause: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}
