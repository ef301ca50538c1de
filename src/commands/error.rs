//! Command errors: one type the CLI renders for people, with the next step, and exit codes.

use crate::engine::EngineError;
use crate::inventory::LoadError;
use crate::playbook::PlaybookError;
use crate::render::RenderError;
use crate::state::StateError;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done.
    Ok = 0,
    /// Something failed while working.
    Failed = 1,
    /// The input (inventory, playbook, flags) is invalid; nothing was changed.
    Invalid = 2,
    /// The run stopped before a phase this build cannot run yet.
    Incomplete = 3,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The inventory could not be loaded (diagnostics are rendered by the caller).
    #[error(transparent)]
    Inventory(#[from] LoadError),
    /// Planning failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A playbook is unusable.
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// Templates are unusable.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The state directory is unusable or locked.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Approval is needed and could not be asked.
    #[error("refusing to change the cluster without approval")]
    NotApproved,
    /// The user said no.
    #[error("not approved; nothing was changed")]
    Declined,
    /// A target already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The command line asks for something that does not fit.
    #[error("{0}")]
    Usage(String),
    /// Carrying out an action failed.
    #[error(transparent)]
    Exec(#[from] crate::executor::ExecError),
    /// The admission webhook server failed.
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
    /// The account provisioner failed.
    #[error(transparent)]
    Accounts(crate::accounts::AccountsError),
    /// The Kubernetes API could not be used.
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    /// The dashboard failed.
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
}

impl CommandError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Inventory(_)
            | Self::Engine(_)
            | Self::Playbook(_)
            | Self::NotApproved
            | Self::Exists(_)
            | Self::Usage(_) => ExitCode::Invalid,
            Self::Render(RenderError::Parse { .. }) => ExitCode::Invalid,
            _ => ExitCode::Failed,
        }
    }

    /// The next step to suggest, if there is a useful one.
    pub fn next_step(&self) -> Option<String> {
        Some(match self {
            Self::Inventory(LoadError::Read { .. }) => {
                "check the path given with -f (or omit -f to use the embedded local default)".into()
            }
            Self::Inventory(LoadError::Invalid { .. }) => {
                "fix the problems above and run `forgectl validate -f FILE` again".into()
            }
            Self::Engine(EngineError::NotInPlaybook { .. }) => {
                "see `forgectl plan` for the playbook's phases".into()
            }
            Self::Playbook(_) | Self::Engine(EngineError::Playbook(_)) => {
                "use a built-in playbook name, or a path to a playbook file".into()
            }
            Self::Render(_) => "fix the template (or remove the override from --templates)".into(),
            Self::State(StateError::Locked { .. }) => {
                "wait for that run to finish; the lock is released when its process ends".into()
            }
            Self::State(_) => {
                "check --state-dir (or FORGECTL_STATE_DIR) and its permissions".into()
            }
            Self::NotApproved => {
                "re-run with --yes to approve, or with --dry-run to only see the plan".into()
            }
            Self::Exists(_) => "pass --force to overwrite it, or choose another directory".into(),
            Self::Exec(e) => e.next_step(),
            Self::Admission(e) => e.next_step().into(),
            Self::Accounts(e) => e.next_step(),
            Self::Kube(e) => e.next_step(),
            Self::Dashboard(e) => e.next_step(),
            _ => return None,
        })
    }
}
