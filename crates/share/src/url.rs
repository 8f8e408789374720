//! The share link: a [`SteeringConfig`] in the URL fragment (`#c=...`, never sent to a server).
//!
//! Payload: base64url (no padding) of one version byte followed by the raw-DEFLATE-compressed
//! postcard encoding of that version's wire struct ([`crate::wire`]). Each version's wire
//! structs are frozen, so every link ever made decodes the same way forever; a link from a
//! newer version says so.

use crate::config::SteeringConfig;
use crate::{wire, Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The fragment key: `#c=PAYLOAD`.
pub const KEY: &str = "c=";
/// Longest payload accepted (characters) and largest decompressed size (bytes).
pub const MAX_PAYLOAD_CHARS: usize = 64 * 1024;
pub const MAX_DECODED_BYTES: usize = 1 << 20;

/// The fragment for `c`, with its leading `#`: in the oldest wire version that carries it.
pub fn encode(c: &SteeringConfig) -> Result<String> {
    c.validate()?;
    let codes = wire::VERSIONS.iter().find(|v| v.carries(c)).ok_or_else(|| {
        Error::Invalid("the setup uses a method or op no link version carries".into())
    })?;
    let body = if codes.version >= 4 {
        postcard::to_allocvec(&wire::V4::from_config(c, codes)?)
    } else if codes.version >= 3 {
        postcard::to_allocvec(&wire::V3::from_config(c, codes)?)
    } else {
        postcard::to_allocvec(&wire::V1::from_config(c, codes)?)
    }
    .map_err(|e| Error::Invalid(format!("encoding the setup: {e}")))?;
    let mut bytes = vec![codes.version];
    bytes.extend(miniz_oxide::deflate::compress_to_vec(&body, 10));
    Ok(format!("#{KEY}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The payload of a share link given as a whole URL, a fragment (`#c=...` or `c=...`) or the
/// bare payload.
pub fn payload(link: &str) -> &str {
    let s = link.trim();
    let s = s.rsplit_once('#').map_or(s, |(_, f)| f);
    // Other keys may share the fragment: `a=1&c=...`.
    s.split('&').find_map(|kv| kv.strip_prefix(KEY)).unwrap_or(s)
}

/// Decode a share link (see [`payload`] for the forms accepted).
pub fn decode(link: &str) -> Result<SteeringConfig> {
    let p = payload(link);
    if p.is_empty() {
        return Err(Error::Link("the link has no setup in it (expected #c=...)".into()));
    }
    if p.len() > MAX_PAYLOAD_CHARS {
        return Err(Error::Link(format!(
            "the link is {} characters long; at most {MAX_PAYLOAD_CHARS} are read",
            p.len()
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .map_err(|e| Error::Link(format!("the link is not valid base64url: {e}")))?;
    let (&version, body) =
        bytes.split_first().ok_or_else(|| Error::Link("the link is empty".into()))?;
    let codes = match version {
        0 => return Err(Error::Link("the link's version byte is 0: not a Tiller link".into())),
        v => *wire::VERSIONS
            .iter()
            .find(|c| c.version == v)
            .ok_or(Error::Newer { version: v as u32, supported: crate::config::VERSION })?,
    };
    let raw = miniz_oxide::inflate::decompress_to_vec_with_limit(body, MAX_DECODED_BYTES)
        .map_err(|e| Error::Link(format!("the link is damaged (decompression: {:?})", e.status)))?;
    let damaged = |e: postcard::Error| Error::Link(format!("the link is damaged (decoding: {e})"));
    // Versions 1 and 2: postcard of wire::V1, read with that version's code tables; 3 on:
    // wire::V3; 4 on: wire::V4.
    let c = if codes.version >= 4 {
        postcard::from_bytes::<wire::V4>(&raw).map_err(damaged)?.into_config(codes)?
    } else if codes.version >= 3 {
        postcard::from_bytes::<wire::V3>(&raw).map_err(damaged)?.into_config(codes)?
    } else {
        postcard::from_bytes::<wire::V1>(&raw).map_err(damaged)?.into_config(codes)?
    };
    c.validate()?;
    Ok(c)
}
