//! Message security in the host, before any sink sees a message:
//! normalise → authenticity → metadata/labels policy → encryption → custody.
//!
//! Everything here runs in the host, so every sink, first-party or
//! third-party, in any language, gets it, and no plugin ever holds a key.

pub mod authenticity;
pub mod canonical;
pub mod custody;
pub mod encryption;
pub mod metadata;
pub mod pipeline;
/// Subject patterns live at the ground floor (config uses them too).
pub use crate::subjects;
