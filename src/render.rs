//! Templates (`templates/**/*.tera`) rendered with tera. They are embedded at build time and can be
//! overridden one by one with `--templates DIR` (same relative paths).

use include_dir::{Dir, include_dir};
use std::path::Path;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An override file could not be read.
    #[error("cannot read template override {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template does not parse.
    #[error("template {name} does not parse: {message}")]
    Parse {
        /// Template name.
        name: String,
        /// Tera's message.
        message: String,
    },
    /// Rendering failed (unknown variable, bad filter …).
    #[error("rendering template {name} failed: {message}")]
    Render {
        /// Template name.
        name: String,
        /// Tera's message.
        message: String,
    },
}

/// The loaded template set.
pub struct Templates {
    tera: tera::Tera,
    names: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names)
            .finish()
    }
}

fn collect(dir: &Dir<'static>, out: &mut Vec<(String, String)>) {
    for f in dir.files() {
        if let (Some(text), Some(path)) = (f.contents_utf8(), f.path().to_str()) {
            out.push((path.to_string(), text.to_string()));
        }
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

impl Templates {
    /// The embedded templates, with files from `override_dir` (same relative paths) taking precedence.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, RenderError> {
        let mut sources = Vec::new();
        collect(&EMBEDDED, &mut sources);
        if let Some(dir) = override_dir {
            for (name, text) in sources.iter_mut() {
                let candidate = dir.join(&*name);
                if candidate.exists() {
                    *text = std::fs::read_to_string(&candidate).map_err(|e| RenderError::Read {
                        path: candidate.display().to_string(),
                        source: e,
                    })?;
                }
            }
        }
        let mut tera = tera::Tera::new();
        tera.autoescape_on(Vec::<&str>::new());
        let mut names = Vec::new();
        for (name, text) in &sources {
            tera.add_raw_template(name, text)
                .map_err(|e| RenderError::Parse {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
            names.push(name.clone());
        }
        names.sort();
        Ok(Self { tera, names })
    }

    /// Every template name (relative path), sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Renders `name` with `ctx` (anything serde can serialize into a map).
    pub fn render(&self, name: &str, ctx: &impl serde::Serialize) -> Result<String, RenderError> {
        let context = tera::Context::from_serialize(ctx).map_err(|e| RenderError::Render {
            name: name.into(),
            message: e.to_string(),
        })?;
        self.tera
            .render(name, &context)
            .map_err(|e| RenderError::Render {
                name: name.into(),
                message: error_chain(&e),
            })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
