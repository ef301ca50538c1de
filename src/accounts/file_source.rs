//! Accounts from a YAML file (`tools:` and `admins:` lists), for small sites and tests.

use std::path::PathBuf;

use super::AccountsError;
use super::directory::{Directory, Source};

/// A YAML file of accounts.
pub struct FileSource {
    /// Its path.
    pub path: PathBuf,
}

impl Source for FileSource {
    async fn load(&self) -> Result<Directory, AccountsError> {
        let err = |cause: String| AccountsError::Source {
            source_name: self.path.display().to_string(),
            cause,
        };
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| err(e.to_string()))?;
        // Thousands of accounts take a while to parse: off the async workers.
        tokio::task::spawn_blocking(move || serde_saphyr::from_str::<Directory>(&text))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))
    }
}
