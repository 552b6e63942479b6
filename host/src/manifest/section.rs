//! Top-level custom sections of a WebAssembly component (or module).
//!
//! A component binary is an 8-byte header followed by sections; each section
//! is an id byte, a LEB128 `u32` size and that many bytes. A custom section
//! (id 0) starts its content with a LEB128-prefixed UTF-8 name. Nested
//! modules and components are the contents of their own sections, so walking
//! the top level never looks inside them: a custom section of a nested core
//! module is not a top-level section and is never read, replaced or removed
//! here.
//!
//! Appending a custom section at the end is valid anywhere a section may
//! appear; replacing one drops every top-level section of that name and
//! appends the new one.

use std::ops::Range;

use wasm_encoder::Encode as _;

/// Id of a custom section.
const CUSTOM_SECTION_ID: u8 = 0;
/// Length of the binary header (`\0asm` + version + layer).
const HEADER_LEN: usize = 8;

/// Why a binary's sections cannot be walked or a section cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    /// Not a WebAssembly binary at all.
    #[error("not a WebAssembly binary: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    /// A section header or size is cut off or wrong.
    #[error("malformed WebAssembly binary at byte {offset}: {reason}")]
    Malformed {
        /// Where the problem starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// More than one top-level custom section with a name that may appear
    /// only once.
    #[error("the binary holds {count} `{name}` custom sections; exactly one is allowed")]
    Duplicate {
        /// The section name.
        name: String,
        /// How many there are.
        count: usize,
    },
    /// The new section would not fit a section's `u32` size.
    #[error("the `{name}` custom section would be {bytes} bytes, more than a section can hold")]
    TooLarge {
        /// The section name.
        name: String,
        /// Its size.
        bytes: usize,
    },
}

/// One top-level section of a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section id (0 for custom sections).
    pub id: u8,
    /// The whole section, header included, within the binary.
    pub range: Range<usize>,
    /// For a custom section: its name.
    pub name: Option<String>,
    /// The section's payload (for a custom section: after the name).
    pub data: Range<usize>,
}

/// Every top-level section of `bytes`, in order.
pub fn sections(bytes: &[u8]) -> Result<Vec<Section>, SectionError> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != b"\0asm" {
        return Err(SectionError::NotWasm);
    }
    let mut reader = wasmparser::BinaryReader::new(&bytes[HEADER_LEN..], HEADER_LEN);
    let mut found = Vec::new();
    while !reader.eof() {
        let start = reader.original_position();
        let malformed = |err: wasmparser::BinaryReaderError| SectionError::Malformed {
            offset: err.offset(),
            reason: err.message().to_string(),
        };
        let id = reader.read_u8().map_err(malformed)?;
        let size = reader.read_var_u32().map_err(malformed)?;
        let content_start = reader.original_position();
        let content = reader
            .read_bytes(usize::try_from(size).unwrap_or(usize::MAX))
            .map_err(|_| SectionError::Malformed {
                offset: start,
                reason: format!(
                    "section {id} claims {size} bytes, only {} remain",
                    bytes.len() - content_start
                ),
            })?;
        let end = content_start + content.len();
        let (name, data) = if id == CUSTOM_SECTION_ID {
            let mut inner = wasmparser::BinaryReader::new(content, content_start);
            let name = inner.read_string().map_err(malformed)?.to_string();
            (Some(name), inner.original_position()..end)
        } else {
            (None, content_start..end)
        };
        found.push(Section {
            id,
            range: start..end,
            name,
            data,
        });
    }
    Ok(found)
}

/// The payload of the one top-level custom section called `name`, if any.
/// Two or more of them are an error: which one counts would be ambiguous.
pub fn read_custom<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, SectionError> {
    let matching: Vec<Section> = sections(bytes)?
        .into_iter()
        .filter(|section| section.name.as_deref() == Some(name))
        .collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(&bytes[one.data.clone()])),
        more => Err(SectionError::Duplicate {
            name: name.to_string(),
            count: more.len(),
        }),
    }
}

/// `bytes` without any top-level custom section called `name`.
pub fn strip_custom(bytes: &[u8], name: &str) -> Result<Vec<u8>, SectionError> {
    let all = sections(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..HEADER_LEN]);
    for section in all
        .iter()
        .filter(|section| section.name.as_deref() != Some(name))
    {
        out.extend_from_slice(&bytes[section.range.clone()]);
    }
    Ok(out)
}

/// `bytes` with every top-level custom section called `name` replaced by
/// one holding `data`, appended at the end.
pub fn replace_custom(bytes: &[u8], name: &str, data: &[u8]) -> Result<Vec<u8>, SectionError> {
    let mut out = strip_custom(bytes, name)?;
    let section = wasm_encoder::CustomSection {
        name: name.into(),
        data: data.into(),
    };
    let total = name.len() + data.len() + 5;
    if u32::try_from(total).is_err() {
        return Err(SectionError::TooLarge {
            name: name.to_string(),
            bytes: total,
        });
    }
    out.push(CUSTOM_SECTION_ID);
    section.encode(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first-party plugin built by `plugins/build.sh`, when present.
    fn built_plugin() -> Option<Vec<u8>> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/file.wasm");
        std::fs::read(path).ok()
    }

    /// A tiny valid component: header, one custom section.
    fn tiny() -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.extend([0, 4, 1, b'x', b'h', b'i']);
        bytes
    }

    fn round_trip(bytes: &[u8]) {
        let before = sections(bytes).expect("sections");
        let with = replace_custom(bytes, "sinkhost-test", b"first").expect("append");
        assert_eq!(read_custom(&with, "sinkhost-test"), Ok(Some(&b"first"[..])));
        assert_eq!(sections(&with).expect("sections").len(), before.len() + 1);
        let replaced = replace_custom(&with, "sinkhost-test", b"second!").expect("replace");
        assert_eq!(
            read_custom(&replaced, "sinkhost-test"),
            Ok(Some(&b"second!"[..]))
        );
        assert_eq!(
            sections(&replaced).expect("sections").len(),
            before.len() + 1
        );
        assert_eq!(
            strip_custom(&replaced, "sinkhost-test").expect("strip"),
            bytes
        );
        assert_eq!(strip_custom(bytes, "absent").expect("strip"), bytes);
    }

    #[test]
    fn custom_sections_round_trip_on_a_tiny_component() {
        round_trip(&tiny());
        assert_eq!(read_custom(&tiny(), "x"), Ok(Some(&b"hi"[..])));
    }

    #[test]
    fn custom_sections_round_trip_on_a_real_component() {
        let Some(bytes) = built_plugin() else {
            eprintln!("target/plugins/file.wasm not built: skipped (run bash plugins/build.sh)");
            return;
        };
        let bare = strip_custom(&bytes, "sinkhost-manifest").expect("strip");
        round_trip(&bare);
        let engine = wasmtime::Engine::default();
        let with = replace_custom(&bare, "sinkhost-test", b"{}").expect("append");
        wasmtime::component::Component::new(&engine, &with).expect("still a valid component");
    }

    #[test]
    fn duplicates_and_damage_are_reported() {
        let mut twice = tiny();
        twice.extend([0, 4, 1, b'x', b'h', b'o']);
        assert!(matches!(
            read_custom(&twice, "x"),
            Err(SectionError::Duplicate { count: 2, .. })
        ));
        assert_eq!(
            strip_custom(&twice, "x").expect("strip"),
            b"\0asm\x0d\x00\x01\x00"
        );
        let mut cut = tiny();
        cut.pop();
        assert!(matches!(
            sections(&cut),
            Err(SectionError::Malformed { offset: 8, .. })
        ));
        assert_eq!(sections(b"hello world"), Err(SectionError::NotWasm));
    }
}
