//! Output settings shared by every command: format, colours, verbosity.

use std::io::IsTerminal;

/// Text for people or JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// ANSI sequences for the few styles forgectl uses; all empty when colour is off.
#[derive(Debug, Clone, Default)]
pub struct Style {
    /// Bold.
    pub bold: &'static str,
    /// Dim.
    pub dim: &'static str,
    /// Green.
    pub green: &'static str,
    /// Yellow.
    pub yellow: &'static str,
    /// Red.
    pub red: &'static str,
    /// Back to normal.
    pub reset: &'static str,
}

impl Style {
    /// Colours on.
    pub fn colored() -> Self {
        Self {
            bold: "\x1b[1m",
            dim: "\x1b[2m",
            green: "\x1b[32m",
            yellow: "\x1b[33m",
            red: "\x1b[31m",
            reset: "\x1b[0m",
        }
    }

    /// Colours for stdout: on only for a terminal, and never with NO_COLOR set.
    pub fn for_stdout(choice: ColorChoice) -> Self {
        if use_color(choice, std::io::stdout().is_terminal()) {
            Self::colored()
        } else {
            Self::default()
        }
    }
}

/// The user's colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour on terminals only (and not with NO_COLOR).
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Whether to colour a stream that is (or is not) a terminal.
pub fn use_color(choice: ColorChoice, is_tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_tty && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Options every command gets.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Text or JSON.
    pub format: Format,
    /// Colour choice.
    pub color: ColorChoice,
    /// -v count minus -q count.
    pub verbosity: i8,
    /// Base state directory override (`--state-dir`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Templates override directory (`--templates`).
    pub templates: Option<std::path::PathBuf>,
}
