//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Validation needs positions for every value, including ones serde would never see (unknown keys,
//! duplicate keys), so the inventory is first read into this tree. Aliases are expanded with a node
//! budget so a "billion laughs" file is refused instead of eating the machine.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

use super::diagnostics::{Diagnostic, Pos};

/// Largest inventory accepted, in bytes. Real ones are a few KiB; 50 machines are ≈5 KiB.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most nodes a document may expand to (aliases included).
const MAX_NODES: usize = 1_000_000;

/// One YAML node with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts (1-based line and column).
    pub pos: Pos,
    /// What the node holds.
    pub kind: NodeKind,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars (always strings).
    Scalar { text: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are nodes so their positions are kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `~`, `null`, an empty plain scalar and friends (YAML 1.2 core schema).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A short name of the node's shape, for messages ("a list", "a mapping", "the number 3").
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Map(_) => "a mapping".into(),
            NodeKind::Scalar { .. } if self.is_null() => "nothing (null)".into(),
            NodeKind::Scalar { text, .. } => {
                let shown: String = text.chars().take(40).collect();
                let more = if text.chars().count() > 40 { "…" } else { "" };
                format!("`{shown}{more}`")
            }
        }
    }

    /// Value of key `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Position of the key `key` in a mapping node.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k.pos),
            _ => None,
        }
    }

    /// The deepest node along `path` and whether the whole path was found.
    pub fn walk<'a>(&'a self, path: &[PathSeg]) -> (&'a Node, bool) {
        let mut here = self;
        for seg in path {
            let next = match (seg, &here.kind) {
                (PathSeg::Key(k), NodeKind::Map(_)) => here.get(k),
                (PathSeg::Index(i), NodeKind::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => here = n,
                None => return (here, false),
            }
        }
        (here, true)
    }
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A list index (0-based).
    Index(usize),
}

/// Renders a path the way users write it: `groups[1].hosts[0].name`.
pub fn path_to_string(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Result of reading a document: the tree (None for an empty file) and any non-fatal problems.
#[derive(Debug)]
pub struct Parsed {
    /// The document's root node.
    pub root: Option<Node>,
    /// Duplicate keys and similar problems found while building the tree.
    pub diagnostics: Vec<Diagnostic>,
}

enum Frame {
    Seq(Pos, Vec<Node>, usize),
    Map(Pos, Vec<(Node, Node)>, Option<Node>, usize),
}

/// Parses one YAML document into a [`Node`] tree.
///
/// Fatal problems (bad syntax, several documents, a file too large) are returned as `Err` with
/// their position; duplicate keys are reported in [`Parsed::diagnostics`] and the first value is kept.
pub fn parse(src: &str) -> Result<Parsed, Diagnostic> {
    if src.len() > MAX_BYTES {
        return Err(Diagnostic::error(
            Pos::new(1, 1),
            format!(
                "the file is {:.1} MiB; an inventory may be at most {} MiB",
                src.len() as f64 / 1_048_576.0,
                MAX_BYTES / 1_048_576
            ),
        )
        .with_hint(
            "is this the right file? Inventories describe machine groups, not each object",
        ));
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut diagnostics = Vec::new();
    let mut documents = 0usize;
    let mut nodes = 0usize;

    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| syntax_error(src, &e))?;
        let pos = Pos::new(span.start.line(), span.start.col() + 1);
        let finished: Option<(Node, usize)> = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        pos,
                        "a second YAML document starts here; an inventory is a single document",
                    )
                    .with_hint(
                        "remove the `---` line and everything after it, or split the file",
                    ));
                }
                None
            }
            Event::Scalar(text, style, anchor, _) => {
                let plain = matches!(style, ScalarStyle::Plain);
                Some((
                    Node {
                        pos,
                        kind: NodeKind::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Frame::Seq(pos, Vec::new(), anchor));
                None
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Frame::Map(pos, Vec::new(), None, anchor));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items, anchor)) => Some((
                    Node {
                        pos: p,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )),
                _ => return Err(internal(pos)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, entries, _, anchor)) => {
                    check_duplicates(&entries, &mut diagnostics);
                    Some((
                        Node {
                            pos: p,
                            kind: NodeKind::Map(entries),
                        },
                        anchor,
                    ))
                }
                _ => return Err(internal(pos)),
            },
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    nodes += count_nodes(n);
                    Some((n.clone(), 0))
                }
                None => {
                    return Err(Diagnostic::error(
                        pos,
                        "this alias names an anchor that is not defined above it",
                    )
                    .with_hint("define the anchor (`&name`) before using it (`*name`)"));
                }
            },
            _ => None,
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(Diagnostic::error(
                node.pos,
                format!("the document expands to more than {MAX_NODES} values (through aliases?)"),
            )
            .with_hint("an inventory describes machine groups; use `count:` instead of listing thousands of items"));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, _)) => match pending.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar { .. }) {
                        return Err(Diagnostic::error(
                            node.pos,
                            format!(
                                "a mapping key must be a plain name, found {}",
                                node.describe()
                            ),
                        ));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(Parsed { root, diagnostics })
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

fn check_duplicates(entries: &[(Node, Node)], out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (key, _) in entries {
        let Some(name) = key.as_str() else { continue };
        if let Some(first) = seen.get(name) {
            out.push(
                Diagnostic::error(key.pos, format!("duplicate key `{name}`"))
                    .with_field(name)
                    .with_hint(format!(
                        "`{name}` is already set on line {}; keep one of them (the first one is used until then)",
                        first.line
                    )),
            );
        } else {
            seen.insert(name, key.pos);
        }
    }
}

fn syntax_error(src: &str, e: &serde_saphyr::granit_parser::ScanError) -> Diagnostic {
    let m = e.marker();
    let pos = Pos::new(m.line().max(1), m.col() + 1);
    let line_text = src.lines().nth(pos.line.saturating_sub(1)).unwrap_or("");
    let indent: String = line_text
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let mut d = Diagnostic::error(pos, format!("this is not valid YAML: {e}"));
    if indent.contains('\t') || e.to_string().contains("tab") {
        // The scanner may stop at the end of the line before; the tab is on the first line from
        // there whose indentation has one.
        let tabbed = src
            .lines()
            .enumerate()
            .skip(pos.line.saturating_sub(1))
            .find_map(|(i, l)| {
                let lead: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
                lead.find('\t').map(|c| Pos::new(i + 1, c + 1))
            });
        d = Diagnostic::error(
            tabbed.unwrap_or(Pos::new(
                pos.line,
                indent.find('\t').map(|i| i + 1).unwrap_or(pos.col),
            )),
            "a tab character is used for indentation; YAML allows only spaces there",
        )
        .with_hint("replace the tab with spaces (two per level is the convention in inventories)");
    } else if src.trim_start().starts_with('{') || src.trim_start().starts_with('[') {
        d = d.with_hint(
            "JSON is accepted too, but it must be well-formed; check brackets and commas",
        );
    } else {
        d = d.with_hint(
            "check the indentation and the `key: value` form on this line and the one above",
        );
    }
    d
}

fn internal(pos: Pos) -> Diagnostic {
    Diagnostic::error(pos, "the YAML parser produced an unexpected event sequence")
        .with_hint("this is a bug in forgectl; please report it with the file")
}
