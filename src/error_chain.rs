//! What a library error chain says at its bottom, for people: the innermost cause's message and
//! the I/O error kind if one is in the chain (connection refused, timed out …), instead of the
//! libraries' debug output.

use std::error::Error;

/// The innermost cause's message and the first I/O error kind in `e`'s chain.
pub fn bottom(e: &(dyn Error + 'static)) -> (String, Option<std::io::ErrorKind>) {
    let mut io = None;
    let mut innermost = e.to_string();
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if io.is_none() {
            io = err.downcast_ref::<std::io::Error>().map(|x| x.kind());
        }
        innermost = err.to_string();
        cur = err.source();
    }
    (innermost.lines().next().unwrap_or_default().to_string(), io)
}
