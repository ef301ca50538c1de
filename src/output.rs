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

/// Set once stdout's reader went away: the rest of the output is dropped.
static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes to stdout like `print!`, except that a reader that went away (`forgectl … | head`)
/// is not fatal: the rest of the output is dropped and the work goes on. A run is never cut
/// short half-way by its pager; Ctrl-C stops it.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Writes to stderr like `eprint!`, never failing (stderr may be a closed pipe too).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that survives a closed stdout (see [`write_stdout`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed stdout (see [`write_stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that survives a closed stderr.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::output::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that survives a closed stderr.
#[macro_export]
macro_rules! errout {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}
