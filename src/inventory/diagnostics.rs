//! Problems found in an inventory, with their position, and how they are shown to people.

use serde::Serialize;
use std::fmt::Write as _;

/// A 1-based line and column in the inventory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1 (characters, not bytes).
    pub col: usize,
}

impl Pos {
    /// A position.
    pub fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

/// How bad a finding is: errors stop every command, warnings are shown and the work goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The inventory cannot be used.
    Error,
    /// The inventory works but is probably not what was meant.
    Warning,
}

/// One finding: where, which field, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the file.
    #[serde(flatten)]
    pub pos: Pos,
    /// The field's path, such as `groups[1].count` (empty for the whole file).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `pos`.
    pub fn error(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            pos,
            field: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `pos`.
    pub fn warning(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(pos, message)
        }
    }

    /// Names the field concerned.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// Adds how to fix it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Colours used when rendering; empty strings when colour is off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Palette {
    /// Style for "error".
    pub error: anstyle::Style,
    /// Style for "warning".
    pub warning: anstyle::Style,
    /// Style for positions and gutters.
    pub dim: anstyle::Style,
}

impl Palette {
    /// The palette for a colour terminal.
    pub fn colored() -> Self {
        use anstyle::{AnsiColor, Style};
        Self {
            error: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            warning: Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
            dim: Style::new().fg_color(Some(AnsiColor::Blue.into())),
        }
    }
}

/// The most findings shown one by one; the rest are counted.
pub const MAX_SHOWN: usize = 50;

/// Renders findings like a compiler does: message, `--> file:line:col (field)`, the line, a caret,
/// help; past [`MAX_SHOWN`], a count of the rest.
pub fn render(file: &str, source: &str, diagnostics: &[Diagnostic], p: Palette) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = source.lines().collect();
    if diagnostics.len() > MAX_SHOWN {
        let rest = &diagnostics[MAX_SHOWN..];
        let errors = rest.iter().filter(|d| d.is_error()).count();
        let mut shown = render(file, source, &diagnostics[..MAX_SHOWN], p);
        let _ = writeln!(
            shown,
            "… and {errors} more error(s) and {} more warning(s) in {file}, not shown: fix these first (many alike often share one cause)\n",
            rest.len() - errors
        );
        return shown;
    }
    for d in diagnostics {
        let (label, style) = match d.severity {
            Severity::Error => ("error", p.error),
            Severity::Warning => ("warning", p.warning),
        };
        let _ = writeln!(out, "{style}{label}{style:#}: {}", d.message);
        let field = if d.field.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.field)
        };
        let _ = writeln!(
            out,
            "  {}-->{:#} {file}:{}:{}{field}",
            p.dim, p.dim, d.pos.line, d.pos.col
        );
        if let Some(text) = lines.get(d.pos.line.saturating_sub(1)) {
            let width = d.pos.line.to_string().len();
            let shown: String = text
                .chars()
                .take(160)
                .collect::<String>()
                .replace('\t', " ");
            let _ = writeln!(out, "{} {:width$} |{:#}", p.dim, "", p.dim);
            let _ = writeln!(out, "{} {} |{:#} {shown}", p.dim, d.pos.line, p.dim);
            let caret_col = d.pos.col.saturating_sub(1).min(shown.chars().count());
            let _ = writeln!(
                out,
                "{} {:width$} |{:#} {}{style}^{style:#}",
                p.dim,
                "",
                p.dim,
                " ".repeat(caret_col)
            );
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = help: {h}");
        }
        out.push('\n');
    }
    out
}
